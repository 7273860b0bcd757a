# The kvm engine's results against emu's for one guest test kernel, for
# tests/kvm_engine.sh (this machine's /dev/kvm) and tests/kvm_svm.sh (a host
# with AMD-V under QEMU).
#
#   kvm_results FILE      "name result" per PASS/FAIL/SKIP line, in order
#   kvm_compare LABEL NAME KVM_OUT KVM_ERR KVM_STATUS EMU_OUT EMU_STATUS MAY_STOP
#       one TAP line per check of the kvm run: ok when its result is the emu
#       run's, TODO with the reason when DIFFS (an associative array the
#       caller fills: "family/test" -> reason) lists it, not ok otherwise;
#       then one line for the whole run (same exit status, no check
#       missing). MAY_STOP=1: the host's KVM emulates ring-0 code and may
#       stop the guest at an instruction it lacks; the checks after that
#       are then one skip with the engine's message.

kvm_results() {
	sed -n 's/\r$//; s/^\(PASS\|FAIL\|SKIP\) \([^:]*\).*/\2 \1/p' "$1"
}

# kvm_compare LABEL NAME KVM_OUT KVM_ERR KVM_STATUS EMU_OUT EMU_STATUS MAY_STOP
kvm_compare() {
	local label=$1 name=$2 kout=$3 kerr=$4 kstatus=$5 eout=$6 estatus=$7 may_stop=$8
	local t r e why line listed=0 missing=0 kvm_err
	local -A emu_res=() emu_why=() seen=()
	while read -r t r; do emu_res[$t]=$r; done < <(kvm_results "$eout")
	while IFS= read -r line; do
		t=${line#FAIL }
		emu_why[${t%%:*}]=${t#*: }
	done < <(grep '^FAIL ' "$eout" | tr -d '\r')
	while read -r t r; do
		seen[$t]=1
		e=${emu_res[$t]:-}
		if [ "$r" = "$e" ]; then
			tap_ok "$label/$t: $r as on emu"
		elif [ -n "${DIFFS[$name/$t]:-}" ]; then
			tap_todo "$label/$t" "${DIFFS[$name/$t]} (kvm $r, emu ${e:-no line})"
			[ "$r" != FAIL ] || listed=$((listed + 1))
		else
			why=$(grep -m1 "^FAIL $t:" "$kout" | tr -d '\r')
			[ "$e" = FAIL ] && why="emu: ${emu_why[$t]}"
			tap_not_ok "$label/$t: kvm $r, emu ${e:-no line}" "$why"
		fi
	done < <(kvm_results "$kout")
	for t in "${!emu_res[@]}"; do
		[ -n "${seen[$t]:-}" ] || missing=$((missing + 1))
	done
	kvm_err=$(grep -m1 'accord: the VM failed: ' "$kerr")
	kvm_err=${kvm_err#accord: the VM failed: }
	if ! grep -q '^DONE ' "$eout"; then
		tap_not_ok "$label: the emu run to compare with" "status $estatus, no DONE line"
	elif [ "$may_stop" -eq 1 ] && [[ $kvm_err == kvm:* ]]; then
		# the host's KVM emulates ring-0 code and lacks an instruction
		tap_skip "$label: $missing further checks" "this host's KVM stopped the guest: $kvm_err"
	elif [ "$missing" -eq 0 ] && [ "$kstatus" -ne "$estatus" ] && [ "$listed" -gt 0 ] &&
		! grep -q '^FAIL ' <(grep '^FAIL ' "$kout" | tr -d '\r' | while IFS= read -r l; do
			t=${l#FAIL }; t=${t%%:*}; [ -n "${DIFFS[$name/$t]:-}" ] || echo "$l"; done); then
		# the exit status differs only through the listed differences
		tap_todo "$label: the whole run" "kvm status $kstatus, emu $estatus, from the $listed listed differences"
	elif [ "$missing" -ne 0 ] || [ "$kstatus" -ne "$estatus" ]; then
		tap_not_ok "$label: the whole run" \
			"kvm status $kstatus, emu $estatus; $missing checks missing; ${kvm_err:-$(head -n 3 "$kerr")}"
	else
		tap_ok "$label: the whole run ends as on emu ($(grep -m1 '^DONE' "$kout" | tr -d '\r'))"
	fi
}
