#!/usr/bin/env bash
# The paper's comparison on one dataset, with from-scratch models sized for 2 CPU cores:
# vanilla SFT; PatchRec-I (M=5) and PatchRec-S (L=5, L=20), each trained directly and
# after patch pre-training (PPT); the popularity baseline. Every run and every evaluation
# is resumable: rerun this script after an interruption and it continues.
#
#   scripts/experiments.sh DATASET PART [max_samples] [steps]
#
# PART is `direct` (SFT, PFT-I, PFT-S from the shared start), `ppt` (PPT, then PFT-I and
# PFT-S from it), `eval` (valid and test scores of every finished run, and popularity),
# `all`, `long` (PFT-S(5) for LONG_EPOCHS epochs over all training samples, each epoch
# scored), `serving` (on valid, the serving options' HR@20: exact ranking vs beam search,
# stream-aligned vs tail-aligned PFT-S, Q8_0 weights, and the adaptive layout's budget
# sweep; SERVING_SAMPLES samples, default all), or `smollm2` (SmolLM2-135M-Instruct fine-tuned with LoRA, stream-s:5 packed and
# PFT-I(5); see that part below). EVAL_SAMPLES=N scores a seeded choice
# of N samples per split instead of all (ml-1m: the CPU cannot score 6,000 per run). `direct` and `ppt` are independent: on 2 cores run them side by side, each
# single-threaded (RAYON_NUM_THREADS=1 gave 2,097 tokens/s against 2,634 for one
# two-threaded run). Output: $PATCHREC_EXPERIMENTS/<dataset>/ (default
# ~/.cache/patchrec/experiments; configs, checkpoints, metrics, eval reports,
# results-<split>.md, timings.txt). It takes hours: run it in the background.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
usage="usage: scripts/experiments.sh DATASET direct|ppt|eval|all|long|serving|smollm2 [max_samples] [steps]"
dataset="${1:?$usage}"
part="${2:?$usage}"
max_samples="${3:-12000}"
steps="${4:-375}"
data="$root/../shared/data/$dataset"
if [ ! -f "$data/sequences.jsonl" ]; then
  echo "experiments: $data not found (the benchmark data lives in ../shared/data)" >&2
  exit 1
fi
# Outside the work tree, so a fresh checkout of the project finds the runs to resume.
exp="${PATCHREC_EXPERIMENTS:-$HOME/.cache/patchrec/experiments}/$dataset"
mkdir -p "$exp"
# PATCHREC_BIN runs the experiments with a given build of the CLI (e.g. a copy kept while
# the work tree changes); by default the tree's own release build.
bin="${PATCHREC_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="$root/target/release/patchrec"
fi

eval_users=()
if [ -n "${EVAL_SAMPLES:-}" ]; then
  eval_users=(--max-samples "$EVAL_SAMPLES")
fi

# One shared from-scratch start, so every run has the same tokenizer and initial weights.
if [ ! -f "$exp/init/patchrec.json" ]; then
  "$bin" init --items "$data/items.tsv" --prompt "$data/prompt.txt" --out "$exp/init" \
    --vocab-size 2048 --hidden 128 --layers 4 --heads 4 --kv-heads 2 --seed 42
fi

# stage_toml KIND KEY VALUE LENGTH: one [[stage]] with the settings every run here shares;
# KEY VALUE is `m 5` or `l 5` (or empty), LENGTH a line such as `max_steps = 375`.
stage_toml() {
  cat <<TOML
[[stage]]
kind = "$1"
${2:+$2 = $3}
max_history = 100
$4
batch_size = 32
micro_batch = 2
learning_rate = 1e-3
warmup_ratio = 0.05
max_grad_norm = 1.0
checkpoint_every = 25
TOML
}

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
$(stage_toml "$kind" "$key" "$value" "max_steps = $steps")
TOML
  local started=$SECONDS
  "$bin" train "$dir/config.toml" --resume
  echo "$name: trained in $((SECONDS - started)) s" >> "$exp/timings.txt"
}

# score NAME LAYOUT SPLIT: the paper's protocol on the run's final checkpoint, if it has one.
score() {
  local name=$1 layout=$2 split=$3
  local ckpt
  ckpt="$(ls -d "$exp/$name"/run/01-* 2>/dev/null | grep -v resume | head -n 1 || true)"
  if [ -z "$ckpt" ]; then
    echo "| $name | (not trained yet) |" >> "$exp/results-$split.md"
    return
  fi
  "$bin" eval --checkpoint "$ckpt" --data "$data" --split "$split" --layout "$layout" \
    "${eval_users[@]}" --out "$exp/$name/eval-$split-${layout/:/}.json" --name "$name" | tail -n 2 | head -n 1 \
    >> "$exp/results-$split.md"
}

