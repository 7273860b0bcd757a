#!/usr/bin/env bash
# The stock Debian kernel on the kvm engine, with no command-line
# workarounds: it boots to the busybox shell, uname -r names the pinned
# kernel, it reads a pattern the host wrote on a virtio-blk disk (the
# virtio_pci and virtio_blk modules, MSI-X interrupts), and poweroff ends
# accord with status 0. On a host whose KVM emulates guest ring-0 code the
# instructions its emulator lacks (cmpxchg16b, int3, clac, ...) run on
# accord's interpreter, which runs on past each while the instructions need
# nothing of KVM's (the blake2s self-test's SSE stretch); with
# ACCORD_VERBOSE=1 the engine counts them and the hand-overs, and the
# counts are printed as a comment. IRQCHIP=user|split chooses --irqchip
# (default: accord's default for the host).
#
# Opt-in: on this project's build hosts (an emulated KVM) the boot takes
# about ten minutes, so `make test` does not run this script; where KVM runs
# at hardware speed, tests/kvm_engine.sh runs tests/boot_linux.sh on kvm.
# Without a usable /dev/kvm: one skip with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-1800}
IRQCHIP=${IRQCHIP:-}
IMG=build/guest-image-virtio
MIB=1048576
test_tmp

if ! err=$("$ACCORD" run --kernel /nonexistent --accel kvm 2>&1 </dev/null) &&
	[[ $err == "accord: --accel kvm: "* ]]; then
	tap_skip "linux on kvm" "no usable /dev/kvm: ${err#accord: --accel kvm: }"
	tap_summary
	exit 0
fi
guest_image "linux on kvm" "virtio_pci virtio_blk"
release=$(cat "$IMG/kernel.release")

# a random MiB at 8 MiB of a 16 MiB disk
disk=$tmp/disk.img
truncate -s 16M "$disk"
head -c $MIB /dev/urandom >"$tmp/pattern"
dd if="$tmp/pattern" of="$disk" bs=$MIB seek=8 conv=notrunc status=none
pattern_sum=$(sha256sum <"$tmp/pattern" | cut -d' ' -f1)

start=$(date +%s)
log=$tmp/guest.log
console_start "$log" env ACCORD_VERBOSE=1 "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel kvm --disk path="$disk" ${IRQCHIP:+--irqchip "$IRQCHIP"}
guest_booted "linux on kvm: boots to init with no command-line workarounds"
echo "# boot to init: $(($(date +%s) - start)) s"
sleep 1
console_check "linux on kvm: uname -r is $release" \
	'echo U$((1+1)) $(uname -r) U$((2+1))' "U2 $release U3" 300
console_check "linux on kvm: the guest reads the host's pattern from virtio-blk" \
	'echo B$((1+1)) $(dd if=/dev/vda bs=1048576 skip=8 count=1 2>/dev/null | sha256sum) B$((2+1))' \
	"B2 $pattern_sum - B3" 600
console_check "linux on kvm: the disk's MSI-X vectors interrupt the guest" \
	'echo I$((1+1)) $(awk "/virtio.*-req/ { n += \$2 } END { print n + 0 }" /proc/interrupts) I$((2+1))' \
	"I2 [1-9][0-9]* I3" 300
console_poweroff "linux on kvm: poweroff"
echo "# whole run: $(($(date +%s) - start)) s"
grep -h "instructions the host's KVM cannot emulate" "$log" | sed 's/^/# /'
tap_summary
