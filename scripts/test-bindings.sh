#!/usr/bin/env bash
# The Go and Java bindings (bindings/) against the C ABI, on a fresh Debian 12 machine too:
#  1. installs what the machine lacks with apt-get: Go, a JDK, Maven with the plugins, JNA
#     and JUnit 5 that the Java build takes from Debian's Maven repository, a C compiler;
#  2. builds and installs libpatchrec into .cache/prefix-bindings (scripts/install.sh),
#     makes a tiny checkpoint with `patchrec init` over examples/cpp/movies.tsv and a tiny
#     dataset with `patchrec synth` (for the training tests, as tests/c/test_train.c), and
#     builds bindings/reference/recommend.c, the C program whose rankings the tests must match;
#  3. Go: gofmt, go vet, go test -race (no network: the module has no dependencies);
#  4. Java: `mvn install` of bindings/java (compile, the JUnit 5 tests, the modular jar) into
#     a local repository under .cache/bindings, with no network: every plugin and
#     dependency comes from Debian's /usr/share/maven-repo (bindings/java/debian-settings.xml);
#     then the example, built as a project that depends on the installed jar, is run.
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
maven_repo=/usr/share/maven-repo
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
command -v mvn >/dev/null || missing+=(maven)
# What bindings/java/pom.xml pins, at the versions Debian 12 packages, and its packages.
for need in \
  org/apache/maven/plugins/maven-resources-plugin/3.3.0:libmaven-resources-plugin-java \
  org/apache/maven/plugins/maven-compiler-plugin/3.10.1:libmaven-compiler-plugin-java \
  org/apache/maven/plugins/maven-surefire-plugin/2.22.3:libsurefire-java \
  org/apache/maven/plugins/maven-jar-plugin/3.3.0:libmaven-jar-plugin-java \
  org/apache/maven/plugins/maven-install-plugin/3.1.0:libmaven-install-plugin-java \
  net/java/dev/jna/jna/5.13.0:libjna-java \
  org/junit/jupiter/junit-jupiter-engine/5.9.2:junit5; do
  [ -d "$maven_repo/${need%%:*}" ] || missing+=("${need##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
go version
javac -version
mvn --batch-mode --version

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
# The jar's version is the crate's, in the binding's pom.xml and in the example's dependency.
crate_version="$(cargo pkgid)"
crate_version="${crate_version##*[#@]}"
python3 - "$crate_version" <<'PY'
import sys
import xml.etree.ElementTree as ET
ns = {"m": "http://maven.apache.org/POM/4.0.0"}
want = sys.argv[1]
found = {
    "bindings/java/pom.xml": ET.parse("bindings/java/pom.xml").getroot().findtext("m:version", namespaces=ns),
    "bindings/java/example/pom.xml": ET.parse("bindings/java/example/pom.xml").getroot().findtext(
        "m:dependencies/m:dependency[m:artifactId='patchrec']/m:version", namespaces=ns),
}
for path, version in found.items():
    if version != want:
        sys.exit(f"{path}: version {version}, but the crate is {want}")
PY
mvn_run=(mvn --batch-mode --no-transfer-progress -Dstyle.color=never
  -s "$root/bindings/java/debian-settings.xml" -Dmaven.repo.local="$work/m2")
rm -rf bindings/java/target bindings/java/example/target "$work/java"
"${mvn_run[@]}" -f bindings/java/pom.xml -Djna.library.path="$prefix/lib" install | tee "$work/java-test.log"
jar="bindings/java/target/patchrec-$crate_version.jar"
# A modular jar: on the module path it is io.github.patchrec at the crate's version, and
# exports the API package.
module="$(jar --describe-module --file "$jar")"
grep -q "^io\.github\.patchrec@$crate_version " <<<"$module" && grep -qx 'exports io\.github\.patchrec' <<<"$module" ||
  { echo "$jar is not the module io.github.patchrec@$crate_version exporting its package:" >&2; echo "$module" >&2; exit 1; }
"${mvn_run[@]}" -f bindings/java/example/pom.xml compile
javac --release 17 -Xlint:all -Werror -encoding UTF-8 -d "$work/java/programs" -cp "$jar" bindings/java/bench/Latency.java
java_run=(java -Djna.library.path="$prefix/lib")
# Surefire's summary of the whole run: its last "Tests run:" line.
java_tests="$(grep -E '^\[[A-Z]+\] Tests run: ' "$work/java-test.log" | tail -1)"
echo "Java: ${java_tests#*] }"
example_output="$("${java_run[@]}" -cp "$java_lib/jna.jar:$jar:bindings/java/example/target/classes" Example "$checkpoint")"
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