if [ "$part" = direct ] || [ "$part" = all ]; then
  run sft "$exp/init" sft
  run pfti5 "$exp/init" pft-i m 5
  run pfts5 "$exp/init" pft-s l 5
  run pfts20 "$exp/init" pft-s l 20
fi
if [ "$part" = ppt ] || [ "$part" = all ]; then
  run ppt "$exp/init" ppt
  ppt_ckpt="$exp/ppt/run/01-ppt"
  run ppt-pfti5 "$ppt_ckpt" pft-i m 5
  run ppt-pfts5 "$ppt_ckpt" pft-s l 5
  run ppt-pfts20 "$ppt_ckpt" pft-s l 20
fi
if [ "$part" = long ]; then
  # PFT-S (L=5), the cheapest layout, over every training sample for LONG_EPOCHS epochs
  # (default 3), one stage per epoch (each its own warm-up + cosine, i.e. warm restarts).
  # Each epoch's checkpoint is scored on valid (to choose on) and test as soon as it is
  # written, so an interrupted run has its finished epochs' scores.
  long="$exp/long-pfts5"
  mkdir -p "$long"
  for epoch in $(seq "${LONG_EPOCHS:-3}"); do
    {
      printf 'out = "%s/run"\ndata = "%s"\nseed = 42\n[model]\ncheckpoint = "%s/init"\n' \
        "$long" "$data" "$exp"
      for _ in $(seq "$epoch"); do
        stage_toml pft-s l 5 "epochs = 1.0"
      done
    } > "$long/config.toml"
    started=$SECONDS
    "$bin" train "$long/config.toml" --resume
    echo "long-pfts5 epoch $epoch: trained in $((SECONDS - started)) s" >> "$exp/timings.txt"
    ckpt="$long/run/$(printf %02d "$epoch")-pft-s5"
    for split in valid test; do
      "$bin" eval --checkpoint "$ckpt" --data "$data" --split "$split" --layout pft-s:5 \
        "${eval_users[@]}" --out "$long/eval-$split-epoch$epoch.json" \
        --name "PFT-S(5) epoch $epoch, $split" | tail -n 2 | head -n 1 | tee -a "$long/results.md"
    done
  done
  exit 0
