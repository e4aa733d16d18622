#!/usr/bin/env bash
# The C and C++ ABI tests (tests/c/test_abi.c, tests/cpp/test_abi.cpp, tests/c/test_train.c)
# under two memory checkers, on a fresh Debian 12 machine too:
#  1. installs what the machine lacks with apt-get: gcc, g++, valgrind, binutils, python3;
#  2. builds and installs libpatchrec into .cache/prefix-sanitize (scripts/install.sh), and
#     makes what tests/abi.rs gives the tests: a checkpoint by `patchrec init` over the
#     tests' catalogue (the smallest model that runs them, since valgrind is slow) and a
#     dataset by `patchrec synth`;
#  3. AddressSanitizer, LeakSanitizer and UBSan: each test compiled with
#     -fsanitize=address,undefined. Only the test is instrumented, not the Rust library,
#     but the library's allocations go through the malloc ASan interposes, so leaks of
#     objects it hands to C and frees given wrong pointers are still caught;
#  4. valgrind memcheck: each test built plainly, library included.
# A run fails on any reported error, any definitely or indirectly lost block, or a test
# that does not print "N passed, 0 failed". Exits 1 if any run failed; the last line is
# `sanitize: N passed, M failed`. Suppressions: scripts/valgrind.supp.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

prefix="$root/.cache/prefix-sanitize"
work="$root/.cache/sanitize"
checkpoint="$work/checkpoint"
dataset="$work/dataset"

step "system packages"
missing=()
command -v gcc >/dev/null || missing+=(gcc)
command -v g++ >/dev/null || missing+=(g++)
command -v valgrind >/dev/null || missing+=(valgrind)
command -v readelf >/dev/null || missing+=(binutils)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
valgrind --version

step "libpatchrec, a tiny checkpoint and dataset"
scripts/install.sh "$prefix"
cargo build --release --quiet --bin patchrec
target="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
patchrec="$target/release/patchrec"
version="$(sed -n 's/^Version: //p' "$prefix/lib/pkgconfig/patchrec.pc")"
rm -rf "$work"
mkdir -p "$work/bin"
# The catalogue the tests register (TITLES in tests/abi.rs); the tokenizer is trained on it.
printf '%s\n' "1	Toy Story (1995)" "2	Heat (1995)" "3	Fargo (1996)" "4	Amélie (2001)" \
  "5	The Matrix (1999)" "6	Alien (1979)" "7	Jurassic Park (1993)" "8	Groundhog Day (1993)" \
  >"$work/items.tsv"
"$patchrec" init --items "$work/items.tsv" --out "$checkpoint" \
  --vocab-size 300 --hidden 32 --layers 1 --heads 2 --kv-heads 1
"$patchrec" synth --items "$work/items.tsv" --out "$dataset" --users 6 --len 8 --seed 1

# The tests as tests/abi.rs builds them, with `$@` added, linked against the installed
# library with an rpath to it.
build() {
  local compiler="$1" standard="$2" source="$3" exe="$4"
  shift 4
  "$compiler" "$standard" -Wall -Werror -pedantic -g "$@" \
    -DPATCHREC_EXPECTED_VERSION="\"$version\"" -I "$prefix/include" "$source" -o "$exe" \
    -L "$prefix/lib" -lpatchrec -Wl,-rpath,"$prefix/lib"
}

# The command line of each test, by name.
args_of() {
  case "$1" in
    test_train) echo "$dataset $work/run-$2" ;;
    *) echo "$checkpoint" ;;
  esac
}

passed=0
failed=0
# Runs `$@` (a checker's command line ending in a test and its arguments) with its output
# in $work/NAME.log, and counts it as passed when it exits 0 and the test's summary says
# nothing failed; a failure prints the log.
check() {
  local name="$1"
  shift
  local log="$work/$name.log" start=$SECONDS
  if "$@" >"$log" 2>&1 && grep -q ' passed, 0 failed$' "$log"; then
    passed=$((passed + 1))
    echo "ok: $name ($((SECONDS - start)) s): $(grep ' passed, 0 failed$' "$log" | tail -n 1)"
  else
    failed=$((failed + 1))
    echo "FAIL: $name ($((SECONDS - start)) s):"
    sed 's/^/  | /' "$log"
  fi
}

tests=(c:test_abi:tests/c/test_abi.c c++:test_abi_cpp:tests/cpp/test_abi.cpp c:test_train:tests/c/test_train.c)

step "AddressSanitizer, LeakSanitizer, UBSan"
# halt_on_error and -fno-sanitize-recover make every report a non-zero exit.
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
for test in "${tests[@]}"; do
  IFS=: read -r language name source <<<"$test"
  compiler=gcc standard=-std=c99
  [ "$language" = c++ ] && compiler=g++ standard=-std=c++17
  build "$compiler" "$standard" "$source" "$work/bin/$name-asan" \
    -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
  # shellcheck disable=SC2046 # the arguments are paths without spaces under .cache
  check "$name-asan" "$work/bin/$name-asan" $(args_of "$name" asan)
done
unset ASAN_OPTIONS UBSAN_OPTIONS

step "valgrind memcheck"
valgrind=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect
  --errors-for-leak-kinds=definite,indirect --error-exitcode=1
  --suppressions="$root/scripts/valgrind.supp")
for test in "${tests[@]}"; do
  IFS=: read -r language name source <<<"$test"
  compiler=gcc standard=-std=c99
  [ "$language" = c++ ] && compiler=g++ standard=-std=c++17
  build "$compiler" "$standard" "$source" "$work/bin/$name" -O1
  # shellcheck disable=SC2046
  check "$name-valgrind" "${valgrind[@]}" "$work/bin/$name" $(args_of "$name" valgrind)
done

echo "sanitize: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
