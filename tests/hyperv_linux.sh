#!/usr/bin/env bash
# The stock Debian kernel on accord's paravirtual personalities.
# --personality hyperv (two vCPUs): Linux detects Hyper-V, switches to the
# reference TSC page clocksource, runs its tick on the direct-mode synthetic
# timer on every CPU, and powers off with status 0; a panic triggered in the
# guest reaches accord through the crash MSRs (status 2, with the panic
# printk silenced so the console cannot be what tells).
# --personality kvm: Linux finds KVM and sets kvm-clock up.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
IMG=build/guest-image
test_tmp

guest_image_default "hyperv linux"

"$ACCORD" run --kernel "$IMG/vmlinuz" --personality xen >"$tmp/usage.out" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q "^accord: --personality 'xen': expected kvm or hyperv$" "$tmp/usage.out"; then
	tap_ok "--personality with an unknown name: one-line error, status 1"
else
	tap_not_ok "--personality xen" "status $rc: $(head -n 2 "$tmp/usage.out")"
fi

# run CMD in the guest; true when its output has a line matching REGEX
# (the command prints a marker line the tty's echo cannot contain)
guest_check() {
	local name=$1 cmd=$2 regex=$3
	console_send "$cmd; echo E\$((1+1))"
	if console_wait "^E2" 90 && grep -qE -- "$regex" <(tr -d '\r' <"$CONSOLE_LOG"); then
		tap_ok "$name"
	else
		tap_not_ok "$name" "no line matching '$regex'"
		console_tail 10
	fi
}

boot() {
	local log=$1 personality=$2 cmdline=$3 cpus=$4
	console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
		--cmdline "$cmdline" --memory 256M --cpus "$cpus" --accel "$ACCEL" --personality "$personality"
	console_wait "accord-guest: init ready" "$BOOT_TIMEOUT"
}

# ---- Hyper-V ----
if boot "$tmp/hv.log" hyperv "console=ttyS0 panic=-1" 2; then
	tap_ok "hyperv: boots to init on two vCPUs"
	sleep 1
	guest_check "hyperv: Linux detects Microsoft Hyper-V" \
		'dmesg | grep -E "Hypervisor detected|Hyper-V: privilege" | sed "s/^/D1 /"' \
		'^D1 .*Hypervisor detected: Microsoft Hyper-V'
	guest_check "hyperv: the features Linux read are accord's (privilege flags low 0xaee)" \
		'dmesg | grep "Hyper-V: privilege" | sed "s/^/D2 /"' \
		'^D2 .*privilege flags low 0xaee, high 0x30'
	guest_check "hyperv: hyperv_clocksource_tsc_page is available" \
		'sed "s/^/C1 /" /sys/devices/system/clocksource/clocksource0/available_clocksource' \
		'^C1 .*hyperv_clocksource_tsc_page'
	guest_check "hyperv: and it is the current clocksource" \
		'sed "s/^/C2 /" /sys/devices/system/clocksource/clocksource0/current_clocksource' \
		'^C2 hyperv_clocksource_tsc_page'
	guest_check "hyperv: the tick runs on the Hyper-V clockevent (stimer0) on both CPUs" \
		'echo T$(grep -A2 "^Per CPU device:" /proc/timer_list | grep -c "Clock Event Device: Hyper-V clockevent")' \
		'^T2$'
	console_send 'a=$(awk "/HVS:/{print \$2+\$3}" /proc/interrupts); sleep 1; b=$(awk "/HVS:/{print \$2+\$3}" /proc/interrupts); [ "$b" -gt "$a" ] && echo S$((3+4)) $a $b'
	if console_wait "^S7 [0-9]+ [0-9]+" 60; then
		tap_ok "hyperv: stimer0 interrupts (HVS in /proc/interrupts) keep coming"
	else
		tap_not_ok "hyperv: stimer0 interrupts keep coming" "HVS count did not grow"
		console_tail 10
	fi
	console_send 'a=$(cut -d" " -f1 /proc/uptime); sleep 1; b=$(cut -d" " -f1 /proc/uptime); echo U$((1+1)) $a $b'
	if console_wait "^U2 [0-9.]+ [0-9.]+" 60; then
		read -r _ a b < <(tr -d '\r' <"$CONSOLE_LOG" | grep -E "^U2 [0-9.]+ [0-9.]+" | tail -n 1)
		if awk -v a="$a" -v b="$b" 'BEGIN { exit !(b > a) }'; then
			tap_ok "hyperv: guest time advances across a sleep ($a -> $b)"
		else
			tap_not_ok "hyperv: guest time advances" "$a -> $b"
		fi
	else
		tap_not_ok "hyperv: guest time advances" "no uptime line"
	fi
	console_send 'echo M$((1+1)) $(dmesg | grep -c "unchecked MSR access")'
	if console_wait "^M2 0" 60; then
		tap_ok "hyperv: no MSR access Linux made was refused"
	else
		tap_not_ok "hyperv: no MSR access refused" "dmesg has unchecked MSR access errors"
		console_tail 10
	fi
	console_send 'poweroff -f'
	console_finish 120
	if [ "$CONSOLE_STATUS" = 0 ]; then
		tap_ok "hyperv: poweroff ends accord with status 0"
	else
		tap_not_ok "hyperv: poweroff" "accord exit status $CONSOLE_STATUS"
		console_tail
	fi
