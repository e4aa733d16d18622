#!/usr/bin/env bash
# One command for the side-by-side comparison with the peers (llama.cpp, transformers):
#
#   bench/peers.sh [CHECKPOINT] [ITEMS] [LAYOUT] [LENGTH]
#
# 1. bench/setup-peers.sh (installs the peers once; skips what cannot be installed);
# 2. `patchrec export-prompts`: USERS random histories of LENGTH items in LAYOUT, their
#    exact prompt embeddings, our top-k and our timings, with RAYON_NUM_THREADS=THREADS;
# 3. bench/peer_transformers.py on the same prompts (modes reference, cached, beam-lp0),
#    torch with THREADS threads;
# 4. bench/hf_to_gguf.py: an f32 GGUF of the same checkpoint (same weights, same
#    precision), then bench/peer_llamacpp.py with THREADS threads: prefill rate, batch-1
#    decode step and the floor P / prefill_tok_s + S * step_ms per prompt;
# 5. one side-by-side table.
#
# PRECISION=q8_0 or bf16 quantizes both sides: ours with `--quantize`, llama.cpp's GGUF
# with llama.cpp's own quantizer from the same f32 weights (transformers stays f32).
#
# Defaults: CHECKPOINT = SmolLM2-135M-Instruct converted into .cache/smollm2/ckpt (made if
# missing), ITEMS = ../shared/data/ml-100k/items.tsv if present else examples/cpp/movies.tsv,
# LAYOUT = pft-s:5, LENGTH = 100. Environment: USERS (prompts, default 5), THREADS (default
# all cores), PEER_BUDGET_S (per transformers mode, seconds of timed queries after which the
# remaining prompts are skipped; default 240), OUT (results folder, default
# bench/results/<layout>-<length>, git-ignored), PATCHREC_BIN (our binary; default
# target/release/patchrec, built with cargo first). On 2 cores, SmolLM2 at history 20 takes
# ~7 s per query and mode in transformers; the budgets keep a default run under ~15 minutes
# (plus the one-time peer install: llama-cpp-python compiles for ~15-20 minutes).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
here="$root/bench"
cd "$root"
checkpoint="${1:-$root/.cache/smollm2/ckpt}"
items="${2:-}"
if [ -z "$items" ]; then
  if [ -f "$root/../shared/data/ml-100k/items.tsv" ]; then
    items="$root/../shared/data/ml-100k/items.tsv"
  else
    items="$root/examples/cpp/movies.tsv"
  fi
fi
layout="${3:-pft-s:5}"
length="${4:-100}"
users="${USERS:-5}"
precision="${PRECISION:-f32}"
case "$precision" in
  f32) quantize=() ;;
  q8_0|bf16) quantize=(--quantize "$precision") ;;
  *) echo "peers: PRECISION must be f32, q8_0 or bf16, not $precision" >&2; exit 2 ;;
esac
threads="${THREADS:-$(nproc)}"
budget="${PEER_BUDGET_S:-240}"
out="${OUT:-$here/results/${layout//:/}-$length-$precision}"
peers="${PATCHREC_PEERS:-$HOME/.cache/patchrec/peers}"
py="$peers/venv/bin/python"
mkdir -p "$out"

say() { echo "peers: $*" >&2; }

# Every stack runs with its own default settings (no OpenMP wait policy or thread pinning
# chosen for it). Each timed run goes through bench/busy.py, which measures the CPU other
# processes used meanwhile; runs where they kept more than 0.1 of a core busy are marked
# "under load" in the table ($out/load.jsonl has the figures).
busy() { python3 "$here/busy.py" --log "$out/load.jsonl" --label "$@"; }
rm -f "$out/load.jsonl"

# --- 1. peers --------------------------------------------------------------------------
bash "$here/setup-peers.sh" || say "setup-peers found no working peer; only our own figures follow"
# PATCHREC_PEERS_ONLY (as for setup-peers.sh) also picks the peers that run.
only="${PATCHREC_PEERS_ONLY:-transformers,llamacpp}"
want() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
have_transformers=0
have_llamacpp=0
if [ -f "$peers/status" ]; then
  want transformers && grep -q '^transformers=1' "$peers/status" && have_transformers=1
  want llamacpp && grep -q '^llamacpp=1' "$peers/status" && have_llamacpp=1
fi

# --- 2. our side -----------------------------------------------------------------------
bin="${PATCHREC_BIN:-$root/target/release/patchrec}"
if [ -z "${PATCHREC_BIN:-}" ]; then
  cargo build --release --quiet
fi
if ! "$bin" export-prompts --help >/dev/null 2>&1; then
  say "$bin has no export-prompts subcommand (rebuild it: cargo build --release)"
  exit 1
fi
q41=""
if [ "$checkpoint" = "$root/.cache/smollm2/ckpt" ]; then
  q41="$(bash "$root/scripts/fetch-smollm2.sh")"
  if [ ! -f "$checkpoint/config.json" ]; then
    say "converting $q41 into $checkpoint"
    "$bin" convert --from-gguf "$q41" --out "$checkpoint"
  fi
fi
say "exporting $users prompts: $layout, history $length, $threads threads ($out/prompts)"
RAYON_NUM_THREADS="$threads" busy ours "$bin" export-prompts --checkpoint "$checkpoint" \
  --items "$items" --layout "$layout" --length "$length" --users "$users" --k 20 --beam-width 20 \
  --out "$out/prompts" "${quantize[@]}"

# --- 3. transformers -------------------------------------------------------------------
rm -f "$out/transformers.json" "$out/llamacpp.json"
if [ "$have_transformers" = 1 ]; then
  say "transformers peer"
  busy transformers "$py" "$here/peer_transformers.py" --checkpoint "$checkpoint" --prompts "$out/prompts" \
    --threads "$threads" --budget-s "$budget" --json "$out/transformers.json" \
    || say "transformers peer failed (see above)"
