#!/usr/bin/env bash
# The serving measurements behind docs/PERFORMANCE.md, in one command, on an idle machine
# (anything else running skews every figure). Writes JSON and Markdown into docs/bench/.
#
#   scripts/perf.sh [all|serving|sessions|quantized|batching|peers]
#
# serving: SmolLM2-135M (converted from PyPI's GGUF), the ml-100k catalogue (1,682 titles;
# the example's 60 when ../shared/data is missing), histories of 20, 100, 500 and 1,000
# items in four layouts: fresh query, append + query on a cached user, prompt positions,
# roofline. sessions: stream-s:5 with counted sessions and with a 30-minute session gap
# (synthetic visits). quantized: the same for Q8_0 weights. batching: concurrent callers with and
# without the batching worker. peers: bench/peers.sh (transformers, llama.cpp).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
part="${1:-all}"
out="$root/docs/bench"
mkdir -p "$out"
cargo build --release --quiet
bin="$root/target/release/patchrec"
smol="$root/.cache/smollm2"
if [ ! -f "$smol/patchrec.json" ]; then
  "$bin" convert --from-gguf "$(scripts/fetch-smollm2.sh)" --out "$smol"
fi
items="$root/../shared/data/ml-100k/items.tsv"
if [ ! -f "$items" ]; then
  echo "perf: $items not found (../shared/data); using the example's 60 titles" >&2
  items="$root/examples/cpp/movies.tsv"
fi
run() { # NAME ARGS...: one bench run, its table printed and kept
  local name=$1
  shift
  local args="$*"
  echo "== $name: patchrec bench ${args//$root\//}" | tee "$out/$name.md"
  "$bin" bench "$@" --out "$out/$name.json" | tee -a "$out/$name.md"
}
if [ "$part" = all ] || [ "$part" = serving ]; then
  run smollm2-serving --checkpoint "$smol" --items "$items" \
    --layouts vanilla,pft-i:5,pft-s:5,stream-s:5 --lengths 20,100,500,1000 --users 2
fi
if [ "$part" = all ] || [ "$part" = sessions ]; then
  run smollm2-counted-sessions --checkpoint "$smol" --items "$items" \
    --layouts stream-s:5,pft-s:5 --lengths 100,1000 --users 3
  run smollm2-session-gap --checkpoint "$smol" --items "$items" \
    --layouts stream-s:5 --lengths 100,1000 --users 3 --session-gap 1800
fi
if [ "$part" = all ] || [ "$part" = quantized ]; then
  # f32 right before Q8_0, so the pair compares on the same machine state.
  run smollm2-f32-pair --checkpoint "$smol" --items "$items" \
    --layouts pft-s:5,stream-s:5 --lengths 100,1000 --users 2
  run smollm2-q8_0 --checkpoint "$smol" --items "$items" --quantize q8_0 \
    --layouts pft-s:5,stream-s:5 --lengths 100,1000 --users 2
fi
if [ "$part" = all ] || [ "$part" = batching ]; then
  for mode in direct batched; do
    flag=()
    [ "$mode" = batched ] && flag=(--batched)
    run "smollm2-4callers-$mode" --checkpoint "$smol" --items "$items" \
      --layouts stream-s:5 --lengths 100 --users 8 --callers 4 "${flag[@]}"
  done
fi
if [ "$part" = all ] || [ "$part" = peers ]; then
  USERS="${USERS:-3}" THREADS="${THREADS:-$(nproc)}" PATCHREC_BIN="$bin" \
    OUT="$root/bench/results/perf-pfts5-100" bench/peers.sh "$smol" "$items" pft-s:5 100 \
    | tee "$out/peers-pfts5-100.md"
fi
