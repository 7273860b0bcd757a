# Sourced by tests/qemu_guest.sh and tests/accord_guest.sh: runs a guest test
# kernel (guest/) under some VMM and turns its serial protocol into TAP.
#
# The kernel prints "PASS name", "FAIL name: reason", "SKIP name: reason",
# finally "DONE passed=N failed=N skipped=N", and writes 0 (all passed) or 1
# to the debug-exit port, which ends the VMM with status 1 or 3.
#
# KNOWN_DEVIATIONS maps "kernel/test" to a reason: a FAIL of that test is
# reported as "not ok ... # TODO reason" (a documented defect of the VMM
# under test, whose expectation the SDM backs), and does not count as a
# failure. Every other FAIL, a missing DONE line, counts that disagree, an
# unexpected exit status or a timeout is a failure.

declare -gA KNOWN_DEVIATIONS=()
TAP_N=0
TAP_PASSED=0
TAP_FAILED=0
TAP_SKIPPED=0

tap_ok() {
	TAP_N=$((TAP_N + 1))
	TAP_PASSED=$((TAP_PASSED + 1))
	echo "ok $TAP_N - $1"
}

tap_not_ok() {
	TAP_N=$((TAP_N + 1))
	TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $1"
	[ -z "${2:-}" ] || echo "# $2"
}

tap_skip() {
	TAP_N=$((TAP_N + 1))
	TAP_SKIPPED=$((TAP_SKIPPED + 1))
	echo "ok $TAP_N - $1 # SKIP $2"
}

tap_todo() {
	TAP_N=$((TAP_N + 1))
	TAP_SKIPPED=$((TAP_SKIPPED + 1))
	echo "not ok $TAP_N - $1 # TODO $2"
}

# the names of the guest test kernels (guest/tests/NAME.c)
guest_kernel_names() {
	local f
	for f in guest/tests/*.c; do
		[ -e "$f" ] || continue
		f=${f##*/}
		echo "${f%.c}"
	done
}

# the options a guest test family needs from `accord run` (the machine it
# tests); src/certify/certify.c's family_options says the same
guest_accord_opts() {
	case $1 in
	hyperv) echo "--personality hyperv" ;;
	esac
}

# guest_tap_run LABEL KERNEL TIMEOUT COMMAND...
# LABEL prefixes the test names (e.g. smoke.multiboot), KERNEL keys
# KNOWN_DEVIATIONS.
guest_tap_run() {
	local label=$1 kernel=$2 limit=$3
	shift 3
	local out err status=0 line name reason done_line=""
	local p=0 f=0 s=0 known_f=0
	out=$(mktemp)
	err=$(mktemp)

	timeout --kill-after=5 "$limit" "$@" </dev/null >"$out" 2>"$err" ||
		status=$?

	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		case "$line" in
		"PASS "*)
			p=$((p + 1))
			tap_ok "$label/${line#PASS }"
			;;
		"FAIL "*)
			f=$((f + 1))
			name=${line#FAIL }
			name=${name%%:*}
			reason=${line#FAIL "$name"}
			reason=${reason#: }
			if [ -n "${KNOWN_DEVIATIONS[$kernel/$name]:-}" ]; then
				known_f=$((known_f + 1))
				tap_todo "$label/$name" \
					"${KNOWN_DEVIATIONS[$kernel/$name]} (got: $reason)"
			else
				tap_not_ok "$label/$name" "$reason"
			fi
			;;
		"SKIP "*)
			s=$((s + 1))
			name=${line#SKIP }
			name=${name%%:*}
			reason=${line#SKIP "$name"}
			tap_skip "$label/$name" "${reason#: }"
			;;
		"DONE "*)
			done_line=$line
			;;
		*)
			[ -z "$line" ] || echo "# ${line#\# }"
			;;
		esac
	done <"$out"

	local want_status=1 problem=""
	[ "$f" -eq 0 ] || want_status=3
	if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
		problem="timed out after ${limit}s"
	elif [ -z "$done_line" ]; then
		problem="no DONE line (exit status $status)"
	elif [ "$done_line" != "DONE passed=$p failed=$f skipped=$s" ]; then
		problem="'$done_line' disagrees with the lines seen ($p/$f/$s)"
	elif [ "$status" -ne "$want_status" ]; then
		problem="exit status $status, expected $want_status"
	fi
	if [ -n "$problem" ]; then
		tap_not_ok "$label: clean run" "$problem"
		sed 's/^/# stderr: /' "$err" | head -n 20
	else
		tap_ok "$label: clean run"
	fi
	rm -f "$out" "$err"
}

tap_summary() {
	echo "1..$TAP_N"
	echo "$TAP_PASSED passed, $TAP_FAILED failed, $TAP_SKIPPED skipped"
	[ "$TAP_FAILED" -eq 0 ]
}