else
  echo "skipping transformers: not in PATCHREC_PEERS_ONLY=$only, or not installed (bench/setup-peers.sh said why)"
fi

# --- 4. llama.cpp ----------------------------------------------------------------------
if [ "$have_llamacpp" = 1 ]; then
  gguf="$out/model.f32.gguf"
  peer_precision="f32, the same weights as our checkpoint"
  [ "$precision" != f32 ] && peer_precision="$precision by llama.cpp's quantizer from the same f32 weights"
  if ! "$py" "$here/hf_to_gguf.py" --checkpoint "$checkpoint" --out "$gguf"; then
    if [ -n "$q41" ]; then
      gguf="$q41"
      peer_precision="Q4_1 (NOT our precision: the f32 GGUF could not be written)"
      quantize=()
      echo "llama.cpp: falling back to the Q4_1 GGUF $q41 -- NOT the same precision as ours (f32)"
    else
      gguf=""
      echo "skipping llama.cpp: no GGUF of $checkpoint could be written"
    fi
  fi
  if [ -n "$gguf" ]; then
    say "llama.cpp peer on $gguf ($peer_precision)"
    busy llama.cpp "$py" "$here/peer_llamacpp.py" --gguf "$gguf" --tokens 20,100,500 \
      --threads "$threads" --prompts "$out/prompts" --json "$out/llamacpp.json" "${quantize[@]}" \
      || say "llama.cpp peer failed (see above)"
    echo "$peer_precision" >"$out/llamacpp.precision"
  fi
else
  echo "skipping llama.cpp: not in PATCHREC_PEERS_ONLY=$only, or not installed (bench/setup-peers.sh said why)"
fi

# --- 5. side by side -------------------------------------------------------------------
PY="$py"
[ -x "$PY" ] || PY=python3
"$PY" - "$out" <<'PYEOF'
import json, os, statistics, sys
out = sys.argv[1]
m = json.load(open(os.path.join(out, "prompts", "prompts.json")))
ours = [p["total_ms"] for p in m["prompts"]]
print()
print(f"## Peers: {m['layout']}, history {m['history_length']}, top-{m['k']} of {len(m['item_ids'])} items, "
      f"{m['beam_width']} beams, {m['threads']} threads, {len(ours)} prompts "
      f"(median {statistics.median(p['len'] for p in m['prompts'])} positions, "
      f"median {statistics.median(p['decode_steps'] for p in m['prompts'])} decode steps)")
print()
load = {}
lp = os.path.join(out, "load.jsonl")
if os.path.exists(lp):
    for line in open(lp):
        r = json.loads(line)
        load[r["label"]] = r
def busy(label):
    r = load.get(label)
    if r is None:
        return "load not measured"
    mark = "UNDER LOAD, not comparable" if r["under_load"] else "idle"
    return f"others used {r['others_cores']:.2f} cores ({mark})"
notes = [f"our weights: {m.get('precision', 'f32')}; every stack with its default settings"]
print("| stack | median ms/query | ours median ms | ratio | notes |")
print("|---|---|---|---|---|")
print(f"| libpatchrec (ours) | {statistics.median(ours):.1f} | {statistics.median(ours):.1f} | 1.00 | "
      f"prefill {statistics.median(p['prefill_ms'] for p in m['prompts']):.1f} ms + decode; {busy('ours')} |")
tj = os.path.join(out, "transformers.json")
if os.path.exists(tj):
    t = json.load(open(tj))
    par = t["parity"]
    for mode, r in t["modes"].items():
        note = {"reference": "authors' decoding: group beam search, use_cache=False"
                             + (" (ignored by transformers: KV cache used)" if r.get("kv_cache_used") else ""),
                "cached": "same with use_cache=True",
                "beam-lp0": "plain beam search, length_penalty 0 (our algorithm)"}.get(mode, "")
        print(f"| transformers {t['transformers']} {mode} | {r['median_ms']:.1f} | {r['ours_median_ms']:.1f} | "
              f"{r['ratio_median']:.2f}x slower than ours | {note}; overlap@{t['k']} {r['mean_overlap']:.2f}, "
              f"same order {r['same_order']}/{r['prompts_timed']}; f32; {busy('transformers')} |")
    notes.append(f"transformers parity: max |logits - ours| {par['max_abs_diff']:.3g} "
                 f"(relative to max |logit| {par['max_relative']:.3g}), same argmax in "
                 f"{sum(r['same_argmax'] for r in par['per_prompt'])}/{len(par['per_prompt'])} prompts")
    if t["modes"].get("beam-lp0", {}).get("score_max_abs_diff") is not None:
        notes.append(f"beam-lp0: max |HF score - our score| {t['modes']['beam-lp0']['score_max_abs_diff']:.3g}")
else:
    print("| transformers | - | - | - | not run |")
lj = os.path.join(out, "llamacpp.json")
if os.path.exists(lj):
    l = json.load(open(lj))
    prec = open(os.path.join(out, "llamacpp.precision")).read().strip()
    print(f"| llama.cpp floor (P/prefill + S*step) | {l['median_floor_ms']:.1f} | {l['median_ours_ms']:.1f} | "
          f"ours {l['median_ours_ms'] / l['median_floor_ms']:.2f}x the floor | batch-1 step {l['step_ms']:.2f} ms; "
          f"{prec}; {busy('llama.cpp')} |")
else:
    print("| llama.cpp floor | - | - | - | not run |")
for n in notes:
    print(f"\n{n}")
PYEOF
say "results in $out"
