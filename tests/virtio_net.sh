#!/usr/bin/env bash
# virtio-net in the stock kernel on accord, one boot: a guest image with
# virtio_pci and virtio_net (tools/mkguest, its own output directory), a
# NIC on user networking (libslirp) with a port forward and its own MAC,
# and, as root with /dev/net/tun, a second NIC on a TAP interface.
#  - user: udhcpc gets 10.0.2.15; wget fetches a random token and a random
#    MiB from a python3 http.server on the host's loopback (10.0.2.2),
#    checked byte for byte; curl on the host fetches a token and a MiB the
#    guest's busybox httpd serves through hostfwd.
#  - tap: the guest pings the host's side of the interface, and curl on
#    the host fetches the token from the guest's httpd over it.
# Command line errors (bad syntax, a forward on a busy port) need no guest.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash
. tests/lib/console.bash

ACCORD=${ACCORD:-build/accord}
ACCEL=${ACCEL:-emu}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
IMG=build/guest-image-net
MAC_USER=52:41:43:aa:bb:01
MAC_TAP=52:41:43:aa:bb:02
tmp=$(mktemp -d)
http_pid=
tap_if=
cleanup() {
	[ -z "$http_pid" ] || kill "$http_pid" 2>/dev/null
	[ -z "$tap_if" ] || ip link del "$tap_if" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

MKGUEST_OUT=$PWD/$IMG GUEST_MODULES="virtio_pci virtio_net" tools/mkguest >"$tmp/mkguest.log" 2>&1
if [ ! -f "$IMG/vmlinuz" ] || [ ! -f "$IMG/initrd.cpio.gz" ]; then
	tap_skip "virtio-net in the guest" "no guest image (tools/mkguest failed: $(tail -n 1 "$tmp/mkguest.log"))"
	tap_summary
	exit 0
fi

# the host's web server on loopback: a token and a random MiB
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$tmp/www"
printf '%s' "$token" >"$tmp/www/token"
head -c 1048576 /dev/urandom >"$tmp/www/blob"
token_sum=$(sha256sum <"$tmp/www/token" | cut -d' ' -f1)
blob_sum=$(sha256sum <"$tmp/www/blob" | cut -d' ' -f1)
(cd "$tmp/www" && exec python3 -u -m http.server 0 --bind 127.0.0.1) >"$tmp/http.log" 2>&1 &
http_pid=$!
http_port=
for _ in $(seq 50); do
	http_port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$tmp/http.log" | head -n 1)
	[ -n "$http_port" ] && break
	sleep 0.2
done
fwd_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# command line errors
"$ACCORD" run --kernel "$IMG/vmlinuz" --accel "$ACCEL" --net user,hostfwd=tcp::80 </dev/null >"$tmp/err.log" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err.log")" -eq 1 ] && grep -q "hostfwd" "$tmp/err.log"; then
	tap_ok "--net with a malformed hostfwd: one line, status 1"
else
	tap_not_ok "--net with a malformed hostfwd" "status $rc: $(head -c 200 "$tmp/err.log")"
fi
"$ACCORD" run --kernel "$IMG/vmlinuz" --accel "$ACCEL" --net user,mac=01:00:00:00:00:01 </dev/null >"$tmp/err.log" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && [ "$(wc -l <"$tmp/err.log")" -eq 1 ]; then
	tap_ok "--net with a multicast mac: one line, status 1"
else
	tap_not_ok "--net with a multicast mac" "status $rc: $(head -c 200 "$tmp/err.log")"
fi
if [ -n "$http_port" ]; then
	"$ACCORD" run --kernel "$IMG/vmlinuz" --accel "$ACCEL" --net user,hostfwd=tcp:127.0.0.1:"$http_port"-:80 \
		</dev/null >"$tmp/err.log" 2>&1
	rc=$?
	if [ "$rc" -eq 8 ] && [ "$(wc -l <"$tmp/err.log")" -eq 1 ] && grep -q "$http_port" "$tmp/err.log"; then
		tap_ok "--net with a forward from a busy port: one line, status 8"
	else
		tap_not_ok "--net with a forward from a busy port" "status $rc: $(head -c 200 "$tmp/err.log")"
	fi
