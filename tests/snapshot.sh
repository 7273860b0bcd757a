#!/usr/bin/env bash
# Snapshots (src/vm/snapshot.c, accord snapshot / accord restore):
# - the ticker test kernel (guest/api/ticker.c, "tick N" every 20 ms of PM
#   timer) on emu with two vCPUs and on kvm (where this host has it),
#   with accord's LAPIC (--irqchip user) and with KVM's (--irqchip split,
#   two vCPUs: KVM's LAPIC and run state in the vCPU records):
#   snapshot while it ticks, SIGKILL, restore in a fresh process: the ticks
#   go on from the next number to the end; a second restore of the same
#   file does the same;
# - files that are not good snapshots (truncated, a flipped bit, another
#   format version, another magic, empty, missing) are refused with one
#   line and status 10; the API's
#   PUT /vm/snapshot with a path (sandbox off), with the sandbox on (409)
#   and with bad bodies (400);
# - the stock kernel with a virtio-blk disk (tools/mkguest) on emu: the
#   guest writes the disk, then runs a loop printing a counter; snapshot
#   mid-loop, SIGKILL; the refused restores leave the disk image as it
#   was (hash); the restored guest prints the counter on from where the
#   snapshot was and the right sum, reads what it wrote before and writes
#   more; the host finds both on the image; a second restore, the same;
# - the stock kernel with virtio-net on user-mode networking: an httpd in
#   the guest behind hostfwd answers the host before the snapshot and,
#   with the backend made again, after the restore.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/api.bash
. tests/lib/snapshot.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
TICKER=build/api-guest/ticker.elf
IMG=build/guest-image-virtio
api_test_tmp
SNAP_MUST=("PASS ticker.ticks")

# ticker_round_trip ACCEL CPUS [IRQCHIP]: snapshot a ticking VM, kill it,
# restore twice; the snapshot was written whole, under its name
ticker_round_trip() {
	local accel=$1 cpus=$2 irqchip=${3:-} name=tick-$1${3:+-$3}
	snap_round_trip "$accel" "$name" tick 200 "the ticker ($cpus vCPUs${irqchip:+, irqchip $irqchip})" \
		--kernel "$TICKER" --cpus "$cpus" --memory 64M --cmdline "ticker.count=200" \
		${irqchip:+--irqchip "$irqchip"} || return
	[ -s "$tmp/$name.snap" ] && [ ! -e "$tmp/$name.snap.tmp" ]
	result "$accel: the snapshot file is in place, no .tmp left"
}

# command lines: one line, status 1
usage_err() {
	local what=$1 rc
	shift
	"$@" </dev/null >"$tmp/usage.log" 2>&1
	rc=$?
	[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/usage.log")" -eq 1 ] && grep -q "usage" "$tmp/usage.log"
	result $? "$what: one line, status 1" "status $rc: $(head -c 300 "$tmp/usage.log")"
}
usage_err "accord restore without a file" "$ACCORD" restore
usage_err "accord restore with two files" "$ACCORD" restore "$tmp/a" "$tmp/b"
usage_err "accord snapshot without a file" "$ACCORD" snapshot vm
usage_err "accord snapshot with a stray argument" "$ACCORD" snapshot vm "$tmp/f" --later

if [ ! -f "$TICKER" ]; then
	tap_not_ok "ticker guest" "$TICKER missing (make tests)"
	tap_summary
	exit 1
fi

ticker_round_trip emu 2
ticker_round_trip kvm 1 user
if "$ACCORD" run --accel kvm --irqchip split --kernel /nonexistent 2>&1 | grep -q "irqchip split:"; then
	tap_skip "kvm: snapshot and restore with --irqchip split" "$("$ACCORD" run --accel kvm --irqchip split --kernel /nonexistent 2>&1 | head -n 1)"
else
	ticker_round_trip kvm 2 split
fi

