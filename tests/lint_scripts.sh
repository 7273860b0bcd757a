#!/usr/bin/env bash
# The test scripts' own pitfalls, checked over tests/*.sh and tests/lib:
# - `COND; result NAME "$(...)"`: bash sets $? to the command
#   substitution's status before result runs, so the line would report
#   the substitution's status (nearly always 0), not COND's: such calls
#   must pass COND's status first (`result $? NAME WHY`, tests/lib/api.bash).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash

for f in tests/*.sh tests/lib/*.bash; do
	bad=$(python3 - "$f" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().split('\n')
for i, l in enumerate(lines):
    m = re.match(r'^\s*(?:.*(?:&&|\|\||;|then)\s+)?result (.*)$', l)
    if not m or l.lstrip().startswith('#') or 'result()' in l:
        continue
    text, j = m.group(1), i
    while lines[j].endswith('\\') and j + 1 < len(lines):
        j += 1
        text += lines[j]
    if not text.startswith('$? ') and re.search(r'\$\((?!\()|`', text):
        print(f'{i + 1}: {l.strip()[:100]}')
PY
)
	[ -z "$bad" ]
	if [ $? -eq 0 ]; then
		tap_ok "$f: every result with a command substitution is given its status"
	else
		tap_not_ok "$f: result with a command substitution, not given its status (\$? first)" "$bad"
	fi
done
tap_summary
