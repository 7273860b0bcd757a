#!/usr/bin/env bash
# virtio-blk in the stock kernel on accord: a guest image with the
# virtio_pci and virtio_blk modules and the host's mke2fs (tools/mkguest,
# GUEST_TOOLS, its own output directory), a 64 MiB raw image and a
# read-only one. Through the serial console the guest reads a pattern the
# host wrote, copies it elsewhere on the disk, makes an ext4 file system
# with mkfs.ext4, mounts it as ext4 and writes files into it, discards a
# range, and fails to write the read-only disk. After power-off the host
# checks the bytes, e2fsck -fn, that debugfs sees ext4 (has_journal,
# extent) and reads the files back.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/disk.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
IMG=build/guest-image-virtio
MIB=1048576
test_tmp

guest_image "virtio-blk in the guest" "virtio_pci virtio_blk" "mke2fs"

# command line errors need no guest
"$ACCORD" run --kernel "$IMG/vmlinuz" --accel "$ACCEL" --disk path="$tmp/missing.img" </dev/null >"$tmp/err.log" 2>&1
rc=$?
if [ "$rc" -eq 3 ] && [ "$(wc -l <"$tmp/err.log")" -eq 1 ] && grep -q "missing.img" "$tmp/err.log"; then
	tap_ok "--disk with a missing file: one line, status 3"
else
	tap_not_ok "--disk with a missing file" "status $rc: $(head -c 200 "$tmp/err.log")"
fi
"$ACCORD" run --kernel "$IMG/vmlinuz" --accel "$ACCEL" --disk file="$tmp/x" </dev/null >"$tmp/err.log" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err.log")" -eq 1 ]; then
	tap_ok "--disk with a bad option: one line, status 1"
else
	tap_not_ok "--disk with a bad option" "status $rc: $(head -c 200 "$tmp/err.log")"
fi

# the disks: a random MiB at 40 MiB for the guest to read and copy to
# 48 MiB; a non-zero MiB at 56 MiB for it to discard
disk=$tmp/disk.img
rodisk=$tmp/ro.img
truncate -s 64M "$disk"
head -c $MIB /dev/urandom >"$tmp/pattern"
dd if="$tmp/pattern" of="$disk" bs=$MIB seek=40 conv=notrunc status=none
tr '\0' '\132' </dev/zero | head -c $MIB | dd of="$disk" bs=$MIB seek=56 conv=notrunc status=none
pattern_sum=$(sha256sum <"$tmp/pattern" | cut -d' ' -f1)
head -c $((4 * MIB)) /dev/urandom >"$rodisk"
ro_sum_before=$(sha256sum <"$rodisk" | cut -d' ' -f1)

log=$tmp/guest.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel "$ACCEL" \
	--disk path="$disk" --disk path="$rodisk",ro
guest_booted "guest with two virtio disks boots to init"
sleep 1
console_check "the guest sees vda (64 MiB) and vdb (read-only)" \
	'echo D$((1+1)) $(cat /sys/block/vda/size) $(cat /sys/block/vdb/ro) D$((2+1))' \
	"D2 131072 1 D3"
console_check "MSI-X: a configuration vector and a queue vector that fired" \
	'echo I$((1+1)) $(grep -c -e virtio0-config -e virtio0-req.0 /proc/interrupts) $(awk '"'"'/virtio0-req/ { print ($2 > 0) }'"'"' /proc/interrupts) I$((2+1))' \
	"I2 2 1 I3"
console_check "reading 1 MiB at 40 MiB gives the host's pattern" \
	'echo P$((1+1)) $(dd if=/dev/vda bs=1M skip=40 count=1 2>/dev/null | sha256sum) P$((2+1))' \
	"P2 $pattern_sum - P3"
console_check "copying it to 48 MiB with conv=fsync succeeds" \
	'dd if=/dev/vda of=/dev/vda bs=1M skip=40 seek=48 count=1 conv=fsync 2>/dev/null && echo C$((1+1))' \
	"^C2"
console_check "mkfs.ext4 on the first 16 MiB" \
	'mkfs.ext4 -F -q /dev/vda 16M && echo M$((1+1))' "^M2"
console_check "mount, write two files, umount" \
	'mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo hello-accord >/mnt/hello.txt && mkdir /mnt/dir && dd if=/dev/vda of=/mnt/dir/blob bs=1M skip=40 count=1 2>/dev/null && umount /mnt && sync && echo F$((1+1))' \
	"^F2"
has_discard=0
console_send 'command -v blkdiscard >/dev/null && echo B$((1+1))yes || echo B$((1+1))no'
if console_wait "^B2(yes|no)" 30 && grep -q "^B2yes" <(tr -d '\r' <"$log"); then
	has_discard=1
	console_check "blkdiscard of 1 MiB at 56 MiB" \
		'blkdiscard -o 58720256 -l 1048576 /dev/vda && echo X$((1+1))' "^X2"
else
	tap_skip "blkdiscard of 1 MiB at 56 MiB" "busybox has no blkdiscard"
fi
console_check "writing the read-only disk fails" \
	'dd if=/dev/zero of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null; echo W$((1+1))rc$?' \
	"^W2rc[1-9]"
console_poweroff "poweroff"
if grep -qiE "virtio.*(error|fail|reset)|I/O error" "$log"; then
	tap_not_ok "no virtio or I/O errors on the console" "$(grep -iE 'virtio.*(error|fail|reset)|I/O error' "$log" | head -n 3)"
else
	tap_ok "no virtio or I/O errors on the console"
fi

# the host's view of the images
disk_check_image "$disk" "$pattern_sum" hello-accord "$tmp"
if [ "$has_discard" = 1 ]; then
	zero_sum=$(head -c $MIB /dev/zero | sha256sum | cut -d' ' -f1)
	got=$(dd if="$disk" bs=$MIB skip=56 count=1 status=none | sha256sum | cut -d' ' -f1)
	# discard may keep the data when the host file system cannot punch
	# holes; on the usual ones it reads back as zeros
	if [ "$got" = "$zero_sum" ]; then
		tap_ok "the discarded range reads back as zeros on the host"
	else
		tap_skip "the discarded range reads back as zeros" "the host file system kept the data"
	fi
fi
if [ "$(sha256sum <"$rodisk" | cut -d' ' -f1)" = "$ro_sum_before" ]; then
	tap_ok "the read-only image is unchanged"
else
	tap_not_ok "the read-only image is unchanged"
fi
tap_summary
