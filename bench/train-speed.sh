#!/usr/bin/env bash
# Training throughput side by side with PyTorch: the same checkpoint, sequence length,
# micro-batch and steps, for full fine-tuning and LoRA, with 1 and 2 threads; ours is
# `patchrec bench-train`, PyTorch's is bench/peer_train_torch.py (transformers + peft in
# the peers' venv: bench/setup-peers.sh, then `pip install --no-deps peft==0.13.2
# accelerate==1.1.1`). Prints a Markdown table with each pair's ratio, and writes every
# run's JSON under OUT_DIR (default .cache/bench/train-speed; nothing else is written).
#
#   bench/train-speed.sh CHECKPOINT [SEQ_LEN] [MICRO_BATCH] [STEPS]
#
# The runs alternate (ours, then PyTorch, per row), so a change in the machine's load
# shows in both; the load average is printed beside each row.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: $0 CHECKPOINT [SEQ_LEN] [MICRO_BATCH] [STEPS]" >&2
  exit 2
fi
checkpoint="$1"
seq_len="${2:-128}"
micro_batch="${3:-1}"
steps="${4:-3}"
rank="${LORA_RANK:-16}"
out="${OUT_DIR:-$root/.cache/bench/train-speed}"
py="${PATCHREC_PEERS:-$HOME/.cache/patchrec/peers}/venv/bin/python"
bin="$root/target/release/patchrec"
[ -d "$checkpoint" ] || { echo "no checkpoint at $checkpoint" >&2; exit 1; }
[ -x "$py" ] || { echo "no peers' venv at $py: run bench/setup-peers.sh" >&2; exit 1; }
"$py" -c 'import peft' 2>/dev/null || { echo "peft is missing in $py's venv" >&2; exit 1; }
(cd "$root" && cargo build --release --quiet)
mkdir -p "$out"

pps() { python3 -c 'import json,sys; print("%.1f" % json.load(open(sys.argv[1]))["positions_per_second"])' "$1"; }

echo "| mode | threads | seq_len x micro_batch | ours (positions/s) | PyTorch (positions/s) | ours / PyTorch | load |"
echo "|---|---|---|---|---|---|---|"
for mode in full lora; do
  for threads in 1 2; do
    tag="$mode-t$threads-s$seq_len-b$micro_batch"
    lora_ours=() lora_torch=()
    if [ "$mode" = lora ]; then
      lora_ours=(--lora-rank "$rank")
      lora_torch=(--lora-rank "$rank")
    fi
    RAYON_NUM_THREADS=$threads "$bin" bench-train --checkpoint "$checkpoint" --seq-len "$seq_len" \
      --micro-batch "$micro_batch" --steps "$steps" "${lora_ours[@]}" --out "$out/ours-$tag.json" >/dev/null
    "$py" "$root/bench/peer_train_torch.py" --checkpoint "$checkpoint" --seq-len "$seq_len" \
      --micro-batch "$micro_batch" --steps "$steps" --threads "$threads" "${lora_torch[@]}" \
      >"$out/torch-$tag.json"
    ours="$(pps "$out/ours-$tag.json")"
    torch="$(pps "$out/torch-$tag.json")"
    ratio="$(python3 -c "print('%.2fx' % ($ours / $torch))")"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    label="$mode"
    [ "$mode" = lora ] && label="LoRA r$rank"
    echo "| $label | $threads | $seq_len x $micro_batch | $ours | $torch | $ratio | $load |"
  done
done
