#!/usr/bin/env bash
# Fails (exit 1) when a tracked file dates or justifies something by anything other than
# the product itself: every figure is dated by its commit and machine, and every reason
# names what the code does.
#
# "Session" is also a domain word (session patches, stream-aligned sessions, a session
# gap), so only the work-log forms are searched for: the word followed by a number, or
# qualified as this, next, previous, earlier, later or last. The patterns spell their
# words with a bracket ([s]ession), so this script does not match itself.
set -euo pipefail
cd "$(dirname "$0")/.."

log='[s]essions? [0-9]+|(this|next|previous|earlier|later|last) [s]essions?\b'
log+='|\b(the|this|that|serving|speed|training) [i]ssue\b|[i]ssue'"'"'s|\bthe [p]lanner\b'
log+='|\b[i]ssue #?[0-9]+|\(#[0-9]+\)'

hits="$(git ls-files -z | xargs -0 grep -nIiE "$log" -- 2>/dev/null || true)"
if [ -n "$hits" ]; then
  echo "$hits"
  echo >&2
  echo "These lines speak of how the work was organised; date figures by commit and machine." >&2
  exit 1
fi
echo "wording: clean"
