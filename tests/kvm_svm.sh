#!/usr/bin/env bash
# The kvm engine on a host with hardware virtualization. This project's
# machines have none (their /dev/kvm emulates guest kernel code), so the
# host is made (tests/lib/svm-host.bash): the stock kernel under QEMU's TCG
# with -cpu max, whose CPU has AMD-V with nested paging, kvm_amd loaded and
# accord inside.
#  (a) the host's CPU has SVM and NPT, and kvm_amd gives it /dev/kvm;
#  (b) --accel auto there chooses kvm without a message (its probe finds
#      ring-0 code at hardware speed) and the smoke kernel runs on it;
#  (c) every guest test kernel (Multiboot and PVH) on --accel kvm there, on
#      the machine its family asks for (guest/families), each PASS/FAIL line
#      compared with the emu run of the same kernel here
#      (tests/lib/kvm-compare.bash); --irqchip user, and split where that
#      host's KVM has it (else one skip with the reason). A difference is
#      TODO only when guest/known-deviations lists it for accord:kvm on
#      such a host (kvm=hardware) or SVM_DIFFERENCES below names it: what
#      the CPU under this KVM, QEMU's TCG, does differently from AMD's.
# Without qemu-system-x86_64 or a host image: one skip with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash
. tests/lib/kvm-compare.bash
. tests/lib/svm-host.bash

ACCORD=${ACCORD:-build/accord}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-300}
test_tmp

# What QEMU's TCG CPU does differently from an AMD CPU where SVM leaves the
# instruction to the CPU (no intercept): KVM never sees these. The same
# defects are guest/known-deviations' qemu entries.
declare -A SVM_DIFFERENCES=()
tcg_rsvd="the CPU under this KVM is QEMU's TCG, which reports RSVD without P in the #PF error code (guest/known-deviations, qemu:*); with nested paging the guest's page walk is the CPU's, not KVM's"
SVM_DIFFERENCES[smoke/exception.pf_reserved_bit]=$tcg_rsvd
SVM_DIFFERENCES[paging/rsvd.pte_bit51]=$tcg_rsvd
SVM_DIFFERENCES[paging/rsvd.pte_maxphyaddr_bit]=$tcg_rsvd
tcg_canon="the CPU under this KVM is QEMU's TCG, whose WRMSR takes a non-canonical address (guest/known-deviations, qemu:tcg); SVM passes this MSR to the CPU (KVM's MSR permission map does not intercept it)"
for msr in lstar fs_base gs_base kernel_gs_base; do
	SVM_DIFFERENCES[msr/$msr.noncanonical_gp]=$tcg_canon
done

if [ ! -x "$ACCORD" ]; then
	tap_not_ok "kvm_svm" "$ACCORD is missing (make all)"
	tap_summary
	exit 1
fi
accord_abs=$(cd "$(dirname "$ACCORD")" && pwd)/$(basename "$ACCORD")
svm_host_image "kvm on a host with AMD-V"

# the runs, as lines of the host's script: one file per run under /out
q() {
	local a out=""
	for a in "$@"; do out+="'${a//\'/\'\\\'\'}' "; done
	echo "$out"
}
files=()
kernels=()
for name in $(guest_kernel_names); do
	kernels+=("$name $name.multiboot build/guest/$name.elf" "$name $name.pvh build/guest/$name.pvh.elf")