# ---- files that are not snapshots of this accord ----
snap=$tmp/tick-emu.snap
# refused VAR FILE REGEX: restore FILE fails with status 10 and one line
refused() {
	local what=$1 file=$2 regex=$3 rc
	"$ACCORD" restore "$file" --name "bad" </dev/null >"$tmp/bad.log" 2>&1
	rc=$?
	[ "$rc" -eq 10 ] && [ "$(wc -l <"$tmp/bad.log")" -eq 1 ] && grep -qE "$regex" "$tmp/bad.log"
	result $? "$what: refused in one line, status 10" "status $rc: $(head -c 300 "$tmp/bad.log")"
}
# flipped FILE COPY OFFSET MASK: COPY is FILE with the byte at OFFSET
# XORed with MASK
flipped() {
	cp "$1" "$2"
	python3 -c "
import sys
f = open(sys.argv[1], 'r+b'); at = int(sys.argv[2]); f.seek(at); b = f.read(1); f.seek(at)
f.write(bytes([b[0] ^ int(sys.argv[3])]))" "$2" "$3" "$4"
}
# patched FILE COPY OFFSET TEXT: COPY is FILE with TEXT (a printf format)
# written at OFFSET
patched() {
	cp "$1" "$2"
	# shellcheck disable=SC2059 # the text is a format, for its escapes
	printf "$4" | dd of="$2" bs=1 seek="$3" conv=notrunc status=none
}
if [ -s "$snap" ]; then
	size=$(stat -c %s "$snap")
	head -c $((size / 2)) "$snap" >"$tmp/trunc.snap"
	refused "a snapshot cut in half" "$tmp/trunc.snap" "truncated"
	head -c $((size - 3)) "$snap" >"$tmp/trunc3.snap"
	refused "a snapshot 3 bytes short" "$tmp/trunc3.snap" "truncated|damaged"
	flipped "$snap" "$tmp/flip.snap" $((size / 3)) 16
	refused "a snapshot with one bit flipped" "$tmp/flip.snap" "checksum"
	patched "$snap" "$tmp/version.snap" 8 '\x09'
	refused "a snapshot of format version 9" "$tmp/version.snap" "version 9"
	# the same file as version 1 wrote it: vCPU records without the
	# LAPIC fields of version 2 (5204 bytes of cpu_state), new checksum
	python3 - "$snap" "$tmp/v1.snap" <<'EOF'
import struct, sys, zlib
d = open(sys.argv[1], 'rb').read()
out, off, end = bytearray(d[:64]), 64, len(d) - 16
struct.pack_into('<I', out, 8, 1)
while off < end:
    t, i, n = struct.unpack_from('<IIQ', d, off)
    p = d[off + 16:off + 16 + n]
    if t == 2:
        p = p[:8 + 5204]
    out += struct.pack('<IIQ', t, i, len(p)) + p + bytes(-len(p) % 8)
    off += 16 + n + (-n % 8)
size = len(out) + 16
out += struct.pack('<Q', size)
out += struct.pack('<II', zlib.crc32(bytes(out)), 0x444e4553)
open(sys.argv[2], 'wb').write(out)
EOF
	timeout 120 "$ACCORD" restore "$tmp/v1.snap" --name v1 </dev/null >"$tmp/v1.log" 2>&1
	first=$(ticks_continue tick "$tmp/tick-emu.log" "$tmp/v1.log" 200 "${SNAP_MUST[@]}")
	result $? "a version 1 file (vCPU records without the LAPIC fields) restores: the ticks go on from $first" \
		"$(head -n 3 "$tmp/v1.log")"
	patched "$snap" "$tmp/magic.snap" 0 'XCCSNAP'
	refused "a file with another magic" "$tmp/magic.snap" "not an accord snapshot"
	: >"$tmp/empty.snap"
	refused "an empty file" "$tmp/empty.snap" "not an accord snapshot"
	refused "a missing file" "$tmp/none.snap" "No such file"
else
	tap_not_ok "a snapshot to damage" "the emu round trip left none"
fi

"$ACCORD" snapshot nosuchvm "$tmp/x.snap" >"$tmp/novm.log" 2>&1
rc=$?
[ $rc -eq 6 ] && [ ! -e "$tmp/x.snap" ] && [ ! -e "$tmp/x.snap.tmp" ]
result $? "accord snapshot of no such VM: status 6, no file left" "status $rc: $(cat "$tmp/novm.log")"

# ---- the API: PUT /vm/snapshot ----
api() {
	curl -s -o "$tmp/api.body" -w '%{http_code}' --unix-socket "$SOCKDIR/$1.sock" -X PUT \
		-H 'Content-Type: application/json' --data "$2" http://localhost/vm/snapshot
}
"$ACCORD" run --kernel "$TICKER" --accel emu --memory 64M --name sb-on --cmdline "ticker.count=100000" \
	</dev/null >"$tmp/sb-on.log" 2>&1 &
