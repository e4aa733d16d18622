#!/usr/bin/env python3
"""Peer benchmark: Hugging Face transformers (PyTorch, CPU, float32) on the prompts that
`patchrec export-prompts` wrote, decoding the catalogue with constrained beam search.

For each exported prompt (its exact input embeddings, patches included) it
  1. checks parity: one plain forward pass with `inputs_embeds`, max |logits - ours| at the
     last prompt position (and that figure relative to the largest |logit|);
  2. decodes with `generate(inputs_embeds=..., prefix_allowed_tokens_fn=<catalogue trie>)`
     in each mode, timing every query (wall clock, after one untimed warm-up per mode):
       reference  the authors' evaluation decoding (ljy0ustc/PatchRec, fts_eval.py /
                  fti_eval.py): diverse ("group") beam search, num_beams = num_beam_groups
                  = 20, diversity_penalty 0.8, early_stopping=True, use_cache=False,
                  default length_penalty (1.0); do_sample=False, so the temperature/top_p/
                  top_k it also passes have no effect. NB: transformers 4.46.3 (the version
                  the authors pin) forces use_cache=True whenever inputs_embeds are passed,
                  so their use_cache=False never took effect; the script records which
                  forward passes actually ran ("KV cache used");
       cached     the same with use_cache=True (KV cache);
       beam-lp0   plain beam search, num_beams 20, length_penalty=0, use_cache=True: HF's
                  closest equivalent of our search (scores = summed log-probabilities of
                  title tokens + answer end, no length normalisation), to compare lists;
  3. maps every returned sequence to catalogue items and compares the top-k with ours
     (overlap@k, identical order?, and for beam-lp0 the score differences).

Prints a Markdown table and, with --json, writes the figures.
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (HF layout: config.json, model.safetensors)")
    p.add_argument("--prompts", required=True, help="output folder of `patchrec export-prompts`")
    p.add_argument("--modes", default="reference,cached,beam-lp0",
                   help="comma-separated: reference, cached, beam-lp0 (default: all three)")
    p.add_argument("--max-prompts", type=int, default=None, help="use only the first N prompts")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the threads our side used)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="per mode: stop timing further prompts once this many seconds are spent (at least one runs)")
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args()


MODES = {
    # The reference implementation's generate() arguments (group beam search, no cache).
    "reference": dict(num_beam_groups=None, diversity_penalty=0.8, early_stopping=True, use_cache=False,
                      do_sample=False, temperature=0.6, top_p=0.9, top_k=20),
    "cached": dict(num_beam_groups=None, diversity_penalty=0.8, early_stopping=True, use_cache=True,
                   do_sample=False, temperature=0.6, top_p=0.9, top_k=20),
    "beam-lp0": dict(length_penalty=0.0, early_stopping=False, use_cache=True, do_sample=False),
}


def load_model(checkpoint, torch, transformers):
    """float32 LlamaForCausalLM from an HF-layout checkpoint. Our safetensors carry no
    `{"format": "pt"}` metadata, which transformers 4.x's from_pretrained insists on, so on
    that error the model is built from config.json and the state dict loaded directly."""
    try:
        model = transformers.LlamaForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32)
        how = "from_pretrained"
    except Exception as e:  # noqa: BLE001
        from safetensors.torch import load_file
        config = transformers.LlamaConfig.from_pretrained(checkpoint)
        config.torch_dtype = torch.float32
        model = transformers.LlamaForCausalLM(config).to(torch.float32)
        state = load_file(os.path.join(checkpoint, "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
        if set(missing) - allowed_missing or unexpected:
            raise SystemExit(f"checkpoint does not match LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        how = f"config + state dict ({type(e).__name__} from from_pretrained)"
    return model.eval(), how


def check_auto_classes(checkpoint, model, torch, transformers):
    """The checkpoint as a transformers user meets it: AutoTokenizer with its default call,
    then a forward pass of the model on those ids. Fails when the tokenizer adds a token the
    vocabulary lacks (a `<s>` from LlamaTokenizerFast's defaults) or the ids leave the table."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    ids = tokenizer("Toy Story (1995)")["input_ids"]
    vocab = model.get_input_embeddings().weight.shape[0]
    if not ids or any(i is None or not 0 <= i < vocab for i in ids):
        raise SystemExit(f"AutoTokenizer's default call gave ids {ids} outside the {vocab}-row table")
    if tokenizer.decode(ids) != "Toy Story (1995)":
        raise SystemExit(f"AutoTokenizer round trip changed the text: {tokenizer.decode(ids)!r}")
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    if not torch.isfinite(logits).all():
        raise SystemExit("non-finite logits from the AutoTokenizer ids")
    return type(tokenizer).__name__


class Catalogue:
    """Prefix tree over title tokens + [answer_end], and the map back to item ids."""

    def __init__(self, manifest):
        self.end = manifest["answer_end"]
        self.root = {}
        self.items = {}  # tuple(title tokens) -> [item ids], registration order
        for item, tokens in zip(manifest["item_ids"], manifest["title_tokens"]):
            self.items.setdefault(tuple(tokens), []).append(item)
            node = self.root
            for t in list(tokens) + [self.end]:
                node = node.setdefault(t, {})
        self.max_new_tokens = max(len(t) for t in manifest["title_tokens"]) + 1

    prompt_len = 0  # set before each generate(): input_ids = prompt placeholders + new tokens

    def allowed(self, _batch_id, input_ids):
        node = self.root
        for t in input_ids[self.prompt_len:].tolist():
            node = node.get(t)
            if node is None or not node:
                # Off the tree, or past the answer end (a finished or padded row): only the
                # answer end, as the reference implementation does at a leaf.
                return [self.end]
        return list(node.keys())

    def items_of(self, sequence):
        """Returned tokens -> item ids (several for duplicate titles), or [] if not a title."""
        toks = sequence.tolist()
        if self.end not in toks:
            return []
        return self.items.get(tuple(toks[: toks.index(self.end)]), [])


def ranked_items(cat, sequences, k):
    out = []
    for seq in sequences:
        for item in cat.items_of(seq):
            if item not in out:
                out.append(item)
    return out[:k]


def main():
    args = parse_args()
    import torch
    import transformers
    from safetensors.torch import load_file

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    with open(os.path.join(args.prompts, "prompts.json")) as f:
        manifest = json.load(f)
    tensors = load_file(os.path.join(args.prompts, "prompts.safetensors"))
    threads = args.threads or manifest.get("threads") or os.cpu_count()
    torch.set_num_threads(threads)
    model, how = load_model(args.checkpoint, torch, transformers)
    how += f", AutoTokenizer {check_auto_classes(args.checkpoint, model, torch, transformers)}"
    cat = Catalogue(manifest)
    beams = manifest["beam_width"]
    k = manifest["k"]
    prompts = manifest["prompts"][: args.max_prompts] if args.max_prompts else manifest["prompts"]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise SystemExit(f"unknown mode {m!r} (known: {', '.join(MODES)})")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, {threads} threads, "
          f"model loaded by {how}; {len(prompts)} prompts, layout {manifest['layout']}, "
          f"history {manifest['history_length']}, k {k}, beams {beams}, max_new_tokens {cat.max_new_tokens}",
          file=sys.stderr)

    def embeds(i):
        return tensors[f"prompt.{i}"].to(torch.float32).unsqueeze(0)

    # 1. Parity of the logits at the last prompt position.
    parity = []
    with torch.no_grad():
        for i, p in enumerate(prompts):
            e = embeds(i)
            ours = tensors[f"logits.{i}"].to(torch.float32)
            theirs = model(inputs_embeds=e, attention_mask=torch.ones(e.shape[:2], dtype=torch.long)).logits[0, -1]
            diff = (theirs - ours).abs().max().item()
            scale = ours.abs().max().item()
            same_argmax = int(theirs.argmax()) == int(ours.argmax())
            parity.append({"prompt": i, "len": p["len"], "max_abs_diff": diff, "max_abs_logit": scale,
                           "relative": diff / scale if scale else float("nan"), "same_argmax": same_argmax})

    # 2. Decoding per mode.
    def generate(i, mode, max_new_tokens=None):
        e = embeds(i)
        kw = dict(MODES[mode])
        if "num_beam_groups" in kw:
            kw["num_beam_groups"] = beams
        # As the reference does, input_ids accompany inputs_embeds: placeholders (-100, the
        # reference's padding value; never embedded, as the first step uses inputs_embeds
        # and later steps only the new tokens) so that the sequences handed to
        # prefix_allowed_tokens_fn are never empty (group beam search reshapes them per group
        # and fails on a 0-length input) and hold the prompt positions before the answer.
        cat.prompt_len = e.shape[1]
        return model.generate(
            input_ids=torch.full(e.shape[:2], -100, dtype=torch.long),
            inputs_embeds=e,
            attention_mask=torch.ones(e.shape[:2], dtype=torch.long),
            num_beams=beams,
            num_return_sequences=min(k, beams),
            max_new_tokens=max_new_tokens or cat.max_new_tokens,
            prefix_allowed_tokens_fn=cat.allowed,
            eos_token_id=cat.end,
            pad_token_id=0,  # as the reference sets it
            output_scores=True,
            return_dict_in_generate=True,
            **kw,
        )

    # Which forward passes re-read the whole prompt: transformers 4.46 silently turns
    # use_cache=False into True whenever inputs_embeds are given (generate(), "decoder-only
    # models with inputs_embeds forwarding must use caching"), so the reference's
    # use_cache=False may not take effect; this records what actually ran.
    seen = {"full": 0, "incremental": 0}

    def count(_module, _args, kwargs):
        x = kwargs.get("inputs_embeds")
        n = x.shape[1] if x is not None else kwargs["input_ids"].shape[1]
        seen["full" if n >= cat.prompt_len else "incremental"] += 1

    model.model.register_forward_pre_hook(count, with_kwargs=True)

    results = {}
    for mode in modes:
        with torch.no_grad():
            # Warm-up (allocator, kernels), untimed: a full prefill but only two steps, so
            # the slow reference mode does not pay a whole extra query.
            generate(0, mode, max_new_tokens=2)
            rows = []
            spent = 0.0
            seen["full"] = seen["incremental"] = 0
            for i, p in enumerate(prompts):
                if args.budget_s is not None and rows and spent > args.budget_s:
                    print(f"  {mode}: time budget of {args.budget_s:.0f} s spent, {len(rows)} of "
                          f"{len(prompts)} prompts timed", file=sys.stderr)
                    break
                t0 = time.perf_counter()
                out = generate(i, mode)
                ms = (time.perf_counter() - t0) * 1e3
                spent += ms / 1e3
                seqs = out.sequences[:, cat.prompt_len:]
                got = ranked_items(cat, seqs, k)
                ours = p["item_ids"][:k]
                row = {"prompt": i, "ms": ms, "ours_ms": p["total_ms"], "items": got,
                       "overlap": len(set(got) & set(ours)) / max(1, len(ours)),
                       "same_order": got == ours, "unmapped": sum(1 for s in seqs if not cat.items_of(s)),
                       "generated_len": int(seqs.shape[1])}
                if mode == "beam-lp0":
                    # With length_penalty 0, HF's sequence score is the summed log-probability,
                    # as ours: compare the scores of the items both returned.
                    hf_score = {}
                    for s, sc in zip(seqs, out.sequences_scores.tolist()):
                        for item in cat.items_of(s):
                            hf_score.setdefault(item, sc)
                    our_score = dict(zip(p["item_ids"], p["scores"]))
                    common = [it for it in got if it in our_score]
                    row["score_max_abs_diff"] = max((abs(hf_score[it] - our_score[it]) for it in common), default=None)
                rows.append(row)
                print(f"  {mode} prompt {i} (len {p['len']}): {ms:.1f} ms (ours {p['total_ms']:.1f} ms), "
                      f"overlap@{k} {row['overlap']:.2f}, same order {row['same_order']}", file=sys.stderr)
        ms_list = [r["ms"] for r in rows]
        ours_list = [r["ours_ms"] for r in rows]
        results[mode] = {
            "rows": rows,
            "mean_ms": statistics.mean(ms_list),
            "median_ms": statistics.median(ms_list),
            "ours_mean_ms": statistics.mean(ours_list),
            "ours_median_ms": statistics.median(ours_list),
            "ratio_median": statistics.median(ms_list) / statistics.median(ours_list),
            "ratio_mean": statistics.mean(ms_list) / statistics.mean(ours_list),
            "mean_overlap": statistics.mean(r["overlap"] for r in rows),
            "same_order": sum(r["same_order"] for r in rows),
            "prompts_timed": len(rows),
            # Forward passes over the whole prompt vs one new token per beam, timed queries.
            "forward_passes": dict(seen),
            "kv_cache_used": seen["incremental"] > 0,
        }
        if MODES[mode].get("use_cache") is False and seen["incremental"] > 0:
            print(f"  {mode}: use_cache=False did not take effect: transformers "
                  f"{transformers.__version__} decoded with the KV cache ({seen['full']} full and "
                  f"{seen['incremental']} one-token forward passes)", file=sys.stderr)
        if mode == "beam-lp0":
            diffs = [r["score_max_abs_diff"] for r in rows if r["score_max_abs_diff"] is not None]
            results[mode]["score_max_abs_diff"] = max(diffs) if diffs else None

    worst = max(parity, key=lambda r: r["relative"])
    print()
    print(f"Parity (last prompt position, {len(parity)} prompts): max |logits - ours| = "
          f"{max(r['max_abs_diff'] for r in parity):.3g}, relative to max |logit| = {worst['relative']:.3g}, "
          f"same argmax in {sum(r['same_argmax'] for r in parity)}/{len(parity)}")
    print()
    print(f"| transformers mode | mean ms/query | median ms/query | ours median ms | peer/ours (median) | overlap@{k} | same order | KV cache used |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['mean_ms']:.1f} | {r['median_ms']:.1f} | {r['ours_median_ms']:.1f} | "
              f"{r['ratio_median']:.2f}x | {r['mean_overlap']:.2f} | {r['same_order']}/{len(r['rows'])} | "
              f"{'yes' if r['kv_cache_used'] else 'no'} |")
    if "beam-lp0" in results and results["beam-lp0"].get("score_max_abs_diff") is not None:
        print(f"\nbeam-lp0: max |HF sequence score - our score| over common items = "
              f"{results['beam-lp0']['score_max_abs_diff']:.3g}")
    if args.json:
        report = {
            "peer": "transformers",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "threads": threads,
            "checkpoint": os.path.abspath(args.checkpoint),
            "prompts": os.path.abspath(args.prompts),
            "layout": manifest["layout"],
            "history_length": manifest["history_length"],
            "k": k,
            "beam_width": beams,
            "max_new_tokens": cat.max_new_tokens,
            "parity": {"max_abs_diff": max(r["max_abs_diff"] for r in parity),
                       "max_relative": worst["relative"], "per_prompt": parity},
            "modes": results,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
