#!/usr/bin/env bash
# Fails (exit 1) when include/patchrec.h is not what cbindgen generates from src/ffi, i.e.
# the C ABI changed and the committed header was not regenerated. Uses the pinned cbindgen,
# installing it into .cache/tools when PATH has no cbindgen of that version (other
# versions format the header differently).
set -euo pipefail
cbindgen_version=0.29.4
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cbindgen=cbindgen
if [ "$(cbindgen --version 2>/dev/null)" != "cbindgen $cbindgen_version" ]; then
  cbindgen="$root/.cache/tools/bin/cbindgen"
  if [ "$("$cbindgen" --version 2>/dev/null)" != "cbindgen $cbindgen_version" ]; then
    cargo install cbindgen --version "$cbindgen_version" --locked --root "$root/.cache/tools"
  fi
fi

generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
"$cbindgen" --quiet --config cbindgen.toml --output "$generated" src/ffi/mod.rs
if ! diff -u include/patchrec.h "$generated"; then
  echo "include/patchrec.h is stale; regenerate it with" >&2
  echo "  cbindgen --config cbindgen.toml --output include/patchrec.h src/ffi/mod.rs" >&2
  exit 1
fi
echo "include/patchrec.h is up to date"
