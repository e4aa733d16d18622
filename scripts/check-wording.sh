#!/usr/bin/env bash
# Fails (exit 1) when a tracked file speaks of how the work was organised rather than of the
# product: "session 9", "this session", "the issue's targets", "the planner". Figures are
# dated by commit and machine instead.
#
# "Session" is also a domain word (session patches, stream-aligned sessions, a session
# gap), so only the diary forms are searched for: a session with a number, or a session
# that is "this", "next", "previous", "earlier" or "later". Domain examples that number
# session patches are listed, as fixed strings, in scripts/wording-allowed.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

diary='sessions? [0-9]+|(this|next|previous|earlier|later|last) sessions?\b'
diary+='|\b(the|this|that|serving|speed|training) issue\b|issue'"'"'s|\bthe planner\b'
diary+='|\bissue #?[0-9]+|\(#[0-9]+\)'

hits="$(git ls-files -z -- . ':!scripts/check-wording.sh' ':!scripts/wording-allowed.txt' \
  | xargs -0 grep -nIiE "$diary" -- 2>/dev/null \
  | grep -vFf scripts/wording-allowed.txt || true)"
if [ -n "$hits" ]; then
  echo "$hits"
  echo >&2
  echo "These lines speak of how the work was organised; date figures by commit and machine." >&2
  echo "A domain use of \"session N\" belongs in scripts/wording-allowed.txt." >&2
  exit 1
fi
echo "wording: no diary references"
