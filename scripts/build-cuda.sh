#!/usr/bin/env bash
# Builds the `cuda` feature on a machine with no GPU and no system CUDA (docs/GPU.md):
#
#   scripts/build-cuda.sh                # the library and the command line
#   scripts/build-cuda.sh --tests [NAME...]
#                                        # the command line and the test binaries (all, or
#                                        # tests/NAME.rs), listed in $target/test-binaries.txt
#
# - nvcc 13.0 comes from PyPI's CUDA wheels into a venv under ~/.cache/patchrec/cuda. Pinned to
#   13.0.x: the GPU machines' driver (580, CUDA 13.0) cannot load PTX made by nvcc 13.1+.
# - candle-core is built from a copy whose cudarc loads the CUDA libraries at run time
#   (`dynamic-loading`) instead of linking them (`dynamic-linking`), and cudart is linked
#   statically. The binaries then need no CUDA library to start: on a machine without a
#   driver they run on the CPU, and `cuda:N` fails with an error that names the missing
#   library. The copy lives under $target/vendor and patches only this build; the CPU build
#   and Cargo.lock are left as they were.
# - Output: $target/release, where target is ~/.cache/patchrec/cuda/target (or
#   $PATCHREC_CACHE/cuda/target): its own folder, so neither build invalidates the other,
#   and outside the clone, so that the next clone on the machine (CI) builds only what
#   changed. Printed as the last line. CUDA_COMPUTE_CAP defaults to 90 (H100/H200, sm_90a).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cache=${PATCHREC_CACHE:-$HOME/.cache/patchrec}/cuda
venv=$cache/venv
wheels="nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96"
if [ ! -f "$venv/.done" ]; then
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $wheels
  touch "$venv/.done"
fi
cu=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
[ -x "$cu/bin/nvcc" ] || { echo "build-cuda: no nvcc at $cu/bin/nvcc" >&2; exit 1; }
export PATH=$cu/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000

target=$cache/target
mkdir -p "$target"

# The candle-core copy: the crate as Cargo.lock pins it, with one feature changed.
registry_copy=$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "candle-core":
        print(p["manifest_path"].rsplit("/", 1)[0]); break')
[ -d "$registry_copy" ] || { echo "build-cuda: candle-core not found in the cargo registry" >&2; exit 1; }
vendor=$target/vendor/candle-core
if [ ! -f "$vendor/.from" ] || [ "$(cat "$vendor/.from")" != "$registry_copy" ]; then
  rm -rf "$vendor"
  mkdir -p "$(dirname "$vendor")"
  cp -r "$registry_copy" "$vendor"
  sed -i 's/"dynamic-linking",/"dynamic-loading",/' "$vendor/Cargo.toml"
  grep -q '"dynamic-loading",' "$vendor/Cargo.toml" \
    || { echo "build-cuda: candle-core's cudarc features changed; see this script" >&2; exit 1; }
  echo "$registry_copy" > "$vendor/.from"
fi

# candle-kernels asks for `-lcudart`: offer only the static archive, so nothing is NEEDED.
mkdir -p "$target/cudart-static"
cp -u "$cu/lib/libcudart_static.a" "$target/cudart-static/libcudart.a"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$target/cudart-static"
export CARGO_TARGET_DIR=$target

# The patch rewrites Cargo.lock's candle-core entry; the committed lock file is put back.
cp Cargo.lock "$target/Cargo.lock.committed"
trap 'cp "$target/Cargo.lock.committed" "$root/Cargo.lock"' EXIT
patch=(--config "patch.crates-io.candle-core.path=\"$vendor\"")

if [ "${1:-}" != "--tests" ]; then
  cargo build --release "${patch[@]}" --features cuda -p patchrec -p patchrec-cli >&2
  echo "$target"
  exit
fi
# The test binaries (for running here on the CPU and on a GPU machine, scripts/gpu-check.sh)
# and the command line, which the tests of cli/ build, in one invocation: a separate
# `cargo build` unifies other features and builds candle's kernels a second time.
shift
targets=(--tests)
if [ $# -gt 0 ]; then targets=(--test cli); fi
for name in "$@"; do targets+=(--test "$name"); done
build=(cargo test --release "${patch[@]}" --features cuda -p patchrec -p patchrec-cli --no-run "${targets[@]}")
"${build[@]}" >&2
"${build[@]}" --message-format json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' > "$target/test-binaries.txt"
echo "build-cuda: $(wc -l < "$target/test-binaries.txt") test binaries in $target/test-binaries.txt" >&2
echo "$target"
