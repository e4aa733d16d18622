#!/usr/bin/env bash
# Builds OUT/patchrec.jar from src/ with plain javac and jar (no build tool: the JDK and
# Debian's libjna-java are all it needs). At run time the JVM needs JNA on the class path
# and libpatchrec.so where JNA looks: -Djna.library.path=PREFIX/lib or LD_LIBRARY_PATH.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
jna="${JNA_JAR:-/usr/share/java/jna.jar}"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
rm -rf "$out/classes"
javac --release 17 -Xlint:all -Werror -encoding UTF-8 -cp "$jna" -d "$out/classes" \
  $(find "$here/src" -name '*.java' | sort)
jar --create --file "$out/patchrec.jar" -C "$out/classes" .
echo "$out/patchrec.jar"
