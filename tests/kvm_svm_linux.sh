#!/usr/bin/env bash
# The stock Debian kernel on the kvm engine on a host with hardware
# virtualization (tests/lib/svm-host.bash: the stock kernel under QEMU's TCG
# with -cpu max, whose CPU has AMD-V with nested paging, kvm_amd, accord
# inside), and compared with the same boot on emu here.
#  (a) with --accel kvm --irqchip user and no command-line workarounds, with
#      one CPU and with two: the guest's init runs /autotest.sh (user space,
#      which this project's emulating KVM cannot run), uname -r is the
#      pinned release, nproc and /proc/cpuinfo count the CPUs, the guest's
#      /bin/busybox hashes as the image's, a virtio-blk disk reads back the
#      host's random pattern through MSI-X interrupts, and poweroff ends
#      accord with status 0;
#  (b) --personality hyperv there with Linux's own drivers (hv_vmbus,
#      hv_storvsc, hv_utils), two CPUs: VMBus protocol 5.3, the shutdown,
#      heartbeat, time sync, KVP and SCSI channels, the pattern read from a
#      storvsc disk, the reference TSC page as clocksource, no kernel
#      warning emu's boot does not give;
#  (c) "exactly as on emu": the virtio image and /autotest.sh on emu here
#      (two CPUs), and what the guest reports compared with each kvm boot,
#      each difference its own line: the CPU's identity in /proc/cpuinfo,
#      the kernel's FPU lines (x86/fpu:), each CPU flag, each entry of
#      /sys/devices/system/cpu/vulnerabilities, the clocksource and those
#      on offer, the kernel's warnings (WARNING, BUG, Call Trace,
#      segfault). A difference is TODO only when SVM_LINUX_DIFFERENCES
#      below gives the reason.
# Without qemu-system-x86_64, a host image or a guest image: one skip with
# the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/vmbus-classes.bash
. tests/lib/svm-host.bash

GUEST_TIMEOUT=${GUEST_TIMEOUT:-600}
IMG=build/guest-image-virtio
MIB=1048576
test_tmp

# what the guest may report differently on this kvm and on emu, with the
# reason (key: the report's name, as in the L2 lines below)
declare -A SVM_LINUX_DIFFERENCES=()
# The CPU under this KVM is QEMU's TCG with -cpu max, whose CPUID has no
# invariant TSC (0x80000007 EDX bit 8; the host's own flags show neither
# constant_tsc nor nonstop_tsc) and no PREFETCHW (0x80000001 ECX bit 8; the
# host's Linux shows 3dnowprefetch only because it infers it from long
# mode). KVM_GET_SUPPORTED_CPUID masks its list with the CPU's CPUID, and
# the kvm engine hides what KVM does not offer (ACCORD_VERBOSE=1 names the
# bits): the guest's code runs on that CPU, and a TSC announced invariant
# must be one.
SVM_LINUX_DIFFERENCES[flag/nonstop_tsc]="the CPU under this KVM (QEMU's TCG, -cpu max) has no invariant TSC (CPUID 0x80000007 EDX bit 8), so KVM_GET_SUPPORTED_CPUID lacks it and the kvm engine hides it"
SVM_LINUX_DIFFERENCES[flag/3dnowprefetch]="the CPU under this KVM (QEMU's TCG, -cpu max) does not enumerate PREFETCHW (CPUID 0x80000001 ECX bit 8), so KVM_GET_SUPPORTED_CPUID lacks it and the kvm engine hides it"
# Linux's kvmclock_init rates kvm-clock (400) below the TSC (299) only where
# the CPU has a constant and nonstop TSC
SVM_LINUX_DIFFERENCES[clocksource]="follows from nonstop_tsc: without an invariant TSC Linux keeps kvm-clock's rating above the TSC's (kvmclock_init)"
# IA32_ARCH_CAPABILITIES: the model's FBSDP_NO, PSDP_NO and SBDR_SSDP_NO
# hold for emu's interpreter; KVM on this host (a CPU without the MSR)
# vouches for none of them, and the kvm engine gives the guest only the
# model's bits KVM vouches for
SVM_LINUX_DIFFERENCES[vulnerability/mmio_stale_data]="the host's KVM does not vouch for IA32_ARCH_CAPABILITIES' FBSDP_NO, PSDP_NO and SBDR_SSDP_NO (QEMU's TCG CPU has no such MSR), which the kvm engine then hides: the guest's code runs on that CPU"

