"""PyTorch's training throughput on the shapes `patchrec bench-train` uses: the same
checkpoint (LlamaForCausalLM, float32), sequences of SEQ_LEN random token ids, MICRO_BATCH
of them per step, cross-entropy at the last ANSWER positions of each, gradient clipping at
0.3 and AdamW at 1e-4; full fine-tuning, or LoRA through peft with the same rank, alpha
(2 x rank) and targets (every projection). One untimed step first, then STEPS timed ones.
Prints one JSON line like `patchrec bench-train --out` writes.

With --shapes REPORT (what `patchrec bench-train --config ... --out REPORT` wrote), replays
the passes of each of its runs instead: padded micro-batches of the same sequence lengths
(answer positions last), and packed token trees as one sequence each with a 4-D mask
(each node sees its ancestors and itself) and each node's depth as its position id;
inputs are random embeddings of the model's width (prompts hold patches, not only
tokens). Prints a JSON list, one entry per run, with samples and positions per second.

Run by bench/train-speed.sh with the peers' venv (bench/setup-peers.sh, plus peft)."""

import argparse
import json
import os
import sys
import time
import warnings


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--answer", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lora-rank", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--shapes")
    args = p.parse_args()

    import torch
    import transformers

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(42)
    model = transformers.LlamaForCausalLM.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    mode = "full"
    if args.lora_rank:
        import peft

        config = peft.LoraConfig(
            r=args.lora_rank,
            lora_alpha=2 * args.lora_rank,
            lora_dropout=0.0,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        model = peft.get_peft_model(model, config)
        mode = f"lora-r{args.lora_rank}"
    model.train()
    if args.shapes:
        return replay(model, mode, args)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    answer = min(args.answer, args.seq_len - 1)
    times = []
    for step in range(args.steps + 1):
        ids = torch.randint(0, vocab, (args.micro_batch, args.seq_len))
        targets = torch.randint(0, vocab, (args.micro_batch * answer,))
        started = time.perf_counter()
        hidden = model.get_decoder()(input_ids=ids).last_hidden_state if not args.lora_rank else \
            model.base_model.model.model(input_ids=ids).last_hidden_state
        picked = hidden[:, args.seq_len - 1 - answer: args.seq_len - 1, :].reshape(-1, hidden.shape[-1])
        head = model.get_output_embeddings() if not args.lora_rank else model.base_model.model.lm_head
        logits = head(picked)
        loss = torch.nn.functional.cross_entropy(logits, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step > 0:
            times.append(time.perf_counter() - started)
    report = {
        "mode": mode,
        "threads": args.threads,
        "seq_len": args.seq_len,
        "micro_batch": args.micro_batch,
        "answer": answer,
        "trained_parameters": sum(q.numel() for q in params),
        "step_seconds": times,
        "positions_per_second": args.steps * args.micro_batch * args.seq_len / sum(times),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    print(json.dumps(report))
    return 0


def replay(model, mode, args):
    """Replays `patchrec bench-train --config` runs' passes (see the module's doc)."""
    import torch
    import transformers

    runs = json.load(open(args.shapes))
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    base = model if not args.lora_rank else model.base_model.model
    decoder, head = base.model, base.lm_head
    width, vocab = model.config.hidden_size, model.config.vocab_size
    out = []
    for run in runs:
        times, samples, positions = [], 0, 0
        # The first step is untimed, as in ours.
        steps = [run["shapes"][0]] + run["shapes"]
        for i, passes in enumerate(steps):
            started = time.perf_counter()
            answer_total = 0
            for p in passes:
                if "sequences" in p:
                    lens, answers = p["sequences"]["lengths"], p["sequences"]["answers"]
                    t = max(lens)
                    x = torch.randn(len(lens), t, width) * 0.02
                    hidden = decoder(inputs_embeds=x).last_hidden_state
                    rows = [hidden[b, n - a : n] for b, (n, a) in enumerate(zip(lens, answers))]
                    picked = torch.cat(rows, 0)
                    computed = sum(lens)
                else:
                    parents, rows = p["tree"]["parents"], p["tree"]["rows"]
                    t = len(parents)
                    depth = []
                    visible = torch.zeros(t, t, dtype=torch.bool)
                    for j, q in enumerate(parents):
                        depth.append(0 if q is None else depth[q] + 1)
                        k = j
                        while k is not None:
                            visible[j, k] = True
                            k = parents[k]
                    mask = torch.zeros(t, t)
                    mask.masked_fill_(~visible, torch.finfo(torch.float32).min)
                    x = torch.randn(1, t, width) * 0.02
                    hidden = decoder(
                        inputs_embeds=x,
                        attention_mask=mask[None, None],
                        position_ids=torch.tensor([depth]),
                    ).last_hidden_state
                    picked = hidden[0, rows]
                    computed = t
                targets = torch.randint(0, vocab, (picked.shape[0],))
                loss = torch.nn.functional.cross_entropy(head(picked), targets, reduction="sum")
                loss.backward()
                answer_total += picked.shape[0]
                if i > 0:
                    positions += computed
            torch.nn.utils.clip_grad_norm_(params, 0.3)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i > 0:
                times.append(time.perf_counter() - started)
                samples += run["batch_size"]
        out.append(
            {
                "stage": run["stage"],
                "mode": mode,
                "passes": run["passes"],
                "threads": args.threads,
                "batch_size": run["batch_size"],
                "step_seconds": times,
                "samples_per_second": samples / sum(times),
                "positions_per_second": positions / sum(times),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            }
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
