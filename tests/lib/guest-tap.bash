# Sourced by tests/qemu_guest.sh and tests/accord_guest.sh: runs a guest test
# kernel (guest/) under some VMM and turns its serial protocol into TAP
# (guest_tap_run; guest_tap_run_all for all of them).
#
# The kernel prints "PASS name", "FAIL name: reason", "SKIP name: reason",
# finally "DONE passed=N failed=N skipped=N", and writes 0 (all passed) or 1
# to the debug-exit port, which ends the VMM with status 1 or 3.
#
# KNOWN_DEVIATIONS maps "kernel/test" to a reason: a FAIL of that test is
# reported as "not ok ... # TODO reason" (a documented defect of the VMM
# under test, whose expectation the SDM backs), and does not count as a
# failure. load_known_deviations fills it from guest/known-deviations, the
# list that `accord certify` reads too. Every other FAIL, a missing DONE line, counts that disagree, an
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

# load_known_deviations TARGET [CONDITIONS]: the entries of
# guest/known-deviations whose target glob matches TARGET (accord:emu,
# qemu:tcg, ...) and whose conditions are all among CONDITIONS (what the
# caller knows of its machine: "kvm=none irqchip=user", "kvm=emulated
# irqchip=split"; guest/known-deviations says what they mean)
load_known_deviations() {
	local target=$1 have=" ${2:-} " glob test reason cond c ok
	while IFS=$'\t' read -r glob test reason; do
		case "$glob" in '' | '#'*) continue ;; esac
		read -r glob cond <<<"$glob"
		ok=1
		for c in $cond; do
			[[ $have == *" $c "* ]] || ok=0
		done
		# shellcheck disable=SC2053 # the first field is a glob
		if [ "$ok" -eq 1 ] && [[ $target == $glob ]]; then
			KNOWN_DEVIATIONS[$test]=$reason
		fi
	done <guest/known-deviations
}

# kvm_kind ACCORD: what /dev/kvm is for a known deviation's kvm= condition,
# as accord's --accel auto probe says: hardware, emulated, or none
kvm_kind() {
	local err
	err=$("$1" run --accel auto --kernel /nonexistent 2>&1 </dev/null | grep -m1 '^accord: --accel auto: ')
	case "$err" in
	*"(an emulated KVM)"*) echo emulated ;;
	*"no usable /dev/kvm"*) echo none ;;
	*) echo hardware ;;
	esac
}

# kvm_irqchip ACCORD: the irqchip accord's kvm engine chooses by default,
# for a known deviation's irqchip= condition: split where the host's KVM can
kvm_irqchip() {
	if "$1" run --kernel /nonexistent --accel kvm --irqchip split 2>&1 </dev/null |
		grep -q '^accord: --irqchip split: '; then
		echo user
	else
		echo split
	fi
}

# guest_family_options NAME: the family's line of guest/families, without
# the name (empty for a family that needs the default machine)
guest_family_options() {
	local family rest
	while read -r family rest; do
		[ "$family" = "$1" ] && echo "$rest" && return
	done <guest/families
	true
}

# guest_vmm_args accord|qemu NAME DIR: sets GUEST_ARGS to the arguments that
# give family NAME the machine guest/families asks for; a disk image goes
# into DIR. The options are also the kernel's command line.
guest_vmm_args() {
	local vmm=$1 name=$2 dir=$3 opt opts
	opts=$(guest_family_options "$name")
	GUEST_ARGS=()
	for opt in $opts; do
		case "$opt" in
		cpus=*)
			if [ "$vmm" = accord ]; then
				GUEST_ARGS+=(--cpus "${opt#cpus=}")
			else
				GUEST_ARGS+=(-smp "${opt#cpus=}")
			fi
			;;
		disk=*)
			truncate -s "${opt#disk=}" "$dir/$name.disk.img"
			if [ "$vmm" = accord ]; then
				GUEST_ARGS+=(--disk "path=$dir/$name.disk.img")
			else
				GUEST_ARGS+=(-drive "file=$dir/$name.disk.img,if=none,id=disk0,format=raw"
					-device virtio-blk-pci,drive=disk0,disable-legacy=on)
			fi
			;;
		qemu-machine=*)
			[ "$vmm" = accord ] || GUEST_ARGS+=(-machine "${opt#qemu-machine=}")
			;;
		personality=*)
			# accord's; other VMMs run the family as it is
			[ "$vmm" != accord ] || GUEST_ARGS+=(--personality "${opt#personality=}")
			;;
		*)
			echo "# guest/families: $name: unknown option $opt" >&2
			return 1
			;;
		esac
	done
	if [ -n "$opts" ]; then
		if [ "$vmm" = accord ]; then
			GUEST_ARGS+=(--cmdline "$opts")
		else
			GUEST_ARGS+=(-append "$opts")
		fi
	fi
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

# guest_accord_opts NAME: the options of family NAME that only accord has
# (personality=, from guest/families), as `accord run` arguments
guest_accord_opts() {
	local opt
	for opt in $(guest_family_options "$1"); do
		case "$opt" in
		personality=*) echo "--personality ${opt#personality=}" ;;
		esac
	done
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

# guest_tap_run_all VMM DIR COMMAND...
# guest_tap_run for every guest test kernel, booted both as Multiboot
# (NAME.elf, label NAME.multiboot) and as PVH (NAME.pvh.elf, NAME.pvh), each
# on the machine its family asks for (guest_vmm_args VMM, disk images in
# DIR), GUEST_TIMEOUT seconds each. In COMMAND... (the VMM's command line)
# the word @KERNEL stands for the image and @ARGS for the family's
# arguments.
guest_tap_run_all() {
	local vmm=$1 dir=$2 names name variant image arg
	local -a cmd
	shift 2
	names=$(guest_kernel_names)
	[ -n "$names" ] || tap_not_ok "${vmm}_guest: guest kernels" "guest/tests/ has none"
	for name in $names; do
		for variant in multiboot pvh; do
			image=build/guest/$name.elf
			[ "$variant" = pvh ] && image=build/guest/$name.pvh.elf
			if [ ! -f "$image" ]; then
				tap_not_ok "$name.$variant: clean run" "$image is missing (make guests)"
				continue
			fi
			guest_vmm_args "$vmm" "$name" "$dir"
			cmd=()
			for arg in "$@"; do
				case "$arg" in
				@KERNEL) cmd+=("$image") ;;
				@ARGS) cmd+=("${GUEST_ARGS[@]}") ;;
				*) cmd+=("$arg") ;;
				esac
			done
			guest_tap_run "$name.$variant" "$name" "$GUEST_TIMEOUT" "${cmd[@]}"
		done
	done
}

# test_tmp [FUNCTION...]: $tmp, the test's scratch directory; at exit the
# FUNCTIONs (the test's own clean-up: processes it started, interfaces)
# run, then $tmp is removed
test_tmp() {
	tmp=$(mktemp -d)
	TEST_CLEANUP=("$@")
	trap test_exit EXIT
}

test_exit() {
	local f
	for f in "${TEST_CLEANUP[@]}"; do "$f"; done
	rm -rf "$tmp"
}

tap_summary() {
	echo "1..$TAP_N"
	echo "$TAP_PASSED passed, $TAP_FAILED failed, $TAP_SKIPPED skipped"
	[ "$TAP_FAILED" -eq 0 ]
}