svm_host_image "linux on kvm with AMD-V"
guest_image "linux on kvm with AMD-V" "virtio_pci virtio_blk"
release=$(cat "$IMG/kernel.release")
# the Hyper-V guest's image, as tests/hyperv_storage.sh builds it
HV_IMG=build/guest-image-hyperv
IMG=$HV_IMG guest_image "linux with --personality hyperv on kvm with AMD-V" "hv_vmbus hv_storvsc sd_mod hv_utils" mke2fs

# The guest's checks: its init runs /autotest.sh (accord.autotest), which a
# second archive replaces; each report is one "L2: name value" line on the
# console.
mkdir -p "$tmp/l2/bin"
cat >"$tmp/l2/autotest.sh" <<'EOF'
#!/bin/sh
r() { echo "L2: $*"; }
r "uname $(uname -r)"
r "nproc $(nproc)"
r "cpuinfo $(grep -c '^processor' /proc/cpuinfo)"
r "busybox $(sha256sum /bin/busybox | cut -d' ' -f1)"
# the first disk: virtio-blk's vda or storvsc's sda
for d in vda sda; do
	[ -b /dev/$d ] && r "disk $d $(cat /sys/block/$d/size) $(dd if=/dev/$d bs=1048576 skip=8 count=1 2>/dev/null | sha256sum | cut -d' ' -f1)"
