#!/usr/bin/env bash
# The paper's comparison on one dataset, with from-scratch models sized for 2 CPU cores:
# vanilla SFT; PatchRec-I (M=5) and PatchRec-S (L=5, L=20), each trained directly and
# after patch pre-training (PPT); the popularity baseline. Every run and every evaluation
# is resumable: rerun this script after an interruption and it continues.
#
#   scripts/experiments.sh ml-100k [max_samples] [steps]
#
# Output: .cache/experiments/<dataset>/ (configs, checkpoints, metrics, eval reports) and
# results.md there. Run it in the background (nohup ... &): it takes hours.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
dataset="${1:?usage: scripts/experiments.sh DATASET [max_samples] [steps]}"
max_samples="${2:-12000}"
steps="${3:-375}"
data="$root/../shared/data/$dataset"
if [ ! -f "$data/sequences.jsonl" ]; then
  echo "experiments: $data not found (the benchmark data lives in ../shared/data)" >&2
  exit 1
fi
exp="$root/.cache/experiments/$dataset"
mkdir -p "$exp"
cargo build --release --quiet
bin="$root/target/release/patchrec"

# One shared from-scratch start, so every run has the same tokenizer and initial weights.
if [ ! -f "$exp/init/patchrec.json" ]; then
  "$bin" init --items "$data/items.tsv" --prompt "$data/prompt.txt" --out "$exp/init" \
    --vocab-size 2048 --hidden 128 --layers 4 --heads 4 --kv-heads 2 --seed 42
fi

# run NAME FROM_CHECKPOINT KIND [m|l VALUE]: one training stage, then valid and test scores.
run() {
  local name=$1 from=$2 kind=$3 key=${4:-} value=${5:-}
  local dir="$exp/$name"
  mkdir -p "$dir"
  cat > "$dir/config.toml" <<TOML
out = "$dir/run"
data = "$data"
seed = 42
[model]
checkpoint = "$from"
[samples]
max_samples = $max_samples
[[stage]]
kind = "$kind"
${key:+$key = $value}
max_history = 100
max_steps = $steps
batch_size = 32
micro_batch = 2
learning_rate = 1e-3
warmup_ratio = 0.05
max_grad_norm = 1.0
checkpoint_every = 25
TOML
  local started=$SECONDS
  "$bin" train "$dir/config.toml" --resume
  echo "$name: trained in $((SECONDS - started)) s" >> "$exp/timings.txt"
}

# score NAME LAYOUT SPLIT: the paper's protocol on the run's final checkpoint.
score() {
  local name=$1 layout=$2 split=$3
  local ckpt
  ckpt="$(ls -d "$exp/$name"/run/01-* | grep -v resume | head -n 1)"
  "$bin" eval --checkpoint "$ckpt" --data "$data" --split "$split" --layout "$layout" \
    --out "$exp/$name/eval-$split-${layout/:/}.json" --name "$name" | tail -n 2 | head -n 1 \
    >> "$exp/results-$split.md"
}

run sft "$exp/init" sft
run pfti5 "$exp/init" pft-i m 5
run pfts5 "$exp/init" pft-s l 5
run pfts20 "$exp/init" pft-s l 20
run ppt "$exp/init" ppt
ppt_ckpt="$exp/ppt/run/01-ppt"
run ppt-pfti5 "$ppt_ckpt" pft-i m 5
run ppt-pfts5 "$ppt_ckpt" pft-s l 5
run ppt-pfts20 "$ppt_ckpt" pft-s l 20

for split in valid test; do
  : > "$exp/results-$split.md"
  "$bin" eval --popularity --data "$data" --split "$split" --name popularity | tail -n 2 | head -n 1 \
    >> "$exp/results-$split.md"
  score sft vanilla "$split"
  score pfti5 pft-i:5 "$split"
  score ppt-pfti5 pft-i:5 "$split"
  score pfts5 pft-s:5 "$split"
  score ppt-pfts5 pft-s:5 "$split"
  score pfts20 pft-s:20 "$split"
  score ppt-pfts20 pft-s:20 "$split"
done
cat "$exp/results-test.md"
