#!/usr/bin/env bash
# netvsc in the stock kernel on accord, one boot: --personality hyperv, a
# guest image with hv_vmbus and hv_netvsc (tools/mkguest, its own output
# directory) and one --net user NIC with a port forward and its own MAC,
# which the guest finds on VMBus as a synthetic NIC.
#  - hv_netvsc binds the NIC with the mac= address (its driver link and
#    the VMBus class id), NVSP and RNDIS set up without errors.
#  - udhcpc gets 10.0.2.15; wget fetches a random token and a random MiB
#    from a python3 http.server on the host's loopback (10.0.2.2), checked
#    by sha256; curl on the host fetches a token and a random MiB that the
#    guest's busybox httpd serves through hostfwd.
#  - the NIC's receive and transmit counters moved, and so did the
#    NIC's in the control API (GET /vm/counters); no netvsc errors.
#  - as root with /dev/net/tun, a second netvsc NIC on a TAP interface:
#    the guest pings the host's side, curl on the host reaches the guest's
#    httpd over it.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-400}
IMG=build/guest-image-hvnet
MAC=52:41:43:aa:cc:01
MAC_TAP=52:41:43:aa:cc:02
NIC_CLASS=f8615163-df3e-46c5-913f-f2d2f965ed0e
http_pid=
tap_if=
cleanup() {
	[ -z "$http_pid" ] || kill "$http_pid" 2>/dev/null
	[ -z "$tap_if" ] || ip link del "$tap_if" 2>/dev/null
}
test_tmp cleanup

guest_image "netvsc in the guest" "hv_vmbus hv_netvsc"

# the host's web server on loopback: a token and a random MiB
host_www_start

# a TAP interface for the second NIC, when this host allows one
host_tap_create "hvtap$$" 172.31 "$MAC_TAP"

log=$tmp/guest.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel "$ACCEL" --personality hyperv \
	--net "user,hostfwd=tcp:127.0.0.1:$fwd_port-:8080,mac=$MAC" "${tap_args[@]}" --api-socket "$tmp/api.sock"
guest_booted "guest with netvsc boots to init"
sleep 1
# the NICs by their MAC addresses: hv_netvsc may probe the channels in
# any order, so eth0 is not necessarily the first --net
console_check "the NIC with the mac= address is bound to hv_netvsc" \
	'U=$(grep -l '"$MAC"' /sys/class/net/*/address | cut -d/ -f5); echo N$((1+1)) $U $(basename $(readlink /sys/class/net/$U/device/driver)) N$((2+1))' \
	"N2 eth[0-9] hv_netvsc N3"
console_check "its device is the VMBus synthetic NIC class" \
	'echo C$((1+1)) $(cat /sys/class/net/$U/device/class_id) C$((2+1))' "C2 \\{$NIC_CLASS\\} C3"
console_check "udhcpc on it gets 10.0.2.15 from slirp" \
	'udhcpc -i $U -q -n -t 5 -T 3 >/dev/null 2>&1; echo D$((1+1)) $(ifconfig $U | grep -o "inet addr:[0-9.]*") D$((2+1))' \
	"D2 inet addr:10.0.2.15 D3"
console_check "the link is up (RNDIS media connect status)" \
	'echo L$((1+1)) $(cat /sys/class/net/$U/carrier) L$((2+1))' "L2 1 L3"
if [ -n "$http_port" ]; then
	guest_wget_checks
else
	tap_not_ok "the host's http.server started" "$(head -c 200 "$tmp/http.log")"
fi

# the guest serves; the host fetches through the forward
guest_httpd_start
host_fetch_token "hostfwd: curl on the host gets the guest's token" "http://127.0.0.1:$fwd_port/token"
host_fetch_blob "hostfwd: the guest's random MiB arrives byte-exact" "http://127.0.0.1:$fwd_port/blob"
console_check "its counters: over a MiB each way, no errors or drops" \
	'cd /sys/class/net/$U/statistics && echo K$((1+1)) $(($(cat rx_bytes) > 1048576)) $(($(cat tx_bytes) > 1048576)) $(cat rx_errors tx_errors tx_dropped) K$((2+1)); cd /' \
	"K2 1 1 0 0 0 K3"
if [ ${#tap_args[@]} -gt 0 ]; then
	console_check "tap: the second NIC (its mac= address) is bound to hv_netvsc" \
		'T=$(grep -l '"$MAC_TAP"' /sys/class/net/*/address | cut -d/ -f5); echo M$((1+1)) $T $(basename $(readlink /sys/class/net/$T/device/driver)) M$((2+1))' \
		"M2 eth[0-9] hv_netvsc M3"
	console_check "tap: the guest pings the host's side of $tap_if" \
		"ifconfig \$T $guest_ip netmask 255.255.255.0 up && ping -c 3 -W 5 $host_ip >/tmp/ping.log 2>&1; echo P\$((1+1)) \$(grep -o '[0-9]* packets received' /tmp/ping.log) P\$((2+1))" \
		"P2 [1-9] packets received P3"
	host_fetch_token "tap: curl on the host gets the guest's token over $tap_if" "http://$guest_ip:8080/token"
else
	tap_skip "tap: the guest reaches the host over a TAP interface" "$tap_why"
fi

code=$(curl -s -o "$tmp/counters" -w '%{http_code}' --max-time 20 --unix-socket "$tmp/api.sock" http://accord/vm/counters)
if [ "$code" = 200 ] && python3 -c '
import json, sys
n = json.load(open(sys.argv[1]))["nics"]
ok = len(n) >= 1 and all(x["bus"] == "vmbus" for x in n) and n[0]["rx_bytes"] > 1048576 and n[0]["tx_bytes"] > 1048576 \
	and n[0]["tx_dropped"] == 0 and n[0]["guest_errors"] == 0 and n[0]["control"] > 5
sys.exit(0 if ok else 1)' "$tmp/counters"; then
	tap_ok "GET /vm/counters: the netvsc NIC moved over a MiB each way, no guest errors"
else
	tap_not_ok "GET /vm/counters: the netvsc NIC's counters" "HTTP $code: $(head -c 300 "$tmp/counters")"
fi

console_poweroff "poweroff"
bad='hv_netvsc.*(error|fail|invalid|unable|too small|unknown)|netvsc.*(fail|error)|NETDEV WATCHDOG|transmit queue .* timed out|accord: (vmbus|netvsc)'
if grep -qiE "$bad" "$log"; then
	tap_not_ok "no netvsc or VMBus errors on the console" "$(grep -iE "$bad" "$log" | head -n 3)"
else
	tap_ok "no netvsc or VMBus errors on the console"
fi
tap_summary
