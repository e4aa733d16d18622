#!/usr/bin/env python3
"""Write a GGUF of one of our checkpoints at its own precision (f32; --f16 to halve it),
so that llama.cpp runs the same weights as libpatchrec.

Our checkpoints are Hugging Face layout (config.json, model.safetensors with HF tensor
names, tokenizer.json). This maps them to llama.cpp's `llama` architecture with the `gguf`
package (PyPI; the same writer llama.cpp's convert_hf_to_gguf.py uses): HF tensor names to
GGUF names, attn_q/attn_k rows permuted back to GGUF's interleaved-rope order (the inverse
of what `patchrec convert` and HF's conversion scripts do), hyper-parameters from
config.json, and the byte-level BPE tokenizer (vocabulary, merges, special tokens) from
tokenizer.json, padded to the embedding's rows. llama.cpp's own convert_hf_to_gguf.py would
also do, but it insists on a tokenizer it recognises by hash, which our from-scratch
checkpoints' tokenizers are not.

--check-against GGUF compares every tensor with another GGUF of the same model (e.g. the
Q4_1 file our SmolLM2 checkpoint was dequantised from), dequantised with gguf's reference
code, and prints the largest difference: a check of names, layout and permutation.
"""
import argparse
import json
import os
import sys

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--f16", action="store_true", help="store matrices as f16 instead of f32")
    p.add_argument("--check-against", default=None, help="GGUF of the same weights to compare with")
    return p.parse_args()


def permute(w, n_head):
    """HF (rotate-half) q/k rows -> GGUF (interleaved pairs), as convert_hf_to_gguf.py."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensor_map(n_layers):
    m = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
         "lm_head.weight": "output.weight"}
    per = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
           "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}
    for i in range(n_layers):
        for hf, gg in per.items():
            m[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{gg}.weight"
    return m


def load_tokenizer(path, n_vocab):
    tok = json.load(open(path))
    model = tok["model"]
    if model.get("type") != "BPE":
        raise SystemExit(f"{path}: only BPE tokenizers are supported, not {model.get('type')}")
    tokens = [None] * n_vocab
    types = [1] * n_vocab  # NORMAL
    for text, i in model["vocab"].items():
        if i < n_vocab:
            tokens[i] = text
    specials = {}
    for a in tok.get("added_tokens", []):
        if a["id"] < n_vocab:
            tokens[a["id"]] = a["content"]
            types[a["id"]] = 3 if a.get("special") else 4  # CONTROL / USER_DEFINED
            specials[a["content"]] = a["id"]
    for i, t in enumerate(tokens):
        if t is None:  # rows of the embedding no token uses
            tokens[i] = f"[PAD{i}]"
            types[i] = 5  # UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre = "default"
    pts = json.dumps(tok.get("pre_tokenizer"))
    if '"Digits"' in pts and '"individual_digits": true' in pts and '"ByteLevel"' in pts:
        pre = "smollm"  # llama.cpp's name for this pre-tokenizer (digits split, GPT-2 regex)
    return tokens, types, merges, pre, specials


def main():
    args = parse_args()
    import gguf
    from safetensors.numpy import load_file

    cfg = json.load(open(os.path.join(args.checkpoint, "config.json")))
    meta = {}
    pj = os.path.join(args.checkpoint, "patchrec.json")
    if os.path.exists(pj):
        meta = json.load(open(pj))
    state = load_file(os.path.join(args.checkpoint, "model.safetensors"))
    n_layers, n_head = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads") or n_head
    hidden = cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // n_head
    n_vocab = state["model.embed_tokens.weight"].shape[0]
    names = tensor_map(n_layers)

    w = gguf.GGUFWriter(args.out, "llama")
    w.add_name(os.path.basename(os.path.abspath(args.checkpoint)))
    w.add_block_count(n_layers)
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if args.f16 else gguf.LlamaFileType.ALL_F32)

    tokens, types, merges, pre, specials = load_tokenizer(os.path.join(args.checkpoint, "tokenizer.json"), n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    end = (meta.get("template") or {}).get("answer_end")
    w.add_eos_token_id(specials.get(end, cfg.get("eos_token_id", 2)))
    w.add_add_bos_token(False)
    if meta.get("hf_chat_template"):
        w.add_chat_template(meta["hf_chat_template"])

    written = {}
    for hf_name, data in state.items():
        if hf_name not in names:
            raise SystemExit(f"unexpected tensor {hf_name}")
        if hf_name == "lm_head.weight" and cfg.get("tie_word_embeddings"):
            continue
        data = data.astype(np.float32)
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = permute(data, n_head)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = permute(data, n_kv)
        if args.f16 and data.ndim == 2:
            data = data.astype(np.float16)  # norms stay f32, as llama.cpp's converter does
        written[names[hf_name]] = data
        w.add_tensor(names[hf_name], np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.out}: {len(written)} tensors, {'f16' if args.f16 else 'f32'}, vocab {n_vocab}, "
          f"pre-tokenizer {pre}", file=sys.stderr)

    if args.check_against:
        r = gguf.GGUFReader(args.check_against)
        worst, worst_rel, missing = 0.0, 0.0, []
        for t in r.tensors:
            if t.name not in written:
                missing.append(t.name)
                continue
            ref = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            ours = written[t.name].astype(np.float32)
            rows = min(ref.shape[0], ours.shape[0]) if ref.ndim == 2 else None
            if ref.ndim == 2:
                ref, ours = ref[:rows], ours[:rows]  # our vocabulary may have extra rows
            ref = ref.reshape(ours.shape)
            d = float(np.abs(ref - ours).max())
            worst = max(worst, d)
            worst_rel = max(worst_rel, d / max(float(np.abs(ref).max()), 1e-30))
        print(f"check against {args.check_against}: max |ours - dequantised| = {worst:.3g} "
              f"(relative {worst_rel:.3g}); not in ours: {missing or 'none'}", file=sys.stderr)


if __name__ == "__main__":
    main()
