#!/usr/bin/env bash
# Training throughput on a stage's own batches, ours against PyTorch: the first steps of
# CONFIG's first stage (a checkpoint start; e.g. SmolLM2 with stream-s:5), unpacked and
# packed, LoRA as configured and full fine-tuning (the same stage without [stage.lora]),
# with 1 and 2 threads. Ours is `patchrec bench-train --config`; PyTorch replays the same
# sequences and token trees (bench/peer_train_torch.py --shapes; transformers + peft in
# the peers' venv, see bench/train-speed.sh). Prints a Markdown table with each pair's
# ratio and the speed-up of packing; writes every run's JSON under OUT_DIR (default
# .cache/bench/train-speed-stage).
#
#   bench/train-speed-stage.sh CONFIG [STEPS]      (MODES="lora" or "full" for one half)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 1 ]; then
  echo "usage: $0 CONFIG [STEPS]" >&2
  exit 2
fi
config="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
steps="${2:-2}"
out="${OUT_DIR:-$root/.cache/bench/train-speed-stage}"
py="${PATCHREC_PEERS:-$HOME/.cache/patchrec/peers}/venv/bin/python"
bin="$root/target/release/patchrec"
[ -x "$py" ] || { echo "no peers' venv at $py: run bench/setup-peers.sh" >&2; exit 1; }
"$py" -c 'import peft' 2>/dev/null || { echo "peft is missing in $py's venv" >&2; exit 1; }
(cd "$root" && cargo build --release --quiet)
mkdir -p "$out"
checkpoint="$(sed -n 's/^checkpoint *= *"\(.*\)"/\1/p' "$config" | head -n 1)"
case "$checkpoint" in /*) ;; *) checkpoint="$(dirname "$config")/$checkpoint" ;; esac
rank="$(sed -n '/^\[stage.lora\]/,/^\[/s/^rank *= *\([0-9]*\)/\1/p' "$config" | head -n 1)"
[ -n "$rank" ] || { echo "$config: the first stage needs [stage.lora] with a rank" >&2; exit 1; }
# The same stage trained in full: the config without its [stage.lora] table, beside it
# (its relative paths stay valid), removed on exit.
full="$(dirname "$config")/.full-$$.toml"
trap 'rm -f "$full"' EXIT
sed '/^\[stage.lora\]/,/^\[/{/^\[stage.lora\]/d;/^[a-z_]* *=/d}' "$config" > "$full"

# Each timed run goes through bench/busy.py, which records the CPU other processes used
# meanwhile (in $out/load.jsonl); the table's last column is the larger of a pair's two.
busy() { python3 "$root/bench/busy.py" --log "$out/load.jsonl" --label "$@"; }
others() {
  python3 - "$out/load.jsonl" "$@" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
last = {r["label"]: r for r in rows}
worst = max(last[label]["others_cores"] for label in sys.argv[2:])
print(f"{worst:.2f} cores" + (" (under load)" if worst > 0.1 else ""))
PY
}

field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.2f" % r[int(sys.argv[2])][sys.argv[3]])' "$@"; }

echo "| mode | threads | passes | ours (samples/s) | PyTorch (samples/s) | ours / PyTorch | ours (positions/s) | others used |"
echo "|---|---|---|---|---|---|---|---|"
for mode in ${MODES:-lora full}; do
  for threads in 1 2; do
    tag="$mode-t$threads"
    cfg="$config" lora=(--lora-rank "$rank") label="LoRA r$rank"
    if [ "$mode" = full ]; then cfg="$full" lora=() label="full"; fi
    RAYON_NUM_THREADS=$threads busy "ours-$tag" "$bin" bench-train --config "$cfg" \
      --steps "$steps" --out "$out/ours-$tag.json" >/dev/null
    busy "torch-$tag" "$py" "$root/bench/peer_train_torch.py" --checkpoint "$checkpoint" \
      --threads "$threads" "${lora[@]}" --shapes "$out/ours-$tag.json" >"$out/torch-$tag.json"
    load="$(others "ours-$tag" "torch-$tag")"
    for i in 0 1; do
      ours="$(field "$out/ours-$tag.json" $i samples_per_second)"
      torch="$(field "$out/torch-$tag.json" $i samples_per_second)"
      passes="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[int(sys.argv[2])]["passes"])' "$out/ours-$tag.json" $i)"
      ratio="$(python3 -c "print('%.2fx' % ($ours / $torch))")"
      pps="$(field "$out/ours-$tag.json" $i positions_per_second)"
      echo "| $label | $threads | $passes | $ours | $torch | $ratio | $pps | $load |"
    done
  done
done
