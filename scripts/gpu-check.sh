#!/usr/bin/env bash
# The device check: the CUDA build's correctness and speed on a GPU, in one command that
# writes JSON into a folder (docs/GPU.md has the figures and how they were taken).
#
#   scripts/gpu-check.sh --prepare      # here: build the `cuda` binaries (scripts/build-cuda.sh)
#                                       # and the fixtures into .cache/gpu-check (about 20 MB)
#   scripts/gpu-check.sh [--out DIR]    # on the GPU machine: the check, on cuda:0
#   scripts/gpu-check.sh --cpu [--out DIR]
#                                       # the same steps and binaries on this CPU, at small
#                                       # sizes: how the script itself is tested (CI runs it)
#
# The GPU machine has no Rust and no network, and takes at most 64 MiB of files along, so
# the bundle holds the binaries (xz-compressed: most of their bytes are candle's kernels
# as PTX text) and the shapes, tokenizer and prompt of SmolLM2-135M, never weights: each
# model is made there with random weights (`patchrec init --like`), which cost what
# trained weights cost. The steps:
#   1. the test binaries built with the feature: `device_path` against the CPU (logits
#      within 1e-3, the same top 20, a training step's loss and gradients, AdamW) and
#      `hardening`'s device test (cuda:0 loads, an absent ordinal is a clear error);
#   2. `patchrec bench` on SmolLM2's shapes: vanilla, pft-s:5 and stream-s:5 at 20, 100,
#      500 and 1,000 items, append + query included;
#   3. the same on Llama-3.2-1B's shapes (16 layers, d=2048, 32/8 heads, 8,192-wide MLP,
#      128,256-token vocabulary), the paper's setting, at 20, 100 and 500 items;
#   4. training throughput on SmolLM2's shapes, full fine-tuning and LoRA.
# Output: one log and one JSON report per step, and summary.json (each step's status and
# seconds). The exit status is non-zero when a step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bundle=$root/.cache/gpu-check

if [ "${1:-}" = "--prepare" ]; then
  target=$(./scripts/build-cuda.sh --tests device_path hardening | tail -n 1)
  rm -rf "$bundle"
  mkdir -p "$bundle/bin" "$bundle/smollm2"
  cp "$target/release/patchrec" "$bundle/bin/"
  while read -r exe; do
    case "$(basename "$exe")" in
      device_path-*) cp "$exe" "$bundle/bin/device_path" ;;
      hardening-*) cp "$exe" "$bundle/bin/hardening" ;;
    esac
  done < "$target/test-binaries.txt"
  for t in patchrec device_path hardening; do
    [ -x "$bundle/bin/$t" ] || { echo "gpu-check: $t was not built" >&2; exit 1; }
  done
  gguf=$(./scripts/fetch-smollm2.sh)
  converted=$(mktemp -d)
  trap 'rm -rf "$converted"' EXIT
  "$target/release/patchrec" convert --from-gguf "$gguf" --out "$converted/smollm2" >/dev/null
  for f in config.json tokenizer.json patchrec.json; do
    cp "$converted/smollm2/$f" "$bundle/smollm2/"
  done
  (cd "$bundle" && tar cf - bin | xz -9e -T2 > bin.tar.xz && rm -rf bin)
  du -sh "$bundle"
  exit
fi

