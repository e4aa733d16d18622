#!/usr/bin/env bash
# Builds the release library and installs it under PREFIX:
#   lib/libpatchrec.so, lib/libpatchrec.a
#   include/patchrec.h, include/patchrec.hpp
#   lib/pkgconfig/patchrec.pc
#   lib/cmake/patchrec/patchrecConfig.cmake, patchrecConfigVersion.cmake
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 PREFIX" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$1"
prefix="$(cd "$1" && pwd)"
cd "$root"

cargo build --release --lib
target="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
pkgid="$(cargo pkgid)"
version="${pkgid##*[#@]}"

install -D -m 755 "$target/release/libpatchrec.so" "$prefix/lib/libpatchrec.so"
install -D -m 644 "$target/release/libpatchrec.a" "$prefix/lib/libpatchrec.a"
install -D -m 644 include/patchrec.h "$prefix/include/patchrec.h"
install -D -m 644 include/patchrec.hpp "$prefix/include/patchrec.hpp"
mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/patchrec"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" patchrec.pc.in >"$prefix/lib/pkgconfig/patchrec.pc"
install -m 644 cmake/patchrecConfig.cmake "$prefix/lib/cmake/patchrec/patchrecConfig.cmake"
sed -e "s|@PATCHREC_VERSION@|$version|" cmake/patchrecConfigVersion.cmake.in \
  >"$prefix/lib/cmake/patchrec/patchrecConfigVersion.cmake"
echo "installed libpatchrec $version into $prefix"
