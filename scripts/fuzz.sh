#!/usr/bin/env bash
# Fuzzes the library's readers of untrusted files (the cargo-fuzz targets in fuzz/, see
# docs/RELIABILITY.md "Fuzzing") for SECONDS each (default 45), one target at a time,
# under libFuzzer's limits: 2 GiB of memory in all and per allocation, 10 s per input.
# Each run starts from a copy of the committed seeds in fuzz/corpus/<target>, so the
# repository's corpus is not modified; a crashing input is kept in fuzz/artifacts/<target>/.
# Installs the nightly toolchain (for this script only) and cargo-fuzz when missing.
# Exits non-zero if any target crashed, leaked past a limit or hung.
#
#   ./scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

seconds=${1:-45}
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
targets=(gguf safetensors config_json patchrec_json items_tsv train_toml)
limits=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  nice -n 19 cargo install cargo-fuzz --locked
fi

start=$(date +%s)
nice -n 19 cargo +nightly fuzz build
echo "fuzz: targets built in $(($(date +%s) - start)) s"

# Scratch space: the corpus copies, and the folder the gguf and safetensors targets write
# each input to (RAM under /dev/shm where there is one).
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  work=$(mktemp -d -p /dev/shm patchrec-fuzz.XXXXXX)
else
  work=$(mktemp -d)
fi
trap 'rm -rf "$work"' EXIT
export PATCHREC_FUZZ_DIR="$work/scratch"
mkdir -p "$PATCHREC_FUZZ_DIR"

passed=0
failed=0
for t in "${targets[@]}"; do
  cp -r "fuzz/corpus/$t" "$work/corpus-$t"
  mkdir -p "fuzz/artifacts/$t"
  log="$work/$t.log"
  if nice -n 19 cargo +nightly fuzz run "$t" "$work/corpus-$t" -- \
    "${limits[@]}" -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    corpus=$(find "$work/corpus-$t" -type f | wc -l)
    echo "fuzz: $t: ${runs:-?} executions in $seconds s, corpus $corpus inputs, 0 crashes"
    passed=$((passed + 1))
  else
    # The cause (a panic's message, a sanitizer's or libFuzzer's report) and the saved
    # input, not the whole log (it ends with the input as a byte list).
    echo "fuzz: $t FAILED:"
    grep -E -A3 'panicked at|==ERROR|ERROR: libFuzzer|SUMMARY:' "$log" | head -n 40 || true
    grep -E 'Test unit written to|^Error:' "$log" || true
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