else
	tap_not_ok "the host's http.server started" "$(head -c 200 "$tmp/http.log")"
fi

"$ACCORD" run --kernel "$IMG/vmlinuz" --accel "$ACCEL" --net tap=lo </dev/null >"$tmp/err.log" 2>&1
rc=$?
if [ "$rc" -eq 8 ] && [ "$(grep -vc "^accord: --accel" "$tmp/err.log")" -eq 1 ] && grep -q "tap=lo" "$tmp/err.log"; then
	tap_ok "--net tap=lo (no TAP interface): one line, status 8"
else
	tap_not_ok "--net tap=lo (no TAP interface)" "status $rc: $(head -c 200 "$tmp/err.log")"
fi

# a TAP interface for the second NIC, when this host allows one
tap_args=()
tap_why=
if [ "$(id -u)" -ne 0 ]; then
	tap_why="not root"
elif [ ! -c /dev/net/tun ]; then
	tap_why="/dev/net/tun is unavailable"
elif ! command -v ip >/dev/null; then
	tap_why="no ip command (iproute2)"
else
	tap_if=actap$$
	net3=$((RANDOM % 200 + 20))
	host_ip=172.30.$net3.1
	guest_ip=172.30.$net3.2
	if ip tuntap add dev "$tap_if" mode tap 2>"$tmp/tap.log" &&
		ip addr add "$host_ip/24" dev "$tap_if" 2>>"$tmp/tap.log" &&
		ip link set "$tap_if" up 2>>"$tmp/tap.log"; then
		tap_args=(--net "tap=$tap_if,mac=$MAC_TAP")
	else
		tap_why="cannot create a TAP interface: $(head -n 1 "$tmp/tap.log")"
		ip link del "$tap_if" 2>/dev/null
		tap_if=
	fi
fi

log=$tmp/guest.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel "$ACCEL" \
	--net "user,hostfwd=tcp:127.0.0.1:$fwd_port-:8080,mac=$MAC_USER" "${tap_args[@]}"
if ! console_wait "accord-guest: init ready" "$BOOT_TIMEOUT"; then
	tap_not_ok "guest with virtio-net boots to init" "no 'init ready' within ${BOOT_TIMEOUT}s"
	console_tail 25
	console_finish 1
	tap_summary
	exit 0
fi
tap_ok "guest with virtio-net boots to init"
sleep 1
console_check "eth0 carries the mac= address" \
	'echo A$((1+1)) $(cat /sys/class/net/eth0/address) A$((2+1))' "A2 $MAC_USER A3"
console_check "udhcpc on eth0 gets 10.0.2.15 from slirp" \
	'udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; echo D$((1+1)) $(ifconfig eth0 | grep -o "inet addr:[0-9.]*") D$((2+1))' \
	"D2 inet addr:10.0.2.15 D3"
if [ -n "$http_port" ]; then
	console_check "wget from the host's loopback via 10.0.2.2: the token, byte-exact" \
		"echo T\$((1+1)) \$(wget -q -O - http://10.0.2.2:$http_port/token | sha256sum) T\$((2+1))" \
		"T2 $token_sum - T3"
	console_check "wget of a random MiB from the host, byte-exact" \
		"echo B\$((1+1)) \$(wget -q -O - http://10.0.2.2:$http_port/blob | sha256sum) B\$((2+1))" \
		"B2 $blob_sum - B3" 300
fi
console_check "receive interrupts arrive on eth0's MSI-X queue vector" \
	'echo I$((1+1)) $(awk '"'"'/virtio0-input.0/ { print ($2 > 0) }'"'"' /proc/interrupts) I$((2+1))' \
	"I2 1 I3"

