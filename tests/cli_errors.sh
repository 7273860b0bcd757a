#!/usr/bin/env bash
# Bad input to `accord run`: each case must print one clear line naming the
# problem and exit with the documented non-zero status, without starting a
# guest.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash

ACCORD=${ACCORD:-build/accord}
test_tmp

kernel=$(tests/stock-kernel.sh)

# expect NAME STATUS PATTERN -- COMMAND...: exit status and one stderr line
expect() {
	local name=$1 want=$2 pattern=$3
	shift 4
	local err rc
	err=$(timeout 30 "$@" </dev/null 2>&1 >/dev/null)
	rc=$?
	local lines
	lines=$(printf '%s\n' "$err" | grep -c .)
	if [ "$rc" -ne "$want" ]; then
		tap_not_ok "$name" "exit status $rc, expected $want; stderr: $err"
	elif ! printf '%s\n' "$err" | grep -qE -- "$pattern"; then
		tap_not_ok "$name" "stderr does not match /$pattern/: $err"
	elif [ "$lines" -ne 1 ]; then
		tap_not_ok "$name" "expected one line on stderr, got $lines: $err"
	else
		tap_ok "$name"
	fi
}

expect "missing kernel file" 3 "kernel $tmp/nope: No such file or directory" -- \
	"$ACCORD" run --kernel "$tmp/nope" --accel emu
head -c 100000 /dev/urandom >"$tmp/random.bin"
expect "non-kernel file" 3 "kernel $tmp/random.bin: " -- \
	"$ACCORD" run --kernel "$tmp/random.bin" --accel emu
: >"$tmp/empty"
expect "empty kernel file" 3 "kernel $tmp/empty: " -- \
	"$ACCORD" run --kernel "$tmp/empty" --accel emu
expect "no --kernel" 1 "run needs --kernel" -- "$ACCORD" run --accel emu
expect "bad --memory" 1 "--memory 'lots'" -- "$ACCORD" run --kernel x --memory lots --accel emu
expect "bad --memory suffix" 1 "--memory '512Q'" -- "$ACCORD" run --kernel x --memory 512Q --accel emu
expect "too little --memory" 1 "at least 16M" -- "$ACCORD" run --kernel x --memory 1M --accel emu
expect "bad --cpus" 1 "--cpus '0'" -- "$ACCORD" run --kernel x --cpus 0 --accel emu
expect "bad --accel" 1 "--accel 'warp'" -- "$ACCORD" run --kernel x --accel warp
expect "unknown command" 1 "unknown command 'fly'" -- "$ACCORD" fly
expect "too many --cpus" 1 "--cpus '65'" -- "$ACCORD" run --kernel x --cpus 65 --accel emu
expect "bad --sandbox" 1 "--sandbox 'maybe': expected on or off" -- \
	"$ACCORD" run --kernel x --sandbox maybe --accel emu
# guest RAM the host cannot back: more than its physical RAM, or beyond
# the address-space limit
host_gib=$(awk '/^MemTotal:/ { print int($2 / 1048576) + 1 }' /proc/meminfo)
if [ "$((host_gib * 2))" -le 1024 ]; then
	expect "--memory beyond the host's RAM" 1 "--memory $((host_gib * 2))G: more than this host's [0-9]+ MiB of RAM" -- \
		"$ACCORD" run --kernel x --memory "$((host_gib * 2))G" --accel emu
else
	tap_skip "--memory beyond the host's RAM" "the host has more RAM than --memory accepts"
fi
expect "--memory beyond ulimit -v" 1 "--memory 2G: the address-space limit \\(ulimit -v\\) is 1024 MiB" -- \
	bash -c 'ulimit -v 1048576 && exec "$0" run --kernel x --memory 2G --accel emu' "$ACCORD"

if [ -n "$kernel" ]; then
	size=$(stat -c %s "$kernel")
	for cut in 600 5000 $((size / 2)) $((size - 4096)); do
		head -c "$cut" "$kernel" >"$tmp/cut.bin"
		expect "truncated bzImage ($cut of $size bytes)" 3 "kernel $tmp/cut.bin: .*(truncated|short|ends)" -- \
			"$ACCORD" run --kernel "$tmp/cut.bin" --accel emu
	done
	head -c $((200 << 20)) /dev/zero >"$tmp/big.initrd"
	expect "initrd larger than guest memory" 3 "initrd $tmp/big.initrd: does not fit in guest memory" -- \
		"$ACCORD" run --kernel "$kernel" --initrd "$tmp/big.initrd" --memory 128M --accel emu
	expect "missing initrd file" 3 "initrd $tmp/none: No such file or directory" -- \
		"$ACCORD" run --kernel "$kernel" --initrd "$tmp/none" --accel emu
else
	tap_skip "truncated bzImage" "no stock kernel package in ../shared/debs"
	tap_skip "initrd larger than guest memory" "no stock kernel package in ../shared/debs"
	tap_skip "missing initrd file" "no stock kernel package in ../shared/debs"
fi
tap_summary
