#!/usr/bin/env bash
# Snapshots of --personality hyperv VMs (the partition, SynIC, VMBus,
# storvsc, netvsc and the integration services; src/dev/hyperv/):
# - the Hyper-V test kernel (guest/tests/hyperv.c with hyperv.ticks=150: a
#   periodic synthetic timer's message on an auto-EOI SINT every 20 ms,
#   "hvtick N" each, the TSC page checked against the counter MSR) on emu
#   and on kvm (where this host has it): snapshot while it ticks, SIGKILL,
#   restore in a fresh process twice: the ticks go on from the next number
#   to 150 and hyperv.ticks passes; a snapshot with a damaged VMBus or
#   SynIC section (its checksum made right) is refused with one line and
#   status 10;
# - the stock kernel with a storvsc disk and a netvsc NIC on user-mode
#   networking, on emu: an ext4 file system on the disk with a file
#   written and synced, an httpd behind hostfwd, then a counting loop;
#   snapshot mid-loop, SIGKILL, restore: the loop ends with the right sum,
#   the counter going on from the snapshot; the file reads back, another
#   is written; the host reaches the httpd through hostfwd again; sleep
#   works and the hv stimer clockevent still fires; the time sync service
#   sets the guest's clock across the 8 s between snapshot and restore; no
#   hv_vmbus, storvsc or netvsc error in dmesg; the image is clean ext4
#   with both files.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/api.bash
. tests/lib/snapshot.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-400}
HVK=build/guest/hyperv.elf
IMG=build/guest-image-hvsnap
api_test_tmp
# the test kernel's checks passed, the TSC page and the counter MSR agreeing
SNAP_MUST=("PASS hyperv.ticks" "failed=0")

# damage FILE SECTION OFFSET VALUE: the u32 at OFFSET in the payload of
# device section SECTION (after its 16-byte name) set to VALUE, the
# trailer's checksum made right again
damage() {
	python3 - "$@" <<'EOF'
import struct, sys, zlib
path, name, off, val = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
b = bytearray(open(path, 'rb').read())
pos = 64
while pos < len(b) - 16:
    typ, inst, ln = struct.unpack_from('<IIQ', b, pos)
    if typ == 3 and b[pos + 16:pos + 32].rstrip(b'\0') == name:
        struct.pack_into('<I', b, pos + 32 + off, val)
        break
    pos += 16 + ((ln + 7) & ~7)
else:
    sys.exit(1)
struct.pack_into('<I', b, len(b) - 8, zlib.crc32(bytes(b[:len(b) - 8])) & 0xffffffff)
open(path, 'wb').write(b)
EOF
}

# refused NAME FILE WORD: accord restore FILE ends with status 10 and one
# line naming WORD
refused() {
	local rc
	timeout 60 "$ACCORD" restore "$2" --name "refused-$$" </dev/null >"$tmp/refused.log" 2>&1
	rc=$?
	[ $rc -eq 10 ] && [ "$(wc -l <"$tmp/refused.log")" -eq 1 ] && grep -q -- "$3" "$tmp/refused.log"
	result $? "$1: status 10, one line" "status $rc: $(head -c 300 "$tmp/refused.log")"
}

# hvk_round_trip ENGINE: the Hyper-V test kernel ticking, snapshotted,
# killed, restored twice
hvk_round_trip() {
	snap_round_trip "$1" "hvk-$1" hvtick 150 "the Hyper-V test kernel" \
		--kernel "$HVK" --personality hyperv --memory 64M --cmdline "hyperv.ticks=150"
}

if [ ! -f "$HVK" ]; then
	tap_not_ok "the Hyper-V test kernel" "$HVK missing (make guests)"
	tap_summary
	exit 1
fi
if hvk_round_trip emu; then
	# damaged sections: the first channel's target VP (the first u32
	# after relid, class, instance and two flags: byte 79 of vmbus's
	# state), vCPU 0's SINT2 (an unmasked exception vector)
	cp "$tmp/hvk-emu.snap" "$tmp/bad-vp.snap"
	damage "$tmp/bad-vp.snap" vmbus 79 7
	refused "a VMBus channel bound to a VP that does not exist" "$tmp/bad-vp.snap" "vmbus"
	cp "$tmp/hvk-emu.snap" "$tmp/bad-sint.snap"
	damage "$tmp/bad-sint.snap" hyperv $((72 + 24 + 2 * 8)) 5
	refused "an unmasked SINT on exception vector 5" "$tmp/bad-sint.snap" "SynIC"
	cp "$tmp/hvk-emu.snap" "$tmp/bad-util.snap"
	damage "$tmp/bad-util.snap" hv-util 0 2
	refused "integration services state of another version" "$tmp/bad-util.snap" "hv-util"
