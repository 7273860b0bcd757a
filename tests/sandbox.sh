#!/usr/bin/env bash
# The seccomp sandbox (src/vm/sandbox.c). While a guest runs, every thread
# of accord has a filter (/proc/PID/task/*/status: Seccomp: 2), and none
# with --sandbox off. A forbidden call (ACCORD_SANDBOX_SELFTEST=1 makes one
# right after the filter is in) ends accord with status 9 and one line
# naming the call. That the allow list is enough is shown by every other
# test that runs a guest: they run with the sandbox on.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash

ACCORD=${ACCORD:-build/accord}
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
}
test_tmp cleanup

tests/lib/tiny-multiboot.py "$tmp/idle.mb" 0 "idle guest ready"

# start_idle [ACCORD OPTIONS...]: a guest that prints its line and halts
start_idle() {
	"$ACCORD" run --kernel "$tmp/idle.mb" --accel emu "$@" >"$tmp/out" 2>"$tmp/err" </dev/null &
	pid=$!
	for _ in $(seq 600); do
		grep -q "idle guest ready" "$tmp/out" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# the Seccomp mode of each thread, one per line
seccomp_modes() {
	local s
	for s in /proc/"$pid"/task/*/status; do
		awk '/^Seccomp:/ { print $2 }' "$s"
	done
}

stop_idle() {
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=
}

# a read-only open passes the filter (libslirp reads /etc/resolv.conf late)
if ACCORD_SANDBOX_SELFTEST=open-read start_idle; then
	modes=$(seccomp_modes | sort | uniq -c | tr -s ' ' | tr '\n' ';')
	threads=$(seccomp_modes | wc -l)
	if [ "$(seccomp_modes | grep -vc '^2$')" -eq 0 ] && [ "$threads" -ge 3 ]; then
		tap_ok "sandbox on (default): all $threads threads run under a seccomp filter, read-only open allowed"
	else
		tap_not_ok "sandbox on: all threads under a filter" "Seccomp modes (count mode): $modes"
	fi
	stop_idle
else
	tap_not_ok "sandbox on: the guest runs" "$(head -n 3 "$tmp/err")"
	stop_idle
fi

# the self-test hook is part of the filter's installation: off, it is inert
if ACCORD_SANDBOX_SELFTEST=1 start_idle --sandbox off; then
	if [ "$(seccomp_modes | grep -vc '^0$')" -eq 0 ]; then
		tap_ok "--sandbox off: the guest runs and no thread has a filter"
	else
		tap_not_ok "--sandbox off: no thread has a filter" "$(seccomp_modes | tr '\n' ' ')"
	fi
	stop_idle
else
	tap_not_ok "--sandbox off: the guest runs" "$(head -n 3 "$tmp/err")"
	stop_idle
fi

# forbidden WHAT NR NAME: the self-test call ends accord with status 9 and
# one line naming it
forbidden() {
	local what=$1 nr=$2 call=$3 status=0 lines
	ACCORD_SANDBOX_SELFTEST=$what timeout 60 "$ACCORD" run --kernel "$tmp/idle.mb" --accel emu \
		>/dev/null 2>"$tmp/err" </dev/null || status=$?
	lines=$(grep -c . "$tmp/err")
	if [ "$status" -eq 9 ] && [ "$lines" -eq 1 ] &&
		grep -qE "^accord: sandbox: forbidden system call $nr \\($call\\)" "$tmp/err"; then
		tap_ok "$what: status 9 and one line naming $call"
	else
		tap_not_ok "$what: status 9 and one line naming $call" \
			"status $status, $lines lines: $(head -n 3 "$tmp/err")"
	fi
}
forbidden ptrace 101 ptrace
forbidden open-write 257 openat

tap_summary