done
mkdir -p "$tmp/svm-files"
{
	echo "A=$(q "$accord_abs")"
	echo 'run() { id=$1; shift; timeout 300 $A run --debug-exit "$@" </dev/null >/out/$id.out 2>/out/$id.err; echo $? >/out/$id.status; echo "svm-host: $id status $(cat /out/$id.status)"; }'
	echo "run auto --kernel $(q "$PWD/build/guest/smoke.elf") --accel auto"
	echo '$A run --kernel /nonexistent --accel kvm --irqchip split </dev/null 2>&1 | grep "^accord: --irqchip split: " >/out/split.why'
	echo 'split=1; [ -s /out/split.why ] && split=0'
	for entry in "${kernels[@]}"; do
		read -r name variant image <<<"$entry"
		[ -f "$image" ] || continue
		files+=("$PWD/$image")
		guest_vmm_args accord "$name" "$tmp/svm-files"
		echo "run $variant.user --kernel $(q "$PWD/$image") --accel kvm --irqchip user $(q "${GUEST_ARGS[@]}")"
		[[ $variant == *.pvh ]] || [ "$name" = hyperv ] ||
			echo "[ \$split = 0 ] || run $variant.split --kernel $(q "$PWD/$image") --accel kvm --irqchip split $(q "${GUEST_ARGS[@]}")"
	done
} >"$tmp/run.sh"
for f in "$tmp"/svm-files/*; do
	[ -e "$f" ] && files+=("$f")
done

svm_host_run "$tmp/svm.log" "$tmp/out" "$tmp/run.sh" "${files[@]}"

# ---- (a) the host ----
if [ "$SVM_CPU" != "npt svm" ]; then
	why=$(grep -m1 -i 'error\|qemu-system' "$tmp/svm.log")
	if grep -q '^svm-host: cpu' "$tmp/svm.log"; then
		why="its CPU flags: '${SVM_CPU}' (QEMU's -cpu max without SVM or NPT)"
	fi
	tap_skip "kvm on a host with AMD-V" "QEMU gives no host with SVM and nested paging: ${why:-QEMU status $SVM_STATUS}"
	tap_summary
	exit 0
fi
if grep -q '^svm-host: kvm /dev/kvm' "$tmp/svm.log" && grep -q '^svm-host: done' "$tmp/svm.log"; then
	tap_ok "the host under QEMU has SVM and nested paging, kvm_amd gives /dev/kvm, its script ran to the end"
else
	tap_not_ok "the host under QEMU: /dev/kvm and the whole script" \
		"QEMU status $SVM_STATUS; $(grep -m1 '^svm-host: kvm' "$tmp/svm.log"); last lines: $(tail -n 3 "$tmp/svm.log" | tr '\r\n' '  ')"
fi

# ---- (b) --accel auto ----
auto_err=$(grep -v '^accord: warning: no control API' "$tmp/out/auto.err" 2>/dev/null)
if [ -f "$tmp/out/auto.err" ] && [ -z "$auto_err" ]; then
	tap_ok "--accel auto on AMD-V: kvm chosen without a message"
else
	tap_not_ok "--accel auto on AMD-V: kvm chosen without a message" "stderr: ${auto_err:-no run}"
fi
# its failures only those SVM_DIFFERENCES names (all its checks are
# compared with emu's in (c))
unlisted=$(sed -n 's/\r$//; s/^FAIL \([^:]*\):.*/\1/p' "$tmp/out/auto.out" 2>/dev/null | while read -r t; do
	[ -n "${SVM_DIFFERENCES[smoke/$t]:-}" ] || echo "$t"; done)
if grep -q '^DONE ' "$tmp/out/auto.out" 2>/dev/null && [ -z "$unlisted" ]; then
	tap_ok "--accel auto on AMD-V: the smoke guest kernel runs to its end ($(grep -m1 '^DONE' "$tmp/out/auto.out" | tr -d '\r'); failures only the listed differences)"
else
	tap_not_ok "--accel auto on AMD-V: the smoke guest kernel" \
		"status $(cat "$tmp/out/auto.status" 2>/dev/null); unlisted failures: ${unlisted:-none}; $(grep -m1 '^DONE' "$tmp/out/auto.out" 2>/dev/null || echo 'no DONE line')"
fi

# ---- (c) the guest test kernels, compared with emu here ----
split_why=$(sed 's/^accord: --irqchip split: //' "$tmp/out/split.why" 2>/dev/null)
[ -z "$split_why" ] || tap_skip "guest kernels on AMD-V with --irqchip split" "$split_why"
for entry in "${kernels[@]}"; do
	read -r name variant image <<<"$entry"
	if [ ! -f "$image" ]; then
		tap_not_ok "$variant on AMD-V" "$image is missing (make guests)"
		continue
	fi
	guest_vmm_args accord "$name" "$tmp"
	timeout --kill-after=5 "$GUEST_TIMEOUT" "$ACCORD" run --debug-exit --kernel "$image" --accel emu \
		"${GUEST_ARGS[@]}" </dev/null >"$tmp/emu.out" 2>"$tmp/emu.err"
	emu_status=$?
	for irqchip in user split; do
		id=$variant.$irqchip
		if [ ! -f "$tmp/out/$id.status" ]; then
			[ "$irqchip" = split ] && continue
			tap_not_ok "$variant on AMD-V (irqchip $irqchip)" "no run (the host's script stopped before it)"
			continue
		fi
		declare -A DIFFS=()
		for t in "${!SVM_DIFFERENCES[@]}"; do DIFFS[$t]=${SVM_DIFFERENCES[$t]}; done
		KNOWN_DEVIATIONS=()
		load_known_deviations accord:kvm "kvm=hardware irqchip=$irqchip"
		for t in "${!KNOWN_DEVIATIONS[@]}"; do DIFFS[$t]=${KNOWN_DEVIATIONS[$t]}; done
		kvm_compare "$variant on AMD-V (irqchip $irqchip)" "$name" "$tmp/out/$id.out" "$tmp/out/$id.err" \
			"$(cat "$tmp/out/$id.status")" "$tmp/emu.out" "$emu_status" 0
		unset DIFFS
	done
done
tap_summary
