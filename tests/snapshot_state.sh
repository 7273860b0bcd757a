#!/usr/bin/env bash
# What a snapshot keeps besides memory, vCPUs and device registers:
# - the run state: the ticker test kernel paused (accord pause) and
#   snapshotted comes back paused (GET /vm, accord ls) and prints no tick
#   until accord resume, then goes on from the next tick; accord restore
#   --state running / paused overrides the file's state; a bad --state is
#   one line and status 1;
# - virtio-net's control-queue state: the stock kernel changes its MAC with
#   `ip link set dev eth0 address`, is snapshotted, killed and restored;
#   the restored NIC shows the new MAC (GET /vm/config), its receive filter
#   is the guest's (the host reaches the guest's httpd through hostfwd, also
#   after the guest programs its filter again, which a device that lost the
#   MAC would answer by dropping every frame to it); GET /vm/counters has
#   the NIC's counters, which go on from the snapshot's;
# - the guest's wall clock: restored after a gap of GAP seconds, Linux's
#   time of day is behind by at least that gap (it goes on from the VM
#   clock), while the CMOS RTC reads the host's time, so `hwclock -s` in
#   the guest puts the clock right.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/api.bash
. tests/lib/snapshot.bash

TICKER=build/api-guest/ticker.elf
IMG=build/guest-image-net
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
GAP=${GAP:-8}
api_test_tmp

# 0 while the console log is not there yet
ticks() { cat "$1" 2>/dev/null | grep -c '^tick '; }
# A pause can cut a tick line: the snapshot holds the guest mid-line and
# the restored run prints the line's rest. Only whole lines count before
# the snapshot, and the cut part opens the restored run's log.
whole_lines() { if [ -n "$(tail -c 1 "$1")" ]; then head -n -1 "$1"; else cat "$1"; fi; }
cut_line() { if [ -n "$(tail -c 1 "$1")" ]; then tail -n 1 "$1"; fi; }
last_tick() { whole_lines "$1" | grep '^tick ' | tail -n 1 | tr -dc '0-9'; }
# $1 the cut line, $2 the restored run's log
first_tick() { { printf '%s' "$1"; cat "$2"; } | grep '^tick ' | head -n 1 | tr -dc '0-9'; }
more_ticks_than() { [ "$(ticks "$1")" -gt "$2" ]; }
vm_state() {
	[ "$(api "$SOCKDIR/$1.sock" GET /vm)" = 200 ] && jq_ 'd["state"]'
}
state_is() { [ "$(vm_state "$1")" = "$2" ]; }

if [ ! -f "$TICKER" ]; then
	tap_not_ok "ticker guest" "$TICKER missing (make tests)"
	tap_summary
	exit 1
fi

# ---- the run state ----
"$ACCORD" run --kernel "$TICKER" --accel emu --memory 64M --name sp --cmdline "ticker.count=1000000" \
	</dev/null >"$tmp/sp.log" 2>&1 &
pid=$!
pids+=("$pid")
wait_for 60 more_ticks_than "$tmp/sp.log" 10
"$ACCORD" pause sp >"$tmp/err" 2>&1
last=$(last_tick "$tmp/sp.log")
cut=$(cut_line "$tmp/sp.log")
"$ACCORD" snapshot sp "$tmp/paused.snap" >>"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 0 ] && [ -s "$tmp/paused.snap" ] && state_is sp paused; result "a paused VM snapshotted: the file, and the VM still paused"
sleep 0.5
WHY="last tick $last, now $(last_tick "$tmp/sp.log")"
[ "$(last_tick "$tmp/sp.log")" = "$last" ]; result "the paused VM printed nothing during the snapshot"
kill -9 "$pid"
wait "$pid" 2>/dev/null
flags=$(python3 -c 'import struct,sys; print(struct.unpack_from("<I", open(sys.argv[1], "rb").read(64), 36)[0])' "$tmp/paused.snap")
WHY="header flags $flags"
[ "$flags" = 1 ]; result "the snapshot's header records the paused state (flags 1)"

