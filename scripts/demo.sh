#!/usr/bin/env bash
# End to end on a real model: SmolLM2-135M-Instruct (scripts/fetch-smollm2.sh) converted
# into a checkpoint, libpatchrec installed into .cache/prefix, and the CMake example
# (examples/cpp) built against the installed package and run on examples/cpp/items.tsv.
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

gguf="$(scripts/fetch-smollm2.sh)"
cargo build --release
checkpoint=.cache/smollm2/ckpt
# `convert` writes the directory atomically, so a present patchrec.json means a full checkpoint.
if [ ! -f "$checkpoint/patchrec.json" ]; then
  target/release/patchrec convert --from-gguf "$gguf" --out "$checkpoint"
fi

scripts/install.sh .cache/prefix
cmake -S examples/cpp -B .cache/example-build -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$root/.cache/prefix"
cmake --build .cache/example-build
.cache/example-build/recommend "$checkpoint" examples/cpp/items.tsv