fi
if [ "$part" = smollm2 ]; then
  # SmolLM2-135M-Instruct from PyPI, converted once, fine-tuned with LoRA: stream-s:5 (the
  # serving layout, packed) as the main run, PFT-I(5) beside it (run them side by side,
  # one thread each: SMOLLM2_RUN=streams5 and SMOLLM2_RUN=pfti5 with
  # RAYON_NUM_THREADS=1), then streams5-all (all samples, from the streams5 checkpoint),
  # then a second epoch from that: streams5-e2 (LoRA) or streams5-full (every weight).
  # SMOLLM2_RUNS (default $exp/smollm2) holds the base checkpoint and each run's config,
  # checkpoints and evaluations; SMOLLM2_RUN picks one run (streams5, pfti5, streams5-all,
  # streams5-e2 or streams5-full; default the first three, in turn).
  # stream-s5 trains 1 epoch over the training samples of 240 seeded users (the paper's
  # rule, K = 100; 16,560 samples), packed; pft-i5 (unpacked: its prompts share only the
  # template's head) over a seeded 6,000 samples. Both: batches of 16, AdamW at 5e-4 peak,
  # 3 % warm-up, cosine, clip 1.0; LoRA rank 16, alpha 32, every projection, the new
  # tokens' rows.
  # Then valid and test, all samples (SMOLLM2_EVAL_SAMPLES=N for a seeded subset).
  runs="${SMOLLM2_RUNS:-$exp/smollm2}"
  mkdir -p "$runs"
  if [ ! -f "$runs/smollm2-base/patchrec.json" ]; then
    "$bin" convert --from-gguf "$("$root/scripts/fetch-smollm2.sh")" --out "$runs/smollm2-base"
  fi
  eval_subset=()
  if [ -n "${SMOLLM2_EVAL_SAMPLES:-}" ]; then
    eval_subset=(--max-samples "$SMOLLM2_EVAL_SAMPLES")
  fi
  # smollm2_run NAME KIND KEY VALUE LAYOUT PACK SAMPLES [BASE] [LR] [TUNE]: SAMPLES is a
  # [samples] line (empty: all samples), BASE the checkpoint to start from (default the
  # converted model), LR the peak learning rate (default 5e-4), TUNE "lora" (rank 16,
  # alpha 32; the default) or "full" (every weight trains).
  smollm2_run() {
    local name=$1 kind=$2 key=$3 value=$4 layout=$5 pack=$6 samples=$7
    local base=${8:-$runs/smollm2-base} lr=${9:-5e-4} tune=${10:-lora}
    local dir="$runs/smollm2-$name"
    local lora=$'[stage.lora]\nrank = 16\nalpha = 32'
    [ "$tune" = full ] && lora=""
    mkdir -p "$dir"
    cat > "$dir/config.toml" <<TOML
out = "$dir/run"
data = "$data"
seed = 42
[model]
checkpoint = "$base"
[samples]
$samples
[[stage]]
kind = "$kind"
$key = $value
max_history = 100
batch_size = 16
micro_batch = 1
learning_rate = $lr
warmup_ratio = 0.03
max_grad_norm = 1.0
checkpoint_every = 10
pack = $pack
pack_positions = 512
$lora
TOML
    local started=$SECONDS
    "$bin" train "$dir/config.toml" --resume
    echo "smollm2-$name: trained in $((SECONDS - started)) s (this invocation)" >> "$exp/timings.txt"
    local ckpt
    ckpt="$(ls -d "$dir"/run/01-* | grep -v -e resume -e adapters | head -n 1)"
    for split in valid test; do
      "$bin" eval --checkpoint "$ckpt" --data "$data" --split "$split" --layout "$layout" \
        "${eval_subset[@]}" --out "$dir/eval-$split.json" --name "smollm2-$name"
    done
  }
  case "${SMOLLM2_RUN:-all}" in
    streams5|all) smollm2_run streams5 stream-s l 5 stream-s:5 true "max_users = 240" ;;&
    pfti5|all) smollm2_run pfti5 pft-i m 5 pft-i:5 false "max_samples = 6000" ;;&
    # All 47,749 samples, continuing from the streams5 run's merged checkpoint with a
    # second LoRA (about 3 hours on 2 threads; --resume picks up where it stopped).
    streams5-all|all) smollm2_run streams5-all stream-s l 5 stream-s:5 true "" \
      "$runs/smollm2-streams5/run/01-stream-s5" 3e-4 ;;
    # A second epoch over all samples from streams5-all's merged checkpoint: a third LoRA
    # (streams5-e2), or every weight (streams5-full, about twice LoRA's time per step).
    streams5-e2) smollm2_run streams5-e2 stream-s l 5 stream-s:5 true "" \
      "$runs/smollm2-streams5-all/run/01-stream-s5" 2e-4 ;;
    streams5-full) smollm2_run streams5-full stream-s l 5 stream-s:5 true "" \
      "$runs/smollm2-streams5-all/run/01-stream-s5" 3e-5 full ;;
    streams5|pfti5) ;;
    *) echo "SMOLLM2_RUN: streams5, pfti5, streams5-all, streams5-e2 or streams5-full" >&2
       exit 2 ;;
  esac
  exit 0
fi
if [ "$part" = serving ]; then
  out="$exp/serving"
  mkdir -p "$out"
  serving_users=()
  if [ -n "${SERVING_SAMPLES:-}" ]; then
    serving_users=(--max-samples "$SERVING_SAMPLES")
  fi
  # serve NAME RUN LAYOUT [eval options...]: one valid-split evaluation into $out.
  serve() {
    local name=$1 run=$2 layout=$3
    shift 3
    local ckpt
    ckpt="$(ls -d "$exp/$run"/run/01-* 2>/dev/null | grep -v resume | head -n 1 || true)"
    [ -n "$ckpt" ] || { echo "serving: $run is not trained yet" >&2; return; }
    "$bin" eval --checkpoint "$ckpt" --data "$data" --split valid --layout "$layout" \
      "${serving_users[@]}" --out "$out/$name.json" --name "$name" "$@" | tail -n 2 | head -n 1
  }
  {
    echo "| run | HR@10 | HR@20 | NDCG@10 | NDCG@20 | CR |"
    echo "|---|---|---|---|---|---|"
    serve sft-beam sft vanilla
    serve sft-exact sft vanilla --exact
    serve sft-q8_0 sft vanilla --quantize q8_0
    serve pfts5-tail pfts5 pft-s:5
    serve pfts5-stream pfts5 stream-s:5
    serve pfts20-tail pfts20 pft-s:20
    serve pfts20-stream pfts20 stream-s:20
    serve ppt-vanilla ppt vanilla
    for budget in 300 200 150 120 100; do
      serve "ppt-budget$budget" ppt "budget:$budget"
    done
  } > "$out/results-valid.md"
  cat "$out/results-valid.md"
  exit 0
fi
[ "$part" = eval ] || [ "$part" = all ] || exit 0

for split in valid test; do
  : > "$exp/results-$split.md"
  "$bin" eval --popularity --data "$data" --split "$split" --name popularity "${eval_users[@]}" \
    | tail -n 2 | head -n 1 \
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