# the guest serves; the host fetches through the forward
token2=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
console_check "busybox httpd serves a token and a random MiB in the guest" \
	"mkdir -p /www && printf %s $token2 >/www/token && dd if=/dev/urandom of=/www/blob bs=1024 count=1024 2>/dev/null && httpd -p 8080 -h /www && echo S\$((1+1)) \$(sha256sum </www/blob) S\$((2+1))" \
	"S2 [0-9a-f]{64} - S3"
guest_blob_sum=$(tr -d '\r' <"$log" | sed -n 's/^S2 \([0-9a-f]\{64\}\) - S3$/\1/p' | tail -n 1)
got=$(curl -s --max-time 60 "http://127.0.0.1:$fwd_port/token")
if [ "$got" = "$token2" ]; then
	tap_ok "hostfwd: curl on the host gets the guest's token"
else
	tap_not_ok "hostfwd: curl on the host gets the guest's token" "got '$(printf %s "$got" | head -c 80)'"
fi
got=$(curl -s --max-time 300 "http://127.0.0.1:$fwd_port/blob" | sha256sum | cut -d' ' -f1)
if [ -n "$guest_blob_sum" ] && [ "$got" = "$guest_blob_sum" ]; then
	tap_ok "hostfwd: the guest's random MiB arrives byte-exact"
else
	tap_not_ok "hostfwd: the guest's random MiB arrives byte-exact" "host $got, guest '$guest_blob_sum'"
fi

if [ ${#tap_args[@]} -gt 0 ]; then
	console_check "tap: eth1 carries its mac= address" \
		'echo M$((1+1)) $(cat /sys/class/net/eth1/address) M$((2+1))' "M2 $MAC_TAP M3"
	console_check "tap: the guest pings the host's side of $tap_if" \
		"ifconfig eth1 $guest_ip netmask 255.255.255.0 up && ping -c 3 -W 5 $host_ip >/tmp/ping.log 2>&1; echo P\$((1+1)) \$(grep -o '[0-9]* packets received' /tmp/ping.log) P\$((2+1))" \
		"P2 [1-9] packets received P3"
	got=$(curl -s --max-time 60 "http://$guest_ip:8080/token")
	if [ "$got" = "$token2" ]; then
		tap_ok "tap: curl on the host gets the guest's token over $tap_if"
	else
		tap_not_ok "tap: curl on the host gets the guest's token over $tap_if" "got '$(printf %s "$got" | head -c 80)'"
	fi
	# the interface vanishes under a running guest: one line, no spinning
	# on the dead fd, the guest carries on
	ip link del "$tap_if" 2>/dev/null
	tap_if=
	console_check "tap: the guest carries on after the host deletes the interface" \
		'ping -c 1 -W 2 '"$host_ip"' >/dev/null 2>&1; echo G$((1+1))' "^G2"
	if grep -q "tap=.*the interface is gone" "$log"; then
		tap_ok "tap: accord says the interface is gone"
	else
		tap_not_ok "tap: accord says the interface is gone" "$(tail -n 4 "$log" | tr -d "\r" | tr "\n" " ")"
	fi
else
	tap_skip "tap: the guest reaches the host over a TAP interface" "$tap_why"
fi

console_send 'poweroff -f'
console_finish 60
if [ "$CONSOLE_STATUS" = 0 ]; then
	tap_ok "poweroff ends accord with status 0"
else
	tap_not_ok "poweroff" "accord exit status $CONSOLE_STATUS"
	console_tail
fi
bad='virtio_net.*(error|fail)|rx error|NETDEV WATCHDOG|transmit queue .* timed out|virtio.*needs reset'
if grep -qiE "$bad" "$log"; then
	tap_not_ok "no virtio-net errors on the console" "$(grep -iE "$bad" "$log" | head -n 3)"
else
	tap_ok "no virtio-net errors on the console"
fi
tap_summary