else
	tap_not_ok "hyperv: boots to init" "no 'init ready' line within ${BOOT_TIMEOUT}s"
	console_tail 25
	console_finish 1
fi

# loglevel=0 keeps the panic message off the console: only the crash MSRs
# can tell accord that the guest panicked
if boot "$tmp/crash.log" hyperv "console=ttyS0 panic=-1 loglevel=0" 1; then
	sleep 1
	console_send 'echo c > /proc/sysrq-trigger'
	console_finish 120
	if [ "$CONSOLE_STATUS" = 2 ] && grep -q "accord: the guest reported a crash through the Hyper-V crash MSRs" "$tmp/crash.log"; then
		tap_ok "hyperv: a guest panic reaches accord through the crash MSRs (status 2)"
	else
		tap_not_ok "hyperv: a guest panic through the crash MSRs" "status $CONSOLE_STATUS"
		console_tail 10
	fi
else
	tap_not_ok "hyperv: crash MSRs" "no 'init ready' line within ${BOOT_TIMEOUT}s"
	console_tail 25
	console_finish 1
fi

# ---- KVM ----
if boot "$tmp/kvm.log" kvm "console=ttyS0 panic=-1" 1; then
	tap_ok "kvm: boots to init"
	sleep 1
	guest_check "kvm: Linux detects KVM" \
		'dmesg | grep "Hypervisor detected" | sed "s/^/K1 /"' \
		'^K1 .*Hypervisor detected: KVM'
	guest_check "kvm: kvm-clock uses the new MSRs" \
		'dmesg | grep "kvm-clock" | sed "s/^/K2 /"' \
		'^K2 .*kvm-clock: Using msrs 4b564d01 and 4b564d00'
	guest_check "kvm: kvm-clock is an available clocksource" \
		'sed "s/^/K3 /" /sys/devices/system/clocksource/clocksource0/available_clocksource' \
		'^K3 .*kvm-clock'
	console_send 'echo kvm-clock > /sys/devices/system/clocksource/clocksource0/current_clocksource; a=$(cut -d" " -f1 /proc/uptime); sleep 1; b=$(cut -d" " -f1 /proc/uptime); echo V$((1+1)) $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource) $a $b'
	if console_wait "^V2 kvm-clock [0-9.]+ [0-9.]+" 60; then
		read -r _ _ a b < <(tr -d '\r' <"$CONSOLE_LOG" | grep -E "^V2 kvm-clock" | tail -n 1)
		if awk -v a="$a" -v b="$b" 'BEGIN { exit !(b > a) }'; then
			tap_ok "kvm: on kvm-clock, guest time advances across a sleep ($a -> $b)"
		else
			tap_not_ok "kvm: on kvm-clock, guest time advances" "$a -> $b"
		fi
	else
		tap_not_ok "kvm: switching to kvm-clock" "no V2 line"
		console_tail 10
	fi
	console_send 'poweroff -f'
	console_finish 120
	if [ "$CONSOLE_STATUS" = 0 ]; then
		tap_ok "kvm: poweroff ends accord with status 0"
	else
		tap_not_ok "kvm: poweroff" "accord exit status $CONSOLE_STATUS"
		console_tail
	fi
else
	tap_not_ok "kvm: boots to init" "no 'init ready' line within ${BOOT_TIMEOUT}s"
	console_tail 25
	console_finish 1
fi
tap_summary
