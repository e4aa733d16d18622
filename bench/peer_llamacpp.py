#!/usr/bin/env python3
"""Peer benchmark: llama.cpp (through llama-cpp-python, CPU) on a GGUF of the same model.

Measures
  - prefill throughput: tokens/s to evaluate N prompt tokens (ordinary text tokens) in a
    fresh context, for each N in --tokens, median of --reps runs (after one warm-up);
  - the batch-1 decode step: ms per token for single-token evaluations after a prompt
    (median over --steps steps, repeated --reps times, median of the medians).
With --prompts (an `patchrec export-prompts` folder) it also prefills at the exported
prompts' lengths and prints llama.cpp's floor for each prompt of P
positions and S decode steps: P / prefill_tok_s + S * step_ms. That floor is a batch-1
lower bound: llama.cpp here runs one sequence, while our decoding advances 20 beams per
step, so it is what a single-sequence engine needs just to read the prompt and emit S
tokens, not a full beam search.
"""
import argparse
import json
import os
import statistics
import sys
import time

TEXT = (
    "The history of cinema begins in the late nineteenth century, when inventors in France, "
    "the United States and Britain built cameras and projectors that could record and show "
    "moving pictures. Early films were short scenes of everyday life, trains arriving at "
    "stations, workers leaving factories, and staged comedies only a minute long. Within two "
    "decades studios had grown into large companies that produced feature films with stars, "
    "elaborate sets and orchestral accompaniment, and audiences around the world went to the "
    "pictures every week. Sound arrived at the end of the nineteen twenties, colour became "
    "common in the fifties, and television, home video, and finally streaming services "
    "changed how people watch films, but the basic pleasure of a story told in pictures has "
    "remained the same for more than a century. "
)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", required=True)
    p.add_argument("--tokens", default="20,100,500", help="prompt sizes to prefill (comma-separated)")
    p.add_argument("--threads", type=int, default=None, help="threads (default: from --prompts, else all cores)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per measurement (median)")
    p.add_argument("--steps", type=int, default=16, help="decode steps per repetition")
    p.add_argument("--prompts", default=None, help="export-prompts folder: its prompt lengths and decode steps give the floor")
    p.add_argument("--max-prompts", type=int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--quantize", choices=sorted(FTYPES), default=None,
                   help="first quantize --gguf (f32) with llama.cpp's own quantizer and measure that")
    return p.parse_args()


# llama.cpp's file types (include/llama.h, enum llama_ftype).
FTYPES = {"q8_0": 7, "bf16": 32}


def quantize(llama_cpp, gguf, kind):
    """llama.cpp's own quantizer (llama_model_quantize) on `gguf`, written beside it."""
    out = os.path.splitext(gguf)[0] + f".{kind}.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[kind]
    params.nthread = os.cpu_count() or 1
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(gguf.encode(), out.encode(), params)
    if rc != 0:
        sys.exit(f"llama_model_quantize({gguf}, {kind}) failed with {rc}")
    print(f"quantized {gguf} to {kind} with llama.cpp's quantizer in {time.perf_counter() - t0:.1f} s: {out}",
          file=sys.stderr)
    return out


def main():
    args = parse_args()
    import llama_cpp

    manifest = None
    if args.prompts:
        with open(os.path.join(args.prompts, "prompts.json")) as f:
            manifest = json.load(f)
    threads = args.threads or (manifest or {}).get("threads") or os.cpu_count()
    if args.quantize:
        args.gguf = quantize(llama_cpp, args.gguf, args.quantize)
    sizes = sorted({int(t) for t in args.tokens.split(",") if t.strip()})
    prompts = []
    if manifest:
        prompts = manifest["prompts"][: args.max_prompts] if args.max_prompts else manifest["prompts"]
        sizes = sorted(set(sizes) | {p["len"] for p in prompts})
    largest = max(sizes)
    decode_at = int(statistics.median([p["len"] for p in prompts])) if prompts else min(100, largest)
    n_ctx = max(largest, decode_at + args.steps) + 16
    llm = llama_cpp.Llama(
        model_path=args.gguf,
        n_ctx=n_ctx,
        n_batch=largest,
        n_ubatch=largest,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=False,
        verbose=False,
    )
    text = TEXT
    tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
    while len(tokens) < n_ctx:
        text += TEXT
        tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
    print(f"llama-cpp-python {llama_cpp.__version__}, {threads} threads, n_ctx {n_ctx}, "
          f"n_batch {largest}, GGUF {args.gguf}", file=sys.stderr)

    def prefill_s(n):
        llm.reset()  # n_tokens = 0: eval() drops the whole KV cache, a fresh context
        t0 = time.perf_counter()
        llm.eval(tokens[:n])
        return time.perf_counter() - t0

    prefill = {}
    for n in sizes:
        prefill_s(n)  # warm-up
        runs = [prefill_s(n) for _ in range(args.reps)]
        s = statistics.median(runs)
        prefill[n] = {"median_ms": s * 1e3, "tok_s": n / s, "runs_ms": [r * 1e3 for r in runs]}
        print(f"  prefill {n} tokens: {s * 1e3:.2f} ms, {n / s:.0f} tok/s", file=sys.stderr)

    def step_ms():
        llm.reset()
        llm.eval(tokens[:decode_at])
        times = []
        for j in range(args.steps):
            t0 = time.perf_counter()
            llm.eval([tokens[decode_at + j]])
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    step_ms()  # warm-up
    steps = [step_ms() for _ in range(args.reps)]
    step = statistics.median(steps)
    print(f"  decode step (batch 1, after {decode_at} tokens): {step:.2f} ms/token", file=sys.stderr)

    print()
    print("| prompt tokens | prefill ms | prefill tok/s |")
    print("|---|---|---|")
    for n in sizes:
        print(f"| {n} | {prefill[n]['median_ms']:.2f} | {prefill[n]['tok_s']:.0f} |")
    print(f"\nbatch-1 decode step after {decode_at} tokens: {step:.2f} ms/token")

    floors = []
    if prompts:
        print("\n| prompt | P positions | S steps | floor ms = P/prefill + S*step | ours ms | ours/floor |")
        print("|---|---|---|---|---|---|")
        for i, p in enumerate(prompts):
            P, S = p["len"], p["decode_steps"]
            floor = P / prefill[P]["tok_s"] * 1e3 + S * step
            floors.append({"prompt": i, "P": P, "S": S, "floor_ms": floor, "ours_ms": p["total_ms"],
                           "ours_over_floor": p["total_ms"] / floor})
            print(f"| {i} | {P} | {S} | {floor:.1f} | {p['total_ms']:.1f} | {p['total_ms'] / floor:.1f}x |")
        fm = statistics.median(f["floor_ms"] for f in floors)
        om = statistics.median(f["ours_ms"] for f in floors)
        print(f"\nmedian floor {fm:.1f} ms, median ours {om:.1f} ms, ours/floor {om / fm:.1f}x")
    if args.json:
        report = {
            "peer": "llama.cpp",
            "precision": args.quantize or "as the GGUF holds it",
            "llama_cpp_python": llama_cpp.__version__,
            "gguf": os.path.abspath(args.gguf),
            "threads": threads,
            "prefill": {str(n): v for n, v in prefill.items()},
            "decode_at": decode_at,
            "step_ms": step,
            "step_runs_ms": steps,
            "floors": floors,
        }
        if floors:
            report["median_floor_ms"] = statistics.median(f["floor_ms"] for f in floors)
            report["median_ours_ms"] = statistics.median(f["ours_ms"] for f in floors)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
