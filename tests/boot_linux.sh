#!/usr/bin/env bash
# Boots the default guest (stock Debian kernel + busybox initramfs, from
# tools/mkguest) on accord and talks to its shell over the serial console:
# kernel release, CPU count, a checksum computed in the guest against the
# host's, and a clean power-off with exit status 0. Then the same with
# --cpus 2, and a boot that fails must show the guest's last lines.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-240}
IMG=build/guest-image
test_tmp

guest_image_default "boot linux"
release=$(cat "$IMG/kernel.release")
# the host's checksum of the busybox binary the initramfs carries
mkdir -p "$tmp/initrd"
(cd "$tmp/initrd" && zcat "$OLDPWD/$IMG/initrd.cpio.gz" | cpio -id --quiet bin/busybox 2>/dev/null)
host_sum=$(sha256sum "$tmp/initrd/bin/busybox" | cut -d' ' -f1)

boot_and_check() {
	local label=$1 cpus=$2
	local log=$tmp/$label.log
	console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
		--cmdline "console=ttyS0 panic=-1" --memory 512M --cpus "$cpus" --accel "$ACCEL"
	guest_boot_wait "$label: boots to init" || return
	sleep 1
	console_send 'echo U$((1+1)) $(uname -r) U$((2+1))'
	if console_wait "U2 $release U3" 60; then
		tap_ok "$label: uname -r is $release"
	else
		tap_not_ok "$label: uname -r" "no 'U2 $release U3' line"
		console_tail
	fi
	console_send 'echo N$((1+1)) $(nproc) $(grep -c ^processor /proc/cpuinfo) N$((2+1))'
	if console_wait "N2 $cpus $cpus N3" 60; then
		tap_ok "$label: guest sees $cpus CPUs (nproc, /proc/cpuinfo)"
	else
		tap_not_ok "$label: guest CPU count" "expected $cpus"
		console_tail
	fi
	console_send 'echo S$((1+1)) $(sha256sum /bin/busybox) S$((2+1))'
	if console_wait "S2 $host_sum /bin/busybox S3" 120; then
		tap_ok "$label: sha256sum in the guest matches the host"
	else
		tap_not_ok "$label: sha256sum in the guest" "expected $host_sum"
		console_tail
	fi
	console_poweroff "$label: poweroff"
}

boot_and_check "1 cpu" 1
boot_and_check "2 cpus" 2

# Ctrl-a x on the console ends accord at once, with status 0
log=$tmp/quit.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1 quiet" --memory 256M --accel "$ACCEL"
if console_wait "accord-guest: init ready" "$BOOT_TIMEOUT"; then
	printf '\001x' >&"$CONSOLE_IN"
	console_finish 30
	if [ "$CONSOLE_STATUS" = 0 ] && grep -q "terminated from the console" "$log"; then
		tap_ok "Ctrl-a x quits with status 0"
	else
		tap_not_ok "Ctrl-a x quits" "status $CONSOLE_STATUS"
		console_tail
	fi
else
	tap_not_ok "Ctrl-a x quits" "the guest did not reach init"
	console_finish 1
fi

# A kernel that cannot find its root and has nothing to run panics: accord
# must end with the panic status and print the guest's last lines.
log=$tmp/panic.log
timeout 300 "$ACCORD" run --kernel "$IMG/vmlinuz" --cmdline "console=ttyS0 panic=-1" \
	--memory 256M --accel "$ACCEL" </dev/null >"$log" 2>&1
rc=$?
if [ "$rc" -eq 2 ] && grep -q "accord: guest panic: Kernel panic - not syncing" "$log" &&
	grep -q "accord: last guest console lines:" "$log"; then
	tap_ok "a guest panic ends accord with status 2, says why and shows the last lines"
else
	tap_not_ok "a guest panic ends accord with status 2" "status $rc"
	tail -n 10 "$log" | sed 's/^/#   /'
fi
tap_summary