"$ACCORD" restore "$tmp/paused.snap" --name sp-r </dev/null >"$tmp/sp-r.log" 2>&1 &
pid=$!
pids+=("$pid")
wait_for 60 test -S "$SOCKDIR/sp-r.sock"
WHY="state '$(vm_state sp-r)'"
state_is sp-r paused; result "restored: GET /vm says paused"
"$ACCORD" ls >"$tmp/ls" 2>&1
WHY="$(cat "$tmp/ls")"
grep -qE '^sp-r +[0-9]+ +paused ' "$tmp/ls"; result "accord ls lists it paused"
# two seconds of a ticker that ticks every 20 ms: paused, it prints nothing
sleep 2
WHY="$(ticks "$tmp/sp-r.log") ticks: $(head -n 3 "$tmp/sp-r.log")"
[ "$(ticks "$tmp/sp-r.log")" = 0 ] && ! gone "$pid"; result "the restored guest's counter does not advance while paused"
"$ACCORD" resume sp-r >"$tmp/err" 2>&1
WHY="$(cat "$tmp/err")"
wait_for 60 more_ticks_than "$tmp/sp-r.log" 5 && state_is sp-r running; result "accord resume: it runs (GET /vm running)"
WHY="last before the snapshot $last, first after the resume $(first_tick "$cut" "$tmp/sp-r.log")"
[ "$(first_tick "$cut" "$tmp/sp-r.log")" = $((last + 1)) ]; result "the counter goes on from the next tick"
"$ACCORD" stop sp-r >/dev/null 2>&1
wait_for 30 gone "$pid"

"$ACCORD" restore "$tmp/paused.snap" --name sp-run --state running </dev/null >"$tmp/sp-run.log" 2>&1 &
pid=$!
pids+=("$pid")
WHY="$(tail -n 2 "$tmp/sp-run.log")"
wait_for 60 more_ticks_than "$tmp/sp-run.log" 5 && state_is sp-run running; result "--state running: the paused snapshot restored running, no resume needed"
WHY="last before the snapshot $last, first $(first_tick "$cut" "$tmp/sp-run.log")"
[ "$(first_tick "$cut" "$tmp/sp-run.log")" = $((last + 1)) ]; result "--state running: from the next tick"
# a snapshot of the running VM, restored paused
"$ACCORD" snapshot sp-run "$tmp/running.snap" --stop >"$tmp/err" 2>&1
WHY="$(cat "$tmp/err")"
wait_for 30 gone "$pid"; result "a running VM snapshotted with --stop"
last=$(last_tick "$tmp/sp-run.log")
cut=$(cut_line "$tmp/sp-run.log")
"$ACCORD" restore "$tmp/running.snap" --name sp-p --state paused </dev/null >"$tmp/sp-p.log" 2>&1 &
pid=$!
pids+=("$pid")
wait_for 60 test -S "$SOCKDIR/sp-p.sock"
sleep 1
WHY="state '$(vm_state sp-p)', $(ticks "$tmp/sp-p.log") ticks"
state_is sp-p paused && [ "$(ticks "$tmp/sp-p.log")" = 0 ]; result "--state paused: the running snapshot restored paused, no tick"
"$ACCORD" resume sp-p >/dev/null 2>&1
WHY="last $last, first $(first_tick "$cut" "$tmp/sp-p.log")"
wait_for 60 more_ticks_than "$tmp/sp-p.log" 2 && [ "$(first_tick "$cut" "$tmp/sp-p.log")" = $((last + 1)) ]; result "--state paused: resumed, from the next tick"
"$ACCORD" stop sp-p >/dev/null 2>&1
wait_for 30 gone "$pid"
"$ACCORD" restore "$tmp/paused.snap" --state frozen </dev/null >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "expected saved, running or paused" "$tmp/err"; result "--state frozen: one line, status 1"

# ---- Linux: virtio-net's MAC and filter, and the clock ----
guest_image "snapshots of Linux with virtio-net" "virtio_pci virtio_net"
NEWMAC=52:54:00:12:34:99
log=$tmp/net.log
net_guest_start sn "$log"
console_check "DHCP, an httpd, then the MAC changed with ip link (and slirp told by an ARP request)" \
	"udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; mkdir -p /www && echo token-\$((6*7)) >/www/t && httpd -p 8080 -h /www && ip link set dev eth0 address $NEWMAC && arping -c 1 -w 10 -I eth0 10.0.2.2 >/dev/null; echo M\$((1+1)) \$(cat /sys/class/net/eth0/address) \$(ifconfig eth0 | grep -o 'inet addr:[0-9.]*')" \
	"^M2 $NEWMAC inet addr:10.0.2.15" 120
