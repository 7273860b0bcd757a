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
#      the CPU under this KVM, QEMU's TCG, does differently from AMD's;
#  (d) with ACCORD_VERBOSE=1, what the engine does on such a host: KVM
#      gives an exit at the end of an STI shadow (no stepping to interrupt
#      windows); the smoke kernel's int3 and cmpxchg16b run in the hardware
#      (nothing on accord's interpreter); in the timers kernel only the SSE
#      loads from the LAPIC's MMIO, which KVM's emulator lacks, run on
#      accord's interpreter; the pci kernel's virtio-blk notifies are
#      KVM_IOEVENTFDs, each removed again at the device's reset;
#  (e) build/tests/unit_kvm_api there, each of its lines as one here.
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

svm_host_image "kvm on a host with AMD-V"

# the runs, as lines of the host's script: one file per run under /out
files=("$PWD/build/tests/unit_kvm_api")
kernels=()
for name in $(guest_kernel_names); do
	kernels+=("$name $name.multiboot build/guest/$name.elf" "$name $name.pvh build/guest/$name.pvh.elf")
done
mkdir -p "$tmp/svm-files"
{
	echo "A=$(svm_quote "$SVM_ACCORD")"
	echo 'run() { id=$1; shift; timeout 300 $A run --debug-exit "$@" </dev/null >/out/$id.out 2>/out/$id.err; echo $? >/out/$id.status; echo "svm-host: $id status $(cat /out/$id.status)"; }'
	echo "run auto --kernel $(svm_quote "$PWD/build/guest/smoke.elf") --accel auto"
	echo '$A run --kernel /nonexistent --accel kvm --irqchip split </dev/null 2>&1 | grep "^accord: --irqchip split: " >/out/split.why'
	echo 'split=1; [ -s /out/split.why ] && split=0'
	echo "$(svm_quote "$PWD/build/tests/unit_kvm_api") >/out/unit_kvm_api.tap 2>/out/unit_kvm_api.err"
	for name in smoke timers pci; do
		guest_vmm_args accord "$name" "$tmp/svm-files"
		echo "ACCORD_VERBOSE=1 run $name.verbose --kernel $(svm_quote "$PWD/build/guest/$name.elf") --accel kvm --irqchip user $(svm_quote "${GUEST_ARGS[@]}")"
	done
	for entry in "${kernels[@]}"; do
		read -r name variant image <<<"$entry"
		[ -f "$image" ] || continue
		files+=("$PWD/$image")
		guest_vmm_args accord "$name" "$tmp/svm-files"
		echo "run $variant.user --kernel $(svm_quote "$PWD/$image") --accel kvm --irqchip user $(svm_quote "${GUEST_ARGS[@]}")"
		[[ $variant == *.pvh ]] || [ "$name" = hyperv ] ||
			echo "[ \$split = 0 ] || run $variant.split --kernel $(svm_quote "$PWD/$image") --accel kvm --irqchip split $(svm_quote "${GUEST_ARGS[@]}")"
	done
} >"$tmp/run.sh"
for f in "$tmp"/svm-files/*; do
	[ -e "$f" ] && files+=("$f")
done

svm_host_run "$tmp/svm.log" "$tmp/out" "$tmp/run.sh" "${files[@]}"

# ---- (a) the host ----
svm_host_required "kvm on a host with AMD-V"
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

# ---- (d) what the engine does on such a host (ACCORD_VERBOSE=1) ----
# verbose NAME: the verbose run's stderr, or nothing when it did not run
verbose() {
	cat "$tmp/out/$1.verbose.err" 2>/dev/null
}
ran_clean() {
	grep -q '^DONE ' "$tmp/out/$1.verbose.out" 2>/dev/null
}
stepped_re="instructions the host's KVM cannot emulate ran on accord's interpreter"
if ! ran_clean smoke; then
	tap_not_ok "smoke on AMD-V, verbose: runs to its end" "$(verbose smoke | tail -n 3 | tr '\n' ' ')"
elif verbose smoke | grep -q 'gives no exit at the end of an STI shadow'; then
	tap_not_ok "smoke on AMD-V: KVM gives an exit at the end of an STI shadow" "$(verbose smoke | grep -m1 'STI shadow')"
else
	tap_ok "smoke on AMD-V: KVM gives an exit at the end of an STI shadow (no stepping to interrupt windows)"
fi
if ran_clean smoke && ! verbose smoke | grep -q "$stepped_re"; then
	tap_ok "smoke on AMD-V: int3 and cmpxchg16b run in the hardware (no instruction on accord's interpreter)"
else
	tap_not_ok "smoke on AMD-V: nothing on accord's interpreter" "$(verbose smoke | grep -m3 'cannot emulate' | tr '\n' ' ')"
fi
kinds=$(verbose timers | sed -n "s/^accord: kvm: cpu[0-9]*: the host's KVM cannot emulate the instruction at rip 0x[0-9a-f]* (\([0-9a-f ]*\)).*/\1/p")
if ran_clean timers && [ -n "$kinds" ] && ! grep -qv '^66 0f 6e ' <<<"$kinds"; then
	tap_ok "timers on AMD-V: only the SSE loads from the LAPIC's MMIO (movd, which KVM's emulator lacks) run on accord's interpreter ($(verbose timers | grep -m1 "$stepped_re" | sed 's/^accord: kvm: //'))"
else
	tap_not_ok "timers on AMD-V: only the SSE loads from MMIO on accord's interpreter" \
		"stepped: ${kinds:-none}; $(verbose timers | grep -m1 'failed\|cannot step')"
fi
bound=$(verbose pci | grep -c '^accord: kvm: KVM_IOEVENTFD at 0x[0-9a-f]*: writes there signal an eventfd without an exit$')
removed=$(verbose pci | grep -c '^accord: kvm: KVM_IOEVENTFD off 0x[0-9a-f]*: removed$')
if ran_clean pci && grep -q '^PASS virtio.blk_many_requests' "$tmp/out/pci.verbose.out" && [ "$bound" -ge 1 ] &&
	[ "$removed" -eq "$bound" ]; then
	tap_ok "pci on AMD-V: the disk's queue notify bound with KVM_IOEVENTFD ($bound bindings), its requests complete, each binding removed at the reset"
else
	tap_not_ok "pci on AMD-V: virtio-blk through KVM_IOEVENTFD" "$bound bound, $removed removed; $(grep -m2 '^FAIL\|^DONE' "$tmp/out/pci.verbose.out" 2>/dev/null | tr '\n' ' ')"
fi

# ---- (e) unit_kvm_api on such a host ----
if ! grep -q '^[0-9]* passed, [0-9]* failed' "$tmp/out/unit_kvm_api.tap" 2>/dev/null; then
	tap_not_ok "unit_kvm_api on AMD-V" "no summary line; $(tail -n 3 "$tmp/out/unit_kvm_api.tap" "$tmp/out/unit_kvm_api.err" 2>/dev/null | tr '\n' ' ')"
fi
while IFS= read -r line; do
	case "$line" in
	"ok "*" # SKIP "*)
		t=${line#ok * - }
		tap_skip "unit_kvm_api on AMD-V: ${t%% # SKIP *}" "${t#* # SKIP }"
		;;
	"ok "*) tap_ok "unit_kvm_api on AMD-V: ${line#ok * - }" ;;
	"not ok "*) tap_not_ok "unit_kvm_api on AMD-V: ${line#not ok * - }" "" ;;
	esac
done < <(tr -d '\r' <"$tmp/out/unit_kvm_api.tap" 2>/dev/null)
tap_summary
