#!/usr/bin/env bash
# The Go and Java bindings (bindings/) against the C ABI, on a fresh Debian 12 machine too:
#  1. installs what the machine lacks with apt-get: Go, JNA, JUnit 5, a JDK, a C compiler;
#  2. builds and installs libpatchrec into .cache/prefix-bindings (scripts/install.sh),
#     makes a tiny checkpoint with `patchrec init` over examples/cpp/movies.tsv and a tiny
#     dataset with `patchrec synth` (for the training tests, as tests/c/test_train.c), and
#     builds bindings/reference/recommend.c, the C program whose rankings the tests must match;
#  3. Go: gofmt, go vet, go test -race (no network: the module has no dependencies);
#  4. Java: builds patchrec.jar, runs the JUnit 5 tests, and runs the example.
# Each README's code block must be its compiled example verbatim.
# With --latency [N], it then times one query N times (default 500) from C, Go and Java,
# with the same checkpoint, catalogue, history and options, and 100000 calls of the cheap
# patchrec_user_layout_stats, which shows a binding's own cost per call; it prints each
# median.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

latency_queries=0
layout_stats_calls=100000
case "${1:-}" in
  "") ;;
  --latency) latency_queries="${2:-500}" ;;
  *)
    echo "usage: $0 [--latency [REPETITIONS]]" >&2
    exit 2
    ;;
esac

step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

java_lib=/usr/share/java
prefix="$root/.cache/prefix-bindings"
work="$root/.cache/bindings"
checkpoint="$work/checkpoint"
dataset="$work/dataset"
reference="$work/recommend"
items="$root/examples/cpp/movies.tsv"
# The query the tests compare with C (queryHistory and queryK in
# bindings/go/patchrec/fixture_test.go, QUERY_HISTORY and QUERY_K in
# bindings/java/test/.../Fixture.java), timed by --latency.
query_history=1,5,9,13,21,34,41,55
query_k=10

step "system packages"
missing=()
command -v go >/dev/null || missing+=(golang-go)
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v cc >/dev/null || missing+=(gcc)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v python3 >/dev/null || missing+=(python3)
[ -f "$java_lib/jna.jar" ] || missing+=(libjna-java)
[ -f "$java_lib/junit-platform-console-standalone.jar" ] || missing+=(junit5)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
go version
javac -version

step "libpatchrec, a tiny checkpoint and dataset, the C reference"
scripts/install.sh "$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
rm -rf "$checkpoint" "$dataset"
mkdir -p "$work"
cargo run --release --quiet --bin patchrec -- init --items "$items" --out "$checkpoint" \
  --vocab-size 1024 --hidden 64 --layers 2
cargo run --release --quiet --bin patchrec -- synth --items "$items" --out "$dataset" --users 6 --len 8
# shellcheck disable=SC2046 # pkg-config prints several flags
cc -std=c99 -O2 -Wall -Wextra -Werror -pedantic $(pkg-config --cflags patchrec) \
  bindings/reference/recommend.c -o "$reference" $(pkg-config --libs patchrec) -Wl,-rpath,"$prefix/lib"
export PATCHREC_TEST_CHECKPOINT="$checkpoint" PATCHREC_TEST_DATASET="$dataset" PATCHREC_TEST_C_REFERENCE="$reference"

# Fails unless the first fenced code block of README after the line HEADING is SOURCE
# verbatim (the top README and the bindings' READMEs show the compiled examples).
readme_shows() {
  python3 - "$1" "$2" "$3" <<'PY'
import re, sys
path, heading, source_path = sys.argv[1:]
readme = open(path, encoding="utf-8").read()
source = open(source_path, encoding="utf-8").read()
at = readme.find("\n" + heading + "\n")
block = re.search(r"^```\w*\n(.*?)^```", readme[at:], re.S | re.M) if at >= 0 else None
if block is None or block.group(1) != source:
    sys.exit(f"{path}: the first code block under {heading!r} is not {source_path} verbatim")
PY
}

step "Go"
export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-mod=mod
for readme in README.md bindings/go/README.md; do
  readme_shows "$readme" "## Use from Go" bindings/go/patchrec/example_test.go
done
(
  # The module's root; its package is bindings/go/patchrec.
  cd bindings/go
  unformatted="$(gofmt -l .)"
  if [ -n "$unformatted" ]; then
    echo "gofmt would change: $unformatted" >&2
    exit 1
  fi
  go vet ./...
  go test -race -count=1 -v ./... | tee "$work/go-test.log" | grep -E '^(--- |ok|FAIL|PASS)'
)
echo "Go: $(grep -c '^--- PASS' "$work/go-test.log") passed, $(grep -c '^--- FAIL' "$work/go-test.log" || true) failed"

step "Java"
for readme in README.md bindings/java/README.md; do
  readme_shows "$readme" "## Use from Java" bindings/java/example/Example.java
done
bindings/java/build.sh "$work/java"
jar="$work/java/patchrec.jar"
rm -rf "$work/java/test-classes" "$work/java/programs"
javac --release 17 -Xlint:all -Werror -encoding UTF-8 -d "$work/java/test-classes" \
  -cp "$java_lib/jna.jar:$jar:$java_lib/junit-jupiter-api.jar:$java_lib/apiguardian-api.jar:$java_lib/opentest4j.jar" \
  $(find bindings/java/test -name '*.java')
javac --release 17 -Xlint:all -Werror -encoding UTF-8 -d "$work/java/programs" -cp "$jar" \
  bindings/java/example/Example.java bindings/java/bench/Latency.java
java_run=(java -Djna.library.path="$prefix/lib")
(
  # The tests find movies.tsv and patchrec.h relative to bindings/java.
  cd bindings/java
  "${java_run[@]}" -jar "$java_lib/junit-platform-console-standalone.jar" --disable-banner --disable-ansi-colors \
    --fail-if-no-tests --details=tree --class-path "$java_lib/jna.jar:$jar:$work/java/test-classes" \
    --select-package io.github.patchrec
)
example_output="$("${java_run[@]}" -cp "$java_lib/jna.jar:$jar:$work/java/programs" Example "$checkpoint")"
echo "$example_output"
# With Toy Story and Heat seen and excluded, the top 2 of 4 are the other two, in some order.
grep -q 'Fargo (1996)' <<<"$example_output" && grep -q 'Amélie (2001)' <<<"$example_output" ||
  { echo "the Java example did not recommend the two unseen films" >&2; exit 1; }

# The median-ns/op that Go benchmark $1 reports when run $2 times.
go_median() {
  (cd bindings/go && go test -run '^$' -bench "^$1\$" -benchtime "$2x" ./patchrec) |
    awk '{ for (i = 2; i <= NF; i++) if ($i == "median-ns/op") print $(i - 1) + 0 }'
}

if [ "$latency_queries" -gt 0 ]; then
  step "latency: medians per call (history $query_history, k $query_k)"
  "$reference" "$checkpoint" "$items" "$query_history" "$query_k" "$latency_queries" "$layout_stats_calls" >/dev/null
  echo "Go: recommend median $(go_median BenchmarkRecommend "$latency_queries") ns ($latency_queries calls)," \
    "layout stats median $(go_median BenchmarkLayoutStats "$layout_stats_calls") ns ($layout_stats_calls calls)"
  "${java_run[@]}" -cp "$java_lib/jna.jar:$jar:$work/java/programs" Latency \
    "$checkpoint" "$items" "$query_history" "$query_k" "$latency_queries" "$layout_stats_calls"
fi

step "done"