WHY="$(curl -s -m 30 "http://127.0.0.1:$port/t" 2>&1)"
[ "$WHY" = token-42 ]; result "the host reaches the guest's httpd at its new MAC through hostfwd"
# the NIC's counters so far (DHCP, the httpd's answer, the MAC change):
# they go on in the restored VM
api "$SOCKDIR/sn.sock" GET /vm/counters >/dev/null
before_ctrl=$(jq_ 'd["nics"][0]["control_ok"]')
before_tx=$(jq_ 'd["nics"][0]["tx_frames"]')
"$ACCORD" snapshot sn "$tmp/net.snap" >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 0 ]; result "accord snapshot"
kill -9 "$CONSOLE_PID"
console_finish 5
snap_done=$(date +%s)
# the gap the guest's time of day will lag by
sleep "$GAP"
console_start "$log.r" "$ACCORD" restore "$tmp/net.snap" --name sn-r
pids+=("$CONSOLE_PID")
t1=$(date +%s)
console_check "the restored guest answers on its console" 'echo C$((1+1)) $(date +%s) C$((2+1))' "^C2 [0-9]+ C3" 60
t2=$(date +%s)
guest_before=$(console_match '^C2 ([0-9]+) C3')
# the counters before the guest used the NIC again
api "$SOCKDIR/sn-r.sock" GET /vm/counters >/dev/null
restored_ctrl=$(jq_ 'd["nics"][0]["control_ok"]')
restored_tx=$(jq_ 'd["nics"][0]["tx_frames"]')
code=$(api "$SOCKDIR/sn-r.sock" GET /vm/config)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] && [ "$(jq_ 'd["nics"][0]["mac"]')" = "$NEWMAC" ]; result "restored: GET /vm/config shows the MAC the guest set"
WHY="$(curl -s -m 30 "http://127.0.0.1:$port/t" 2>&1)"
[ "$WHY" = token-42 ]; result "restored: the host reaches the guest's httpd through hostfwd (the backend made again)"
# the guest programs its receive filter again (PROMISC, ALLMULTI, the MAC
# tables) without sending its address: the device must still hold it
console_check "the guest programs its receive filter again (promisc on, off)" \
	'ip link set dev eth0 promisc on && ip link set dev eth0 promisc off; echo P$((1+1))' "^P2"
sleep 1
WHY="$(curl -s -m 20 "http://127.0.0.1:$port/t" 2>&1)"
[ "$WHY" = token-42 ]; result "restored: frames to the new MAC still come in after that (the filter holds the guest's MAC)"
console_check "the guest renews its DHCP lease with the new MAC" \
	'udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; echo D$((1+1)) $?' "^D2 0" 120
code=$(api "$SOCKDIR/sn-r.sock" GET /vm/counters)
WHY="$code $(cat "$tmp/body"); control_ok, tx_frames before the snapshot: ${before_ctrl:-none}, ${before_tx:-none}; at the restore: ${restored_ctrl:-none}, ${restored_tx:-none}"
[ "$code" = 200 ] && [ -n "$before_ctrl" ] && [ -n "$before_tx" ] && [ "$before_tx" -gt 0 ] &&
	[ -n "$restored_ctrl" ] && [ -n "$restored_tx" ] &&
	[ "$restored_ctrl" -ge "$before_ctrl" ] && [ "$restored_tx" -ge "$before_tx" ] &&
	[ "$(jq_ 'sorted(k for k in d["nics"][0] if k not in ("id", "bus"))')" = "['control_failed', 'control_ok', 'rx_bytes', 'rx_dropped', 'rx_filtered', 'rx_frames', 'tx_bad_offload', 'tx_bytes', 'tx_dropped', 'tx_frames', 'tx_segments']" ] &&
	[ "$(jq_ "d['nics'][0]['control_ok'] >= $restored_ctrl + 2 and d['nics'][0]['rx_frames'] > 0 and d['nics'][0]['tx_frames'] > $restored_tx")" = True ]; result "GET /vm/counters: the virtio NIC's counters go on from the snapshot's, the control commands and frames since the restore added"

# the clock: Linux's time of day goes on from the snapshot's, the RTC has
# the host's
WHY="guest $guest_before, host $t2, snapshot done at $snap_done, gap ${GAP}s"
[ -n "$guest_before" ] && [ "$guest_before" -le $((t2 - GAP + 1)) ]; result "the restored guest's time of day lags the host's by the gap (${GAP}s or more)"
t1=$(date +%s)
console_check "hwclock -s in the guest sets the clock from the RTC" 'hwclock -s -u; echo H$((1+1)) $(date +%s) H$((2+1))' "^H2 [0-9]+ H3"
t2=$(date +%s)
guest_after=$(console_match '^H2 ([0-9]+) H3')
WHY="guest $guest_after, host between $t1 and $t2"
[ -n "$guest_after" ] && [ "$guest_after" -ge $((t1 - 1)) ] && [ "$guest_after" -le $((t2 + 1)) ]; result "after hwclock -s the guest's time is the host's: the RTC kept real time across the restore"
"$ACCORD" stop sn-r >/dev/null 2>&1
console_finish 60

tap_summary