pid=$!
pids+=("$pid")
wait_for 60 ticks_at_least tick "$tmp/sb-on.log" 2
code=$(api sb-on "{\"path\": \"$tmp/api-on.snap\"}")
[ "$code" = 409 ] && grep -q "sandbox" "$tmp/api.body" && [ ! -e "$tmp/api-on.snap" ]
result $? "API: PUT /vm/snapshot with a path under the sandbox: 409, no file" "$code $(cat "$tmp/api.body")"
code=$(api sb-on '{"path": 1}')
[ "$code" = 400 ]
result $? "API: a path that is not a string: 400" "$code $(cat "$tmp/api.body")"
code=$(api sb-on '{"file": "x"}')
[ "$code" = 400 ] && grep -q "unknown field" "$tmp/api.body"
result $? "API: an unknown field: 400" "$code $(cat "$tmp/api.body")"
code=$(api sb-on '')
[ "$code" = 400 ]
result $? "API: no body: 400" "$code $(cat "$tmp/api.body")"
kill -9 "$pid"
wait "$pid" 2>/dev/null

"$ACCORD" run --kernel "$TICKER" --accel emu --memory 64M --name sb-off --sandbox off \
	--cmdline "ticker.count=300" --debug-exit </dev/null >"$tmp/sb-off.log" 2>&1 &
pid=$!
pids+=("$pid")
wait_for 60 ticks_at_least tick "$tmp/sb-off.log" 20
code=$(api sb-off "{\"path\": \"$tmp/api-off.snap\", \"stop\": true}")
[ "$code" = 200 ] && grep -q '"bytes"' "$tmp/api.body" && [ -s "$tmp/api-off.snap" ] && [ ! -e "$tmp/api-off.snap.tmp" ]
result $? "API: PUT /vm/snapshot {path, stop} with --sandbox off: 200, the file" "$code $(cat "$tmp/api.body")"
wait_for 30 eval "! kill -0 $pid 2>/dev/null"
wait "$pid"
rc=$?
[ $rc -eq 0 ]
result "API: \"stop\": true ends the VM after the snapshot (status 0)" "status $rc"
timeout 120 "$ACCORD" restore "$tmp/api-off.snap" --name sb-off-r --sandbox off </dev/null >"$tmp/sb-off.r.log" 2>&1 &
pid=$!
pids+=("$pid")
# the restored VM is snapshotted in turn: its configuration came from the file
wait_for 60 ticks_at_least tick "$tmp/sb-off.r.log" 30
"$ACCORD" snapshot sb-off-r "$tmp/chain.snap" >"$tmp/chain.snap.log" 2>&1
result $? "a restored VM can be snapshotted again" "$(cat "$tmp/chain.snap.log")"
wait "$pid"
first=$(ticks_continue tick "$tmp/sb-off.log" "$tmp/sb-off.r.log" 300 "${SNAP_MUST[@]}")
result $? "API: the snapshot restores, the ticks go on from $first to 300" "$(tail -n 3 "$tmp/sb-off.r.log")"
timeout 120 "$ACCORD" restore "$tmp/chain.snap" --name chain-r </dev/null >"$tmp/chain.r.log" 2>&1
first=$(ticks_continue tick "$tmp/sb-off.r.log" "$tmp/chain.r.log" 300 "${SNAP_MUST[@]}")
result $? "the snapshot of the restored VM restores: the ticks go on from $first to 300" "$(tail -n 3 "$tmp/chain.r.log")"

# ---- the stock kernel with a disk, a counting loop ----
guest_image "snapshots of Linux" "virtio_pci virtio_blk" "mke2fs"
disk=$tmp/disk.img
truncate -s 16M "$disk"
N=300
SUM=$((N * (N - 1) / 2))
log=$tmp/linux.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel emu --name lin --disk path="$disk"
pids+=("$CONSOLE_PID")
guest_booted "Linux with a virtio disk boots to init"
sleep 1
console_check "the guest writes its disk before the snapshot" \
	'printf before-snapshot | dd of=/dev/vda bs=512 seek=8 conv=fsync 2>/dev/null; echo W$((1+1))' "^W2"
loop_snapshot "Linux"
disk_sum=$(sha256sum <"$disk")

