#!/usr/bin/env bash
# VMBus in the stock kernel on accord: --personality hyperv, a guest image
# with hv_vmbus, hv_storvsc, sd_mod and hv_utils and the host's mke2fs
# (tools/mkguest, GUEST_TOOLS, its own output directory), a 64 MiB raw
# image and a 4 MiB read-only one, both attached with --disk as VMBus SCSI
# disks (storvsc). Through the serial console the guest lists the VMBus
# channels, finds its two disks and nothing else, reads a pattern the host
# wrote, copies it elsewhere on the disk, makes an ext4 file system with
# mkfs.ext4, mounts it as ext4 and writes files into it, and fails to
# write the read-only disk; the heartbeat channel ticks. Then SIGTERM to
# accord asks the guest to shut down through the shutdown integration
# service, and it powers off. The host checks the bytes, e2fsck -fn, that
# debugfs sees ext4 (has_journal, extent) and reads the files back.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/vmbus-classes.bash
. tests/lib/disk.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-400}
IMG=build/guest-image-hyperv
MIB=1048576
test_tmp

guest_image "storvsc in the guest" "hv_vmbus hv_storvsc sd_mod hv_utils" mke2fs

"$ACCORD" run --kernel "$IMG/vmlinuz" --accel "$ACCEL" --personality hyperv --disk path="$tmp/missing.img" \
	</dev/null >"$tmp/err.log" 2>&1
rc=$?
if [ "$rc" -eq 3 ] && [ "$(wc -l <"$tmp/err.log")" -eq 1 ] && grep -q "missing.img" "$tmp/err.log"; then
	tap_ok "--personality hyperv --disk with a missing file: one line, status 3"
else
	tap_not_ok "--personality hyperv --disk with a missing file" "status $rc: $(head -c 200 "$tmp/err.log")"
fi

# the disks: a random MiB at 40 MiB for the guest to read and copy to 48 MiB
disk=$tmp/disk.img
rodisk=$tmp/ro.img
truncate -s 64M "$disk"
head -c $MIB /dev/urandom >"$tmp/pattern"
dd if="$tmp/pattern" of="$disk" bs=$MIB seek=40 conv=notrunc status=none
pattern_sum=$(sha256sum <"$tmp/pattern" | cut -d' ' -f1)
head -c $((4 * MIB)) /dev/urandom >"$rodisk"
ro_sum_before=$(sha256sum <"$rodisk" | cut -d' ' -f1)

log=$tmp/guest.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel "$ACCEL" --personality hyperv \
	--disk path="$disk" --disk path="$rodisk",ro --api-socket "$tmp/api.sock"
guest_booted "Hyper-V guest with two storvsc disks boots to init"
sleep 1
if grep -q "hv_vmbus: Vmbus version:5.3" <(tr -d '\r' <"$log"); then
	tap_ok "hv_vmbus connects at VMBus protocol 5.3"
else
	tap_not_ok "hv_vmbus connects at VMBus protocol 5.3" "$(grep -a hv_vmbus "$log" | head -n 3)"
fi
console_check "/sys/bus/vmbus/devices: shutdown, heartbeat, time sync, KVP and two SCSI channels" \
	'echo V$((1+1)) $(cat /sys/bus/vmbus/devices/*/class_id | sort | uniq -c) V$((2+1))' \
	"V2 1 \{$SHUTDOWN_CLASS\} 1 \{$HEARTBEAT_CLASS\} 1 \{$TIMESYNC_CLASS\} 1 \{$KVP_CLASS\} 2 \{$SCSI_CLASS\} V3"
if grep -q "Heartbeat IC version 3.0" <(tr -d '\r' <"$log") && grep -q "Shutdown IC version 3.0" <(tr -d '\r' <"$log"); then
	tap_ok "hv_utils negotiates heartbeat and shutdown at IC version 3.0"
else
	tap_not_ok "hv_utils negotiates heartbeat and shutdown" "$(grep -a "IC version" "$log" | head -n 3)"
fi
console_send 'for d in /sys/bus/vmbus/devices/*; do grep -q 57164f39 $d/class_id && HB=$d; done; A=$(cat $HB/channels/*/interrupts); sleep 3; echo H$((1+1)) $(( $(cat $HB/channels/*/interrupts) > A ))'
if console_wait "^H2 1" 60; then
	tap_ok "the heartbeat channel keeps interrupting the guest"
else
	tap_not_ok "the heartbeat channel keeps interrupting the guest" "$(tr -d '\r' <"$log" | grep -a '^H2' | tail -n 1)"
fi
# which sd is which: the 64 MiB disk is rw, the 4 MiB one ro
console_send 'for d in /sys/block/sd*; do [ "$(cat $d/size)" = 131072 ] && RW=${d##*/}; [ "$(cat $d/size)" = 8192 ] && RO=${d##*/}; done; echo N$((1+1)) $(ls /sys/class/scsi_disk | wc -l) $RW $RO'
if console_wait "^N2 2 sd[a-z] sd[a-z]" 60; then
	tap_ok "the guest finds exactly two SCSI disks: 64 MiB and 4 MiB"