device=cuda:0
out=${OUT:-$root/.cache/gpu-check-out}
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) device=cpu ;;
    --out) out=$2; shift ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -f "$bundle/bin.tar.xz" ] || { echo "gpu-check: no bundle; run $0 --prepare first" >&2; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
  "$bundle/bin.tar.xz" "$work"
bin=$work/bin

# A catalogue of 2,000 made-up film titles, about as long in tokens as MovieLens's.
items=$work/items.tsv
python3 - "$items" <<'PY'
import itertools, sys
first = ["The", "A", "Return of the", "Last", "Night of the", "Secret", "Little", "Big"]
adj = ["Silent", "Golden", "Broken", "Hidden", "Wild", "Lost", "Red", "Dark", "Iron", "Blue"]
noun = ["River", "Empire", "Harbor", "Machine", "Garden", "Island", "Winter", "Stranger",
        "Kingdom", "Highway", "Mirror", "Forest", "Detective", "Dancer", "Storm"]
with open(sys.argv[1], "w") as f:
    combos = itertools.product(first, adj, noun, ["", " II"])
    for i, (a, b, c, part) in zip(range(2000), combos):
        f.write(f"{i + 1}\t{a} {b} {c}{part} ({1930 + i * 7 % 90})\n")
PY

if [ "$device" = cpu ]; then
  # Small sizes, and a tiny model made here stands in for SmolLM2's files.
  lengths=20,100 big_lengths=20 users=2 train_steps=2 seq_len=64
  big=(--hidden 128 --layers 2 --heads 4 --kv-heads 2 --intermediate 256 --vocab-size 8192)
  like=$work/tiny
  "$bin/patchrec" init --items "$items" --out "$like" --hidden 64 --layers 2 >/dev/null
  test_env=(env -u CI -u PATCHREC_TEST_DEVICE)
else
  lengths=20,100,500,1000 big_lengths=20,100,500 users=10 train_steps=20 seq_len=512
  big=(--hidden 2048 --layers 16 --heads 32 --kv-heads 8 --intermediate 8192 --vocab-size 128256)
  like=$bundle/smollm2
  test_env=(env PATCHREC_TEST_DEVICE=$device)
  # cudarc opens the CUDA libraries at run time; PyTorch's wheels hold CUDA 13's.
  cu=$(python3 -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' \
    2>/dev/null || true)
  export LD_LIBRARY_PATH=${cu:+$cu:}${LD_LIBRARY_PATH:-}
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.csv" 2>&1 || true
fi

summary=()
step() {
  local name=$1 started=$SECONDS status=ok
  shift
  echo "=== $name ($(date -u +%H:%M:%S))" >&2
  "$@" > "$out/$name.log" 2>&1 || status=failed
  summary+=("{\"step\": \"$name\", \"status\": \"$status\", \"seconds\": $((SECONDS - started))}")
  if [ $status = failed ]; then tail -20 "$out/$name.log" >&2; fi
}

# 1. Correctness against the CPU, on the device.
step test-device-path "${test_env[@]}" "$bin/device_path" --test-threads 1
step test-device-load "${test_env[@]}" "$bin/hardening" a_newer_format_or_an_absent_device_is_refused

# 2-3. Serving, on random weights in SmolLM2's and Llama-3.2-1B's shapes.
step init-smollm2 "$bin/patchrec" init --like "$like" --out "$work/smollm2"
step init-llama-1b "$bin/patchrec" init --like "$like" --out "$work/llama-1b" "${big[@]}"
step bench-smollm2 "$bin/patchrec" bench --checkpoint "$work/smollm2" --items "$items" \
  --device $device --layouts vanilla,pft-s:5,stream-s:5 --lengths $lengths --users $users \
  --out "$out/bench-smollm2.json"
step bench-llama-1b "$bin/patchrec" bench --checkpoint "$work/llama-1b" --items "$items" \
  --device $device --layouts vanilla,pft-s:5 --lengths $big_lengths --users $users \
  --out "$out/bench-llama-1b.json"

# 4. Training throughput, full fine-tuning and LoRA.
for mode in full lora; do
  lora=()
  [ $mode = lora ] && lora=(--lora-rank 8)
  step train-$mode "$bin/patchrec" bench-train --checkpoint "$work/smollm2" --device $device \
    --seq-len $seq_len --micro-batch 8 --answer 16 --steps $train_steps "${lora[@]}" \
    --out "$out/train-$mode.json"
done

(IFS=,; echo "{\"device\": \"$device\", \"steps\": [${summary[*]}]}") > "$out/summary.json"
cat "$out/summary.json"
! grep -q '"failed"' "$out/summary.json"
