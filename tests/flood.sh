#!/usr/bin/env bash
# A guest that floods its UART as fast as it can (guest/api/ticker.c with
# ticker.flood, a busy vCPU that never halts) must not starve the rest of
# the VMM: its output keeps reaching the console, the control API answers
# every request, and pause, resume and stop take effect. Counts, not times:
# each check compares what arrived before and after, with generous limits
# only as give-ups.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash
. tests/lib/api.bash

ACCORD=${ACCORD:-build/accord}
TICKER=build/api-guest/ticker.elf
pid=
cleanup() {
	[ -z "$pid" ] || kill -9 "$pid" 2>/dev/null
}
test_tmp cleanup
api_runtime_dir
name=flood-$$
sock=$SOCKDIR/$name.sock

# api METHOD PATH [curl args...]: the HTTP status on stdout, the body in $tmp/body
API_MAX_TIME=30
api() { api_request "$sock" "$@"; }

ticks() { grep -c '^tick ' "$tmp/out"; }

more_ticks_than() { [ "$(ticks)" -gt "$1" ]; }

if [ ! -f "$TICKER" ]; then
	tap_not_ok "the ticker guest is built" "$TICKER missing"
	tap_summary
	exit 1
fi

"$ACCORD" run --kernel "$TICKER" --cmdline ticker.flood --accel emu --name "$name" \
	</dev/null >"$tmp/out" 2>"$tmp/err" &
pid=$!
wait_for 30 test -S "$sock"
WHY="no socket $sock: $(head -c 200 "$tmp/err")"
result "the flooding VM's API socket appears"

wait_for 60 more_ticks_than 1000
n1=$(ticks)
wait_for 60 more_ticks_than "$n1"
n2=$(ticks)
WHY="$n1 then $n2 tick lines"
[ "$n1" -gt 1000 ] && [ "$n2" -gt "$n1" ]; result "the flood reaches the console and keeps flowing"

ok=0
for i in $(seq 20); do
	code=$(api GET /vm)
	[ "$code" = 200 ] && grep -q '"state":"running"' "$tmp/body" && ok=$((ok + 1))
done
WHY="$ok of 20 answered 200 running"
[ "$ok" -eq 20 ]; result "the API answers 20 of 20 requests during the flood"

code=$(api PUT /vm/actions -d '{"action": "pause"}')
p1=$(ticks)
sleep 1
p2=$(ticks)
api GET /vm >/dev/null
WHY="status $code, ticks $p1 then $p2, $(cat "$tmp/body")"
[ "${code:0:1}" = 2 ] && [ "$p1" = "$p2" ] && grep -q '"state":"paused"' "$tmp/body"
result "pause stops the flooding guest"

code=$(api PUT /vm/actions -d '{"action": "resume"}')
wait_for 60 more_ticks_than "$p2"
WHY="status $code, ticks $p2 then $(ticks)"
[ "${code:0:1}" = 2 ] && [ "$(ticks)" -gt "$p2" ]; result "resume lets it flood again"

code=$(api PUT /vm/actions -d '{"action": "stop"}')
wait_for 60 eval '! kill -0 "$pid" 2>/dev/null'
wait "$pid"
rc=$?
pid=
WHY="status $code, accord exit status $rc: $(head -c 200 "$tmp/err")"
[ "${code:0:1}" = 2 ] && [ "$rc" -eq 0 ]; result "stop ends the flooding VM with status 0"

tap_summary