else
	tap_not_ok "the guest finds exactly two SCSI disks" "$(tr -d '\r' <"$log" | grep -a '^N2' | tail -n 1)"
	console_tail
fi
console_check "the 4 MiB disk is read-only, the 64 MiB one writable" \
	'echo R$((1+1)) $(cat /sys/block/$RW/ro) $(cat /sys/block/$RO/ro) R$((2+1))' "R2 0 1 R3"
console_check "the writable disk has its write cache on (so the guest sends SYNCHRONIZE CACHE)" \
	'echo C$((1+1)) $(cat /sys/block/$RW/device/scsi_disk/*/cache_type) C$((2+1))' "C2 write back C3"
console_check "reading 1 MiB at 40 MiB gives the host's pattern" \
	'echo P$((1+1)) $(dd if=/dev/$RW bs=1M skip=40 count=1 2>/dev/null | sha256sum) P$((2+1))' \
	"P2 $pattern_sum - P3"
console_check "copying it to 48 MiB with conv=fsync succeeds" \
	'dd if=/dev/$RW of=/dev/$RW bs=1M skip=40 seek=48 count=1 conv=fsync 2>/dev/null && echo K$((1+1))' \
	"^K2"
console_check "mkfs.ext4 on the first 16 MiB" \
	'mkfs.ext4 -F -q /dev/$RW 16M && echo M$((1+1))' "^M2"
console_check "mount, write two files, umount" \
	'mkdir -p /mnt && mount -t ext4 /dev/$RW /mnt && echo hello-hyperv >/mnt/hello.txt && mkdir /mnt/dir && dd if=/dev/$RW of=/mnt/dir/blob bs=1M skip=40 count=1 2>/dev/null && umount /mnt && sync && echo F$((1+1))' \
	"^F2"
console_check "writing the read-only disk fails" \
	'dd if=/dev/zero of=/dev/$RO bs=512 count=1 conv=fsync 2>/dev/null; echo W$((1+1))rc$?' \
	"^W2rc[1-9]"
# the storvsc disks' counters in GET /vm/counters: the guest read and
# wrote the first disk (the copy was synced), and only read the second
curl -s --max-time 10 --unix-socket "$tmp/api.sock" http://localhost/vm/counters >"$tmp/counters.json"
c=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["disks"]
rw, ro = d[0], d[1]
print(rw["bus"], rw["reads"] > 0, rw["writes"] > 0, rw["flushes"] > 0, rw["read_bytes"] >= 1 << 20,
      rw["write_bytes"] >= 1 << 20, rw["io_errors"], ro["bus"], ro["reads"] > 0, ro["writes"], ro["write_bytes"])
' "$tmp/counters.json" 2>&1)
if [ "$c" = "vmbus True True True True True 0 vmbus True 0 0" ]; then
	tap_ok "GET /vm/counters: storvsc reads, writes, flushes and bytes per disk; none written on the read-only one"
else
	tap_not_ok "GET /vm/counters for storvsc disks" "$c: $(head -c 400 "$tmp/counters.json")"
fi
# the initramfs's /init is a shell, not an init that handles the signal
# /sbin/poweroff sends; the kernel's orderly_poweroff runs poweroff_cmd
console_send 'echo "/sbin/poweroff -f" >/proc/sys/kernel/poweroff_cmd; echo S$((1+1))'
console_wait "^S2" 30
kill -TERM "$CONSOLE_PID"
console_finish 120
if [ "$CONSOLE_STATUS" = 0 ] && grep -aq "Shutdown request received" "$log"; then
	tap_ok "SIGTERM: the guest shuts down through hv_utils, accord ends with status 0"
else
	tap_not_ok "SIGTERM: the guest shuts down through hv_utils" "accord exit status $CONSOLE_STATUS"
	console_tail
fi
bad='storvsc.*(error|status|fail)|I/O error|hv_vmbus.*(fail|error|refused)|hv_utils.*(invalid|error|fail)|accord: vmbus'
if grep -aqiE "$bad" "$log"; then
	tap_not_ok "no storvsc, VMBus, hv_utils or I/O errors on the console" "$(grep -aiE "$bad" "$log" | head -n 3)"
else
	tap_ok "no storvsc, VMBus, hv_utils or I/O errors on the console"
fi

# the host's view of the images
disk_check_image "$disk" "$pattern_sum" hello-hyperv "$tmp"
if [ "$(sha256sum <"$rodisk" | cut -d' ' -f1)" = "$ro_sum_before" ]; then
	tap_ok "the read-only image is unchanged"
else
	tap_not_ok "the read-only image is unchanged"
fi
tap_summary
