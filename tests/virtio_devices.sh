#!/usr/bin/env bash
# virtio-rng, two writable virtio disks and virtio-console in the stock
# kernel on accord, with a guest image that has the virtio_pci, virtio_blk,
# virtio-rng and virtio_console modules (tools/mkguest, its own output
# directory).
#
# Boot 1, --console virtio with console=hvc0, --rng and two --disk: init
# and the shell run on hvc0 and typed commands' output comes back through
# it, and so do kernel messages (printk's path to hvc0, not the tty's).
# The guest reads /dev/hwrng (the virtio_rng backend is current; two reads
# differ and are not zeros), sees vda and vdb with their own sizes, reads
# the pattern the host put on vdb, copies it to vda and writes a marker to
# vdb; poweroff ends accord with status 0 and the host checks both images.
# Boot 2, the same console: a panic (sysrq c) printed on hvc0 ends accord
# with status 2 and the panic line, as on the serial console.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
IMG=build/guest-image-virtio-devices
MIB=1048576
test_tmp

no_virtio_errors() {
	local log=$1 what=$2
	if grep -qiE "virtio.*(error|fail|reset)|I/O error|hwrng.*fail" "$log"; then
		tap_not_ok "$what: no virtio or I/O errors on the console" \
			"$(grep -iE 'virtio.*(error|fail|reset)|I/O error|hwrng.*fail' "$log" | head -n 3)"
	else
		tap_ok "$what: no virtio or I/O errors on the console"
	fi
}

guest_image "virtio devices in the guest" "virtio_pci virtio_blk virtio-rng virtio_console"

# command line errors need no guest
"$ACCORD" run --kernel "$IMG/vmlinuz" --accel "$ACCEL" --console hvc </dev/null >"$tmp/err.log" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err.log")" -eq 1 ] && grep -q -- "--console" "$tmp/err.log"; then
	tap_ok "--console with a bad value: one line, status 1"
else
	tap_not_ok "--console with a bad value" "status $rc: $(head -c 200 "$tmp/err.log")"
fi

# Ctrl-a x is the terminal's, whichever device the guest types into
console_start "$tmp/ctrla.log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=hvc0" --memory 256M --accel "$ACCEL" --console virtio
printf '\001x' >&"$CONSOLE_IN"
console_finish 60
if [ "$CONSOLE_STATUS" = 0 ] && grep -q "terminated from the console (Ctrl-a x)" "$tmp/ctrla.log"; then
	tap_ok "--console virtio: Ctrl-a x ends accord with status 0"
else
	tap_not_ok "--console virtio: Ctrl-a x" "status $CONSOLE_STATUS: $(tail -n 2 "$tmp/ctrla.log" | tr -d '\r')"
fi

# ---- boot 1: the shell on hvc0, rng and two disks ----
# vda 8 MiB, vdb 16 MiB with a random MiB at 4 MiB
vda=$tmp/vda.img
vdb=$tmp/vdb.img
truncate -s 8M "$vda"
truncate -s 16M "$vdb"
head -c $MIB /dev/urandom >"$tmp/pattern"
dd if="$tmp/pattern" of="$vdb" bs=$MIB seek=4 conv=notrunc status=none
pattern_sum=$(sha256sum <"$tmp/pattern" | cut -d' ' -f1)

log=$tmp/boot1.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=hvc0 panic=-1" --memory 256M --accel "$ACCEL" --console virtio \
	--rng --disk path="$vda" --disk path="$vdb"
if guest_boot_wait "console=hvc0: init reaches the virtio console"; then
	sleep 1
	console_check "a typed command's output comes back through hvc0" \
		'echo H$((1+1)) $(cat /sys/class/tty/console/active) $(readlink /proc/self/fd/0) H$((2+1))' \
		"H2 hvc0 /dev/hvc0 H3"
	console_check "a kernel message reaches the terminal through hvc0" \
		'echo "<2>accord-kmsg K$((1+1))" >/dev/kmsg' "\\] accord-kmsg K2"
	console_check "virtio_rng is the current hardware RNG" \
		'echo N$((1+1)) $(cat /sys/class/misc/hw_random/rng_current) N$((2+1))' \
		"N2 virtio_rng\\.[0-9]+ N3"
	console_check "/dev/hwrng gives 4096 bytes" \
		'echo S$((1+1)) $(head -c 4096 /dev/hwrng | wc -c) S$((2+1))' "S2 4096 S3"
	# two reads of 1 KiB: different from each other and from zeros
	console_check "two reads of /dev/hwrng differ and are not zeros" \
		'a=$(head -c 1024 /dev/hwrng | sha256sum); b=$(head -c 1024 /dev/hwrng | sha256sum); z=$(head -c 1024 /dev/zero | sha256sum); [ "$a" != "$b" ] && [ "$a" != "$z" ] && [ "$b" != "$z" ] && echo R$((1+1))random' \
		"^R2random"
	console_check "the guest sees vda (8 MiB) and vdb (16 MiB), both writable" \
		'echo D$((1+1)) $(cat /sys/block/vda/size) $(cat /sys/block/vdb/size) $(cat /sys/block/vda/ro) $(cat /sys/block/vdb/ro) D$((2+1))' \
		"D2 16384 32768 0 0 D3"
	console_check "vdb at 4 MiB holds the host's pattern" \
		'echo P$((1+1)) $(dd if=/dev/vdb bs=1M skip=4 count=1 2>/dev/null | sha256sum) P$((2+1))' \
		"P2 $pattern_sum - P3"
	console_check "copy vdb to vda at 2 MiB, a marker on vdb at 8 MiB, with fsync" \
		'dd if=/dev/vdb of=/dev/vda bs=1M skip=4 seek=2 count=1 conv=fsync 2>/dev/null && echo accord-vdb-marker | dd of=/dev/vdb bs=512 seek=16384 conv=fsync 2>/dev/null && echo C$((1+1))' \
		"^C2"
	console_poweroff "poweroff on hvc0"
	no_virtio_errors "$log" "boot 1"
	copy_sum=$(dd if="$vda" bs=$MIB skip=2 count=1 status=none | sha256sum | cut -d' ' -f1)
	if [ "$copy_sum" = "$pattern_sum" ]; then
		tap_ok "the copy is in vda's image at 2 MiB"
	else
		tap_not_ok "the copy is in vda's image at 2 MiB" "sha256 $copy_sum"
	fi
	marker=$(dd if="$vdb" bs=512 skip=16384 count=1 status=none | tr -d '\0')
	if [ "$marker" = accord-vdb-marker ]; then
		tap_ok "the marker is in vdb's image at 8 MiB"
	else
		tap_not_ok "the marker is in vdb's image at 8 MiB" "read '$marker'"
	fi
fi

# ---- boot 2: a panic on hvc0 ----
log=$tmp/boot2.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=hvc0 panic=-1" --memory 256M --accel "$ACCEL" --console virtio
if guest_boot_wait "a panic on hvc0: the guest boots"; then
	sleep 1
	console_send 'echo c >/proc/sysrq-trigger'
	console_finish 120
	if [ "$CONSOLE_STATUS" = 2 ] && grep -q "accord: guest panic: Kernel panic - not syncing" "$log"; then
		tap_ok "a panic printed on hvc0 ends accord with status 2 and the panic line"
	else
		tap_not_ok "a panic printed on hvc0 ends accord with status 2" "status $CONSOLE_STATUS"
		console_tail
	fi
fi
tap_summary