fi
hvk_round_trip kvm

# ---- the stock kernel: storvsc, netvsc, a counting loop ----
guest_image "snapshots of Linux on Hyper-V" "hv_vmbus hv_storvsc sd_mod hv_utils hv_netvsc" mke2fs
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
disk=$tmp/disk.img
truncate -s 64M "$disk"
N=300
SUM=$((N * (N - 1) / 2))
log=$tmp/linux.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel emu --personality hyperv --name lin \
	--disk path="$disk" --net "user,hostfwd=tcp:127.0.0.1:$port-:8080"
pids+=("$CONSOLE_PID")
guest_booted "Linux on Hyper-V with storvsc and netvsc boots to init"
sleep 1
console_check "an ext4 file system on the storvsc disk, a file written and synced" \
	'mkfs.ext4 -F -q /dev/sda && mkdir -p /mnt && mount -t ext4 /dev/sda /mnt && echo before-$((6*7)) >/mnt/before.txt && sync && echo M$((1+1))' \
	"^M2"
console_check "netvsc: DHCP from slirp, an httpd behind hostfwd" \
	'udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; mkdir -p /www && echo token-$((6*7)) >/www/t && httpd -p 8080 -h /www && echo N$((1+1)) $(ifconfig eth0 | grep -o "inet addr:[0-9.]*")' \
	"^N2 inet addr:10.0.2.15"
[ "$(curl -s -m 30 "http://127.0.0.1:$port/t")" = token-42 ]
result "the host reaches the guest's httpd through hostfwd"
loop_snapshot "the Hyper-V guest"
# a gap between snapshot and restore, which the guest's clock does not see
# until the time sync service sets it
sleep 8

rlog=$tmp/linux-r.log
console_start "$rlog" "$ACCORD" restore "$tmp/lin.snap" --name lin-r
pids+=("$CONSOLE_PID")
if console_wait "^done $SUM" 300; then
	tap_ok "restored: the loop ends with done $SUM"
else
	tap_not_ok "restored: the loop ends with done $SUM" "$(tail -n 5 "$rlog")"
fi
loop_continues "$rlog"
result $? "the counter goes on from where the snapshot was, one by one to $((N - 1))" "$(grep -m 3 '^count' "$rlog")"
console_check "storvsc: the file written before the snapshot reads back" \
	'echo R$((1+1)) $(cat /mnt/before.txt) R$((2+1))' "^R2 before-42 R3"
console_check "storvsc: a file written after the restore, synced, the file system unmounted" \
	'echo after-$((6*7)) >/mnt/after.txt && sync && umount /mnt && echo A$((1+1))' "^A2"
[ "$(curl -s -m 60 "http://127.0.0.1:$port/t")" = token-42 ]
result "netvsc: after the restore the host reaches the guest's httpd through hostfwd again"
console_check "the guest's clock and the hv stimer clockevent run: sleep 1 returns, stimer0 interrupts went up" \
	'a=$(awk "/HVS/ {print \$2}" /proc/interrupts); sleep 1; b=$(awk "/HVS/ {print \$2}" /proc/interrupts); echo T$((1+1)) $((b > a))' \
	"^T2 1"
console_send 'echo C$((1+1)) $(date +%s)'
if console_wait "^C2 [0-9]+" 60; then
	gdate=$(console_match '^C2 ([0-9]+)')
	hdate=$(date +%s)
	[ -n "$gdate" ] && [ "$gdate" -ge $((hdate - 3)) ] && [ "$gdate" -le $((hdate + 3)) ]
	result "time sync set the restored guest's clock across the 8 s gap (guest $gdate, host $hdate)"
else
	tap_not_ok "time sync set the restored guest's clock" "no date from the guest"
fi
console_check "no hv_vmbus, storvsc or netvsc error in dmesg" \
	'echo D$((1+1)) $(dmesg | grep -iE "vmbus|storvsc|netvsc|hv_" | grep -ciE "error|fail|timeout|timed out|reset")' "^D2 0"
"$ACCORD" stop lin-r >/dev/null 2>&1
console_finish 60
if command -v e2fsck >/dev/null && command -v debugfs >/dev/null; then
	e2fsck -fn "$disk" >"$tmp/fsck.log" 2>&1
	result $? "the image is clean ext4 (e2fsck -fn)" "$(tail -n 3 "$tmp/fsck.log")"
	[ "$(debugfs -R 'cat /before.txt' "$disk" 2>/dev/null)" = before-42 ] &&
		[ "$(debugfs -R 'cat /after.txt' "$disk" 2>/dev/null)" = after-42 ]
	result "the image holds the files written before the snapshot and after the restore"
else
	tap_skip "e2fsck and debugfs on the image" "e2fsprogs not installed"
fi

tap_summary