# refused restores touch nothing: the disk image stays as it was
lsize=$(stat -c %s "$tmp/lin.snap")
head -c $((lsize - 4096)) "$tmp/lin.snap" >"$tmp/lin-trunc.snap"
refused "Linux: a truncated snapshot" "$tmp/lin-trunc.snap" "truncated"
flipped "$tmp/lin.snap" "$tmp/lin-flip.snap" $((lsize / 2)) 1
refused "Linux: a bit flipped" "$tmp/lin-flip.snap" "checksum"
patched "$tmp/lin.snap" "$tmp/lin-version.snap" 8 '\x07'
refused "Linux: format version 7" "$tmp/lin-version.snap" "version 7"
patched "$tmp/lin.snap" "$tmp/lin-magic.snap" 0 'NOTSNAP'
refused "Linux: another magic" "$tmp/lin-magic.snap" "not an accord snapshot"
# a disk of another size than the snapshot's: the machine is made, the
# disk opened read-only by nothing, then refused
mv "$disk" "$tmp/disk.real"
truncate -s 8M "$disk"
small_sum=$(sha256sum <"$disk")
refused "Linux: the disk is not the snapshot's (another size)" "$tmp/lin.snap" "sectors"
[ "$(sha256sum <"$disk")" = "$small_sum" ]
result "the other disk is untouched"
mv "$tmp/disk.real" "$disk"
[ "$(sha256sum <"$disk")" = "$disk_sum" ]
result "the refused restores left the disk image as it was (sha256)"

# linux_restore TAG: restore, check the count goes on and the disk
linux_restore() {
	local tag=$1 rlog=$tmp/linux-$1.log
	console_start "$rlog" "$ACCORD" restore "$tmp/lin.snap" --name "lin-$tag"
	pids+=("$CONSOLE_PID")
	if ! console_wait "^done $SUM" 300; then
		tap_not_ok "$tag: the restored loop ends with done $SUM" "$(tail -n 5 "$rlog")"
		kill -9 "$CONSOLE_PID"
		console_finish 5
		return
	fi
	tap_ok "$tag: the restored loop ends with done $SUM"
	loop_continues "$rlog"
	result $? "$tag: the counter goes on from where the snapshot was, one by one to $((N - 1))" \
		"$(grep -m 3 '^count' "$rlog")"
	console_check "$tag: the guest reads what it wrote before the snapshot" \
		'echo R$((1+1)) $(dd if=/dev/vda bs=512 skip=8 count=1 2>/dev/null | head -c 15) R$((2+1))' \
		"^R2 before-snapshot R3"
	console_check "$tag: and writes its disk after the restore" \
		'printf after-restore | dd of=/dev/vda bs=512 seek=16 conv=fsync 2>/dev/null; echo A$((1+1))' "^A2"
	"$ACCORD" stop "lin-$tag" >/dev/null 2>&1
	console_finish 60
	[ "$(dd if="$disk" bs=512 skip=8 count=1 status=none | head -c 15)" = before-snapshot ] &&
		[ "$(dd if="$disk" bs=512 skip=16 count=1 status=none | head -c 13)" = after-restore ]
	result "$tag: the image holds what the guest wrote before and after the snapshot"
}
linux_restore first
linux_restore second

# ---- virtio-net on user-mode networking: the backend is made again ----
IMG=build/guest-image-net
guest_image "snapshots of Linux with virtio-net" "virtio_pci virtio_net"
nlog=$tmp/net.log
net_guest_start net "$nlog"
console_check "net: DHCP from slirp, and an httpd behind hostfwd" \
	'udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; mkdir -p /www && echo token-$((6*7)) >/www/t && httpd -p 8080 -h /www && echo N$((1+1)) $(ifconfig eth0 | grep -o "inet addr:[0-9.]*")' \
	"^N2 inet addr:10.0.2.15"
[ "$(curl -s -m 30 "http://127.0.0.1:$port/t")" = token-42 ]
result "net: the host reaches the guest's httpd through hostfwd"
"$ACCORD" snapshot net "$tmp/net.snap" >"$tmp/net.snap.log" 2>&1
result $? "net: accord snapshot" "$(cat "$tmp/net.snap.log")"
kill -9 "$CONSOLE_PID"
console_finish 5
console_start "$nlog.r" "$ACCORD" restore "$tmp/net.snap" --name net-r
pids+=("$CONSOLE_PID")
console_check "net: the restored guest answers on its console" 'echo Z$((1+1))' "^Z2" 60
[ "$(curl -s -m 60 "http://127.0.0.1:$port/t")" = token-42 ]
result "net: after the restore, hostfwd listens again and the guest's httpd answers through it"
"$ACCORD" stop net-r >/dev/null 2>&1
console_finish 60

tap_summary
