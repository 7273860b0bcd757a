#!/usr/bin/env bash
# Guest output and a terminal that stops reading: a tiny Multiboot kernel
# (tests/lib/tiny-multiboot.py) prints 400,000 bytes on COM1, then a panic
# line, and halts with interrupts off. With accord's stdout on a pipe that
# nobody reads, the vCPU must not stall on the UART: the panic is seen and
# accord ends with status 2 and the panic line on stderr. With a stdout that
# keeps up, every byte arrives.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash

ACCORD=${ACCORD:-build/accord}
COUNT=400000
holder=
cleanup() {
	[ -n "$holder" ] && kill "$holder" 2>/dev/null
}
test_tmp cleanup

tests/lib/tiny-multiboot.py "$tmp/chatty.mb" "$COUNT" "Kernel panic - not syncing: console stall test"

# a pipe that nobody reads: opened read-write by a holder that sleeps
mkfifo "$tmp/fifo"
sleep 600 <>"$tmp/fifo" &
holder=$!
status=0
timeout --kill-after=5 120 "$ACCORD" run --kernel "$tmp/chatty.mb" --accel emu \
	>"$tmp/fifo" 2>"$tmp/err" </dev/null || status=$?
if [ "$status" -eq 2 ] && grep -q "guest panic: Kernel panic - not syncing: console stall test" "$tmp/err"; then
	tap_ok "stdout nobody reads: the panic after $COUNT bytes ends accord with status 2"
else
	tap_not_ok "stdout nobody reads: the panic ends accord with status 2" \
		"status $status (124: timed out, the vCPU stalled on the terminal); stderr: $(head -n 3 "$tmp/err")"
fi

status=0
timeout --kill-after=5 120 "$ACCORD" run --kernel "$tmp/chatty.mb" --accel emu \
	>"$tmp/out" 2>"$tmp/err" </dev/null || status=$?
xs=$(tr -cd x <"$tmp/out" | wc -c)
if [ "$status" -eq 2 ] && [ "$xs" -eq "$COUNT" ] && grep -q "not syncing: console stall test" "$tmp/out"; then
	tap_ok "stdout that keeps up: all $COUNT bytes and the panic line arrive"
else
	tap_not_ok "stdout that keeps up: all bytes arrive" "status $status, $xs of $COUNT bytes"
fi
tap_summary