done
dmesg | sed -n 's/^\[[ 0-9.]*\] //; s/^hv_vmbus: Vmbus version:/vmbus /p' | while read -r l; do r "$l"; done
dmesg | sed -n 's/^\[[ 0-9.]*\] //; /^Hyper-V: /p' | while read -r l; do r "$l"; done
[ -d /sys/bus/vmbus/devices ] && r "vmbus-classes $(cat /sys/bus/vmbus/devices/*/class_id | sort | uniq -c | tr -s ' \n' '  ')"
# the disk's request vectors: MSI-X lines, their counts over all CPUs
r "msix $(awk '/PCI-MSI/ && /virtio.*-req/ { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n + 0 }' /proc/interrupts)"
dmesg | sed -n 's/^\[[ 0-9.]*\] //; s/^x86\/fpu: /fpu /p' | while read -r l; do r "$l"; done
grep '^flags' /proc/cpuinfo | sort | uniq -c | while read -r n l; do r "flags $n $l"; done
grep -E '^(vendor_id|cpu family|model|model name|stepping|microcode|cache size|address sizes)[[:space:]]*:' /proc/cpuinfo | sort | uniq -c | while read -r l; do r "cpu $l"; done
for f in /sys/devices/system/cpu/vulnerabilities/*; do r "vulnerability ${f##*/} $(cat "$f")"; done
r "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
r "clocksources $(cat /sys/devices/system/clocksource/clocksource0/available_clocksource)"
dmesg | sed 's/^\[[ 0-9.]*\] //' | grep -E 'WARNING|BUG|Call Trace|segfault' | while read -r l; do r "warning $l"; done
r "end"
poweroff -f
EOF
chmod 755 "$tmp/l2/autotest.sh"
(cd "$tmp/l2" && echo autotest.sh | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$tmp/l2.cpio.gz"
initrd=$tmp/l2-initrd.cpio.gz
cat "$IMG/initrd.cpio.gz" "$tmp/l2.cpio.gz" >"$initrd"
kernel=$PWD/$IMG/vmlinuz
hv_initrd=$tmp/l2-hv-initrd.cpio.gz
cat "$HV_IMG/initrd.cpio.gz" "$tmp/l2.cpio.gz" >"$hv_initrd"
hv_kernel=$PWD/$HV_IMG/vmlinuz

# the image's busybox, as the guest should hash it
mkdir -p "$tmp/initrd"
gzip -dc "$IMG/initrd.cpio.gz" | (cd "$tmp/initrd" && cpio -id --quiet bin/busybox 2>/dev/null)
busybox_sum=$(sha256sum <"$tmp/initrd/bin/busybox" 2>/dev/null | cut -d' ' -f1)

# a random MiB at 8 MiB of a 16 MiB disk
disk=$tmp/disk.img
truncate -s 16M "$disk"
head -c $MIB /dev/urandom >"$tmp/pattern"
dd if="$tmp/pattern" of="$disk" bs=$MIB seek=8 conv=notrunc status=none
pattern_sum=$(sha256sum <"$tmp/pattern" | cut -d' ' -f1)

# the host's script: the same boot with one CPU and with two, then the
# Hyper-V guest
boot_args=(--kernel "$kernel" --initrd "$initrd" --cmdline "console=ttyS0 panic=-1 accord.autotest"
	--memory 256M --disk "path=$disk")
{
	echo "A=$(svm_quote "$SVM_ACCORD")"
	echo 'run() { id=$1; shift; timeout 120 $A run "$@" </dev/null >/out/$id.out 2>/out/$id.err; echo $? >/out/$id.status; echo "svm-host: $id status $(cat /out/$id.status)"; }'
	echo "run cpus1 --accel kvm --irqchip user --cpus 1 $(svm_quote "${boot_args[@]}")"
	echo "run cpus2 --accel kvm --irqchip user --cpus 2 $(svm_quote "${boot_args[@]}")"
	echo "run hyperv --accel kvm --irqchip user --cpus 2 --personality hyperv --kernel $(svm_quote "$hv_kernel") --initrd $(svm_quote "$hv_initrd") $(svm_quote "${boot_args[@]:4}")"
} >"$tmp/run.sh"
svm_host_run "$tmp/svm.log" "$tmp/out" "$tmp/run.sh" "$kernel" "$initrd" "$hv_kernel" "$hv_initrd" "$disk"

svm_host_required "linux on kvm with AMD-V"

# the emu boots here, natively
timeout --kill-after=5 "$GUEST_TIMEOUT" "$ACCORD" run --accel emu --cpus 2 "${boot_args[@]}" \
	</dev/null >"$tmp/out/emu.out" 2>"$tmp/out/emu.err"
echo $? >"$tmp/out/emu.status"
timeout --kill-after=5 "$GUEST_TIMEOUT" "$ACCORD" run --accel emu --cpus 2 --personality hyperv \
	--kernel "$hv_kernel" --initrd "$hv_initrd" "${boot_args[@]:4}" \
	</dev/null >"$tmp/out/emu-hyperv.out" 2>"$tmp/out/emu-hyperv.err"
echo $? >"$tmp/out/emu-hyperv.status"

# report NAME FILE: the values of "L2: NAME ..." lines
report() {
	sed -n "s/\r\$//; s/^L2: $1 //p" "$2" 2>/dev/null
}

# ---- (a) the boots on kvm ----
for cpus in 1 2; do
	out=$tmp/out/cpus$cpus.out
	what="linux on kvm with AMD-V, $cpus CPU$([ "$cpus" = 1 ] || echo s)"
	if [ ! -f "$tmp/out/cpus$cpus.status" ]; then
		tap_not_ok "$what" "no run (the host's script stopped before it; last lines: $(tail -n 3 "$tmp/svm.log" | tr '\r\n' '  '))"
		continue
	fi
	if grep -q '^L2: end' "$out"; then
		tap_ok "$what: boots to init with no command-line workarounds, /autotest.sh runs to its end"
	else
		tap_not_ok "$what: boots to init, /autotest.sh runs to its end" \
			"status $(cat "$tmp/out/cpus$cpus.status"); $(grep -m1 '^accord:' "$tmp/out/cpus$cpus.err"); last lines: $(tail -n 3 "$out" | tr '\r\n' '  ')"
	fi
	v=$(report uname "$out")
	if [ "$v" = "$release" ]; then tap_ok "$what: uname -r is $release"
	else tap_not_ok "$what: uname -r is $release" "got '$v'"; fi
	v="$(report nproc "$out") $(report cpuinfo "$out")"
	if [ "$v" = "$cpus $cpus" ]; then tap_ok "$what: nproc and /proc/cpuinfo count $cpus"
	else tap_not_ok "$what: nproc and /proc/cpuinfo count $cpus" "nproc and cpuinfo: '$v'"; fi
	v=$(report busybox "$out")
	if [ -n "$busybox_sum" ] && [ "$v" = "$busybox_sum" ]; then tap_ok "$what: /bin/busybox hashes as the image's"
	else tap_not_ok "$what: /bin/busybox hashes as the image's" "guest '$v', image '$busybox_sum'"; fi
	v=$(report disk "$out")
	if [ "$v" = "vda 32768 $pattern_sum" ]; then tap_ok "$what: the guest reads the host's pattern from virtio-blk"
	else tap_not_ok "$what: the guest reads the host's pattern from virtio-blk" "guest '$v', host '$pattern_sum'"; fi
	v=$(report msix "$out")
	if [ "${v:-0}" -gt 0 ] 2>/dev/null; then tap_ok "$what: the disk's MSI-X vectors interrupt the guest ($v)"
	else tap_not_ok "$what: the disk's MSI-X vectors interrupt the guest" "count '$v'"; fi
	v=$(cat "$tmp/out/cpus$cpus.status")
	if [ "$v" = 0 ] && grep -q '^L2: end' "$out"; then tap_ok "$what: poweroff ends accord with status 0"
	else tap_not_ok "$what: poweroff ends accord with status 0" "status $v"; fi
done

# ---- (b) the Hyper-V personality: Linux's own VMBus drivers ----
out=$tmp/out/hyperv.out
what="linux with --personality hyperv on kvm with AMD-V, 2 CPUs"
if [ ! -f "$tmp/out/hyperv.status" ]; then
	tap_not_ok "$what" "no run (the host's script stopped before it; last lines: $(tail -n 3 "$tmp/svm.log" | tr '\r\n' '  '))"
else
	if grep -q '^L2: end' "$out" && [ "$(cat "$tmp/out/hyperv.status")" = 0 ]; then
		tap_ok "$what: boots, /autotest.sh runs to its end, poweroff ends accord with status 0"
	else
		tap_not_ok "$what: boots, /autotest.sh runs to its end, poweroff" \
			"status $(cat "$tmp/out/hyperv.status"); $(grep -m1 '^accord:' "$tmp/out/hyperv.err"); last lines: $(tail -n 3 "$out" | tr '\r\n' '  ')"
	fi
	v=$(report vmbus "$out")
	if [ "$v" = 5.3 ]; then tap_ok "$what: hv_vmbus connects at VMBus protocol 5.3"
	else tap_not_ok "$what: hv_vmbus connects at VMBus protocol 5.3" "got '$v'"; fi
	v=$(report vmbus-classes "$out")
	want="1 {$SHUTDOWN_CLASS} 1 {$HEARTBEAT_CLASS} 1 {$TIMESYNC_CLASS} 1 {$KVP_CLASS} 1 {$SCSI_CLASS}"
	v=${v# }
	if [ "${v% }" = "$want" ]; then tap_ok "$what: the VMBus channels: shutdown, heartbeat, time sync, KVP, SCSI"
	else tap_not_ok "$what: the VMBus channels: shutdown, heartbeat, time sync, KVP, SCSI" "got '$v'"; fi
	v=$(report disk "$out")
	if [ "$v" = "sda 32768 $pattern_sum" ]; then tap_ok "$what: the guest reads the host's pattern from a storvsc disk"
	else tap_not_ok "$what: the guest reads the host's pattern from a storvsc disk" "got '$v', host '$pattern_sum'"; fi
	v=$(report clocksource "$out")
	if [ "$v" = hyperv_clocksource_tsc_page ]; then tap_ok "$what: the clocksource is the reference TSC page"
	else tap_not_ok "$what: the clocksource is the reference TSC page" "got '$v'"; fi
	# no warning emu's boot of the virtio guest does not give too
	v=$(comm -13 <(report warning "$tmp/out/emu.out" | sort -u) <(report warning "$out" | sort -u))
	if grep -q '^L2: end' "$out" && [ -z "$v" ]; then tap_ok "$what: no kernel warning beyond emu's"
	else tap_not_ok "$what: no kernel warning beyond emu's" "${v//$'\n'/; }"; fi
fi

# ---- (c) compared with emu ----
# compare WHAT KEY WANT HAVE: one check, TODO where SVM_LINUX_DIFFERENCES
# gives KEY's reason
compare() {
	local what=$1 key=$2 want=$3 have=$4
	if [ "$want" = "$have" ]; then
		tap_ok "$what"
	elif [ -n "${SVM_LINUX_DIFFERENCES[$key]:-}" ]; then
		tap_todo "$what" "${SVM_LINUX_DIFFERENCES[$key]}"
	else
		tap_not_ok "$what" "emu: '${want//$'\n'/; }'; kvm: '${have//$'\n'/; }'"
	fi
}
# words FILE NAME: the words of the "L2: NAME" lines after the first two
# (the count of CPUs that show them, the field name), one a line, sorted
words() {
	report "$2" "$1" | cut -d: -f2- | tr ' \t' '\n\n' | sed '/^$/d' | sort -u
}
for run in cpus1:emu:1 cpus2:emu:2 hyperv:emu-hyperv:2; do
	IFS=: read -r id ref cpus <<<"$run"
	out=$tmp/out/$id.out
	emu=$tmp/out/$ref.out
	grep -q '^L2: end' "$out" || continue
	what="linux on kvm with AMD-V, $cpus CPU$([ "$cpus" = 1 ] || echo s)"
	[ "$id" != hyperv ] || what="linux with --personality hyperv on kvm with AMD-V, $cpus CPUs"
	what+=", as on emu"
	if ! grep -q '^L2: end' "$emu" || [ "$(cat "$tmp/out/$ref.status")" != 0 ]; then
		tap_not_ok "$what (emu's boot here, the reference)" \
			"status $(cat "$tmp/out/$ref.status"); last lines: $(tail -n 3 "$emu" | tr '\r\n' '  ')"
		continue
	fi
	# the CPU: its identity, the kernel's FPU set-up, every CPU's flags
	# (each one that differs its own line)
	compare "$what: vendor, family, model, cache, address sizes" cpu \
		"$(report cpu "$emu" | sed "s/^[0-9]* //")" "$(report cpu "$out" | sed "s/^[0-9]* //")"
	compare "$what: the kernel's x86/fpu lines" fpu "$(report fpu "$emu")" "$(report fpu "$out")"
	v=$(report flags "$out" | cut -d' ' -f1)
	if [ "$v" = "$cpus" ]; then tap_ok "$what: every CPU shows the same flags"
	else tap_not_ok "$what: every CPU shows the same flags" "CPUs per distinct flags line: '${v//$'\n'/ }'"; fi
	nflags=0
	while read -r mark flag; do
		[ -n "$flag" ] || continue
		nflags=$((nflags + 1))
		if [ "$mark" = "<" ]; then
			compare "$what: flag $flag (emu has it, kvm not)" "flag/$flag" has lacks
		else
			compare "$what: flag $flag (kvm has it, emu not)" "flag/$flag" lacks has
		fi
	done < <(diff <(words "$emu" flags) <(words "$out" flags) | sed -n 's/^\([<>]\) /\1 /p')
	[ "$nflags" != 0 ] || tap_ok "$what: /proc/cpuinfo's flags ($(words "$out" flags | wc -l))"
	# what the kernel made of them
	while read -r name; do
		compare "$what: vulnerabilities/$name" "vulnerability/$name" \
			"$(report vulnerability "$emu" | sed -n "s/^$name //p")" \
			"$(report vulnerability "$out" | sed -n "s/^$name //p")"
	done < <({ report vulnerability "$emu"; report vulnerability "$out"; } | cut -d' ' -f1 | sort -u)
	if [ "$id" = hyperv ] && [ -z "$(report Hyper-V: "$out")" ]; then
		tap_not_ok "$what: the kernel's Hyper-V: lines" "none: the guest did not see Hyper-V"
	elif [ "$id" = hyperv ]; then
		compare "$what: the kernel's Hyper-V: lines (features, hints, host build, timer frequency)" hyperv \
			"$(report Hyper-V: "$emu")" "$(report Hyper-V: "$out")"
	fi
	compare "$what: the clocksource" clocksource "$(report clocksource "$emu")" "$(report clocksource "$out")"
	compare "$what: the clocksources on offer" clocksource \
		"$(report clocksources "$emu" | tr ' ' '\n' | sort)" "$(report clocksources "$out" | tr ' ' '\n' | sort)"
	compare "$what: the kernel's warnings (WARNING, BUG, Call Trace, segfault)" warning \
		"$(report warning "$emu")" "$(report warning "$out")"
done
tap_summary
