#!/usr/bin/env bash
# The sanitized build (make asan: clang, -fsanitize=address,undefined, any
# undefined behaviour fatal): every C test program of TEST_BINS run under
# it, then accord itself on the guest test kernels and a Linux boot to a
# shell. A sanitizer report, a failing test or a bad exit status fails.
#
# LeakSanitizer's exit-time scan needs ptrace and prctl, which the seccomp
# sandbox refuses, so leaks are checked on runs with --sandbox off; the
# runs with the sandbox on (the default) check everything else. difftest
# runs a tenth of its cases (-n 2000 per family): the sanitizers are after
# memory errors in the engine, not the coverage of the opcode forms.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash
. tests/lib/console.bash

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
SAN_REPORT='ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: ASan'
ACCORD=build/asan/accord
IMG=build/guest-image
BOOT_TIMEOUT=${BOOT_TIMEOUT:-600}
test_tmp

if make -s -j2 asan >"$tmp/build.log" 2>&1; then
	tap_ok "make asan"
else
	tap_not_ok "make asan" "$(tail -n 20 "$tmp/build.log" | sed 's/^/# /')"
	tap_summary
	exit 1
fi

# san_check LABEL STATUS WANT LOG: the status and a log free of reports
san_check() {
	local label=$1 status=$2 want=$3 log=$4 summary
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if grep -qE "$SAN_REPORT" "$log"; then
		tap_not_ok "$label" "$(grep -E -A 12 "$SAN_REPORT" "$log" | head -n 30 | sed 's/^/# /')"
	elif [ "$status" -ne "$want" ]; then
		tap_not_ok "$label" "exit status $status, expected $want; $summary"
		grep -E '^not ok' "$log" | head -n 10 | sed 's/^/# /'
	else
		tap_ok "$label${summary:+ ($summary)}"
	fi
}

for bin in $(make -s --no-print-directory test-list | grep '^build/tests/'); do
	name=${bin#build/tests/}
	args=()
	[ "$name" = difftest ] && args=(-n 2000)
	status=0
	ASAN_OPTIONS=detect_leaks=1 timeout --kill-after=10 1800 "build/asan/tests/$name" "${args[@]}" \
		</dev/null >"$tmp/$name.log" 2>&1 || status=$?
	san_check "$name under ASan+UBSan" "$status" 0 "$tmp/$name.log"
done

# guest test kernels: 1 is the debug-exit status of a run where all passed
for k in build/guest/*.elf; do
	case "$k" in *.pvh.elf) continue ;; esac
	name=$(basename "$k" .elf)
	status=0
	# shellcheck disable=SC2046 # the family's options are words
	ASAN_OPTIONS=detect_leaks=0 timeout --kill-after=10 600 "$ACCORD" run --kernel "$k" \
		--debug-exit --accel emu $(guest_accord_opts "$name") </dev/null >"$tmp/$name.log" 2>&1 ||
		status=$?
	san_check "accord (sandbox on) runs guest/$name under ASan+UBSan" "$status" 1 "$tmp/$name.log"
done
status=0
ASAN_OPTIONS=detect_leaks=1 timeout --kill-after=10 600 "$ACCORD" run --kernel build/guest/smoke.pvh.elf \
	--debug-exit --accel emu --sandbox off </dev/null >"$tmp/pvh.log" 2>&1 || status=$?
san_check "accord (sandbox off, leaks checked) runs guest/smoke through PVH" "$status" 1 "$tmp/pvh.log"

if [ ! -f "$IMG/vmlinuz" ]; then
	tools/mkguest >/dev/null 2>&1 || true
fi
if [ -f "$IMG/vmlinuz" ]; then
	log=$tmp/linux.log
	export ASAN_OPTIONS=detect_leaks=0
	console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
		--cmdline "console=ttyS0 panic=-1" --memory 256M --cpus 2 --accel emu
	if console_wait "accord-guest: init ready" "$BOOT_TIMEOUT"; then
		console_send 'echo A$((1+1)) $(nproc) $(sha256sum /bin/busybox | cut -c1-8) A$((2+1))'
		shell=0
		console_wait "A2 2 [0-9a-f]{8} A3" 120 && shell=1
		console_send 'poweroff -f'
		console_finish 120
		st=$CONSOLE_STATUS
		[[ "$st" =~ ^[0-9]+$ ]] || st=124
		if [ "$shell" -eq 1 ]; then
			san_check "Linux (2 vCPUs) boots to a shell and powers off under ASan+UBSan" "$st" 0 "$log"
		else
			tap_not_ok "Linux under ASan+UBSan: the shell answers" "no 'A2 2 <sum> A3' line"
			console_tail 25
		fi
	else
		tap_not_ok "Linux boots to a shell under ASan+UBSan" "no 'init ready' within ${BOOT_TIMEOUT}s"
		console_tail 25
		console_finish 1
	fi
else
	tap_skip "Linux under ASan+UBSan" "no guest image (tools/mkguest failed: no kernel package)"
fi
tap_summary
