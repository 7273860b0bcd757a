#!/usr/bin/env bash
# virtio-net in the stock kernel on accord, one boot: a guest image with
# virtio_pci and virtio_net (tools/mkguest, its own output directory), a
# NIC on user networking (libslirp) with a port forward and its own MAC,
# and, as root with /dev/net/tun, a second NIC on a TAP interface.
#  - user: udhcpc gets 10.0.2.15; wget fetches a random token and a random
#    MiB from a python3 http.server on the host's loopback (10.0.2.2),
#    checked byte for byte; curl on the host fetches a token and a MiB the
#    guest's busybox httpd serves through hostfwd.
#  - offloads: the driver negotiated CSUM, GUEST_CSUM, HOST_TSO4/6 and
#    the control queue (the features in sysfs), and sent the MiB through
#    the forward in fewer frames than 1448-byte segments would take (TSO
#    frames reached the device, which cut them for slirp).
#  - DNS: nslookup through slirp's proxy at 10.0.2.3, which asks the
#    host's resolver: accord runs in its own mount namespace with a
#    resolv.conf naming a small DNS server this script runs on a loopback
#    address, so the answer is known and nothing leaves the machine.
#  - the MAC address changed through the control queue (ip link set eth0
#    address): DHCP and a fetch work with the new one.
#  - tap: the guest pings the host's side of the interface, curl on the
#    host fetches the token and the MiB from the guest's httpd over it, the
#    guest fetches the host's MiB over it (with GUEST_TSO: in frames larger
#    than the MTU).
# Command line errors (bad syntax, a forward on a busy port) need no guest.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
IMG=build/guest-image-net
MAC_USER=52:41:43:aa:bb:01
MAC_TAP=52:41:43:aa:bb:02
MAC_NEW=52:41:43:aa:bb:77
DNS_NAME=accord-dns-test.example
http_pid=
tap_http_pid=
dns_pid=
tap_if=
cleanup() {
	[ -z "$http_pid" ] || kill "$http_pid" 2>/dev/null
	[ -z "$tap_http_pid" ] || kill "$tap_http_pid" 2>/dev/null
	[ -z "$dns_pid" ] || kill "$dns_pid" 2>/dev/null
	[ -z "$tap_if" ] || ip link del "$tap_if" 2>/dev/null
}
test_tmp cleanup

guest_image "virtio-net in the guest" "virtio_pci virtio_net"

# the host's web server on loopback: a token and a random MiB
host_www_start

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

# a TAP interface for the second NIC, when this host allows one, and the
# host's web server on its side
host_tap_create "actap$$" 172.30 "$MAC_TAP"
if [ -n "$tap_if" ]; then
	(cd "$tmp/www" && exec python3 -u -m http.server 0 --bind "$host_ip") >"$tmp/tap-http.log" 2>&1 &
	tap_http_pid=$!
fi

# a DNS server for one name, on a loopback address of its own, and a
# resolv.conf naming it that only accord's mount namespace sees
dns_why=
dns_ip=127.77.$((RANDOM % 200 + 20)).1
dns_answer=192.0.2.$((RANDOM % 200 + 20))
runner=()
if [ "$(id -u)" -ne 0 ]; then
	dns_why="not root (port 53 and a mount namespace)"
elif ! command -v unshare >/dev/null; then
	dns_why="no unshare (util-linux)"
elif [ ! -e /etc/resolv.conf ]; then
	dns_why="no /etc/resolv.conf to stand in for"
else
	cat >"$tmp/dns.py" <<'PY'
import socket, struct, sys
ip, name, answer = sys.argv[1], sys.argv[2].lower(), socket.inet_aton(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, 53))
print("listening", flush=True)
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 12:
        continue
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
        i += 1 + q[i]
    qend = i + 5
    if qend > len(q):
        continue
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    qname = ".".join(labels).lower()
    print("query", qname, qtype, flush=True)
    if qname != name:
        r = q[:2] + struct.pack(">HHHHH", 0x8183, 1, 0, 0, 0) + q[12:qend]
    elif qtype == 1:
        r = q[:2] + struct.pack(">HHHHH", 0x8580, 1, 1, 0, 0) + q[12:qend]
        r += struct.pack(">HHHIH", 0xc00c, 1, 1, 60, 4) + answer
    else:
        r = q[:2] + struct.pack(">HHHHH", 0x8580, 1, 0, 0, 0) + q[12:qend]
    s.sendto(r, peer)
PY
	python3 -u "$tmp/dns.py" "$dns_ip" "$DNS_NAME" "$dns_answer" >"$tmp/dns.log" 2>&1 &
	dns_pid=$!
	for _ in $(seq 50); do
		grep -q listening "$tmp/dns.log" && break
		sleep 0.1
	done
	echo "nameserver $dns_ip" >"$tmp/resolv.conf"
	runner=(unshare -m sh -c 'mount --bind "$0" /etc/resolv.conf && exec "$@"' "$tmp/resolv.conf")
	# a container may refuse a mount namespace even to root
	seen=$("${runner[@]}" cat /etc/resolv.conf 2>"$tmp/unshare.log")
	if ! grep -q listening "$tmp/dns.log"; then
		runner=()
		dns_why="the test's DNS server did not start: $(head -n 1 "$tmp/dns.log")"
	elif [ "$seen" != "nameserver $dns_ip" ]; then
		runner=()
		dns_why="no mount namespace with our resolv.conf: $(head -n 1 "$tmp/unshare.log")"
	fi
fi

log=$tmp/guest.log
console_start "$log" "${runner[@]}" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel "$ACCEL" \
	--net "user,hostfwd=tcp:127.0.0.1:$fwd_port-:8080,mac=$MAC_USER" "${tap_args[@]}"
guest_booted "guest with virtio-net boots to init"
sleep 1
console_check "eth0 carries the mac= address" \
	'echo A$((1+1)) $(cat /sys/class/net/eth0/address) A$((2+1))' "A2 $MAC_USER A3"
console_check "udhcpc on eth0 gets 10.0.2.15 from slirp" \
	'udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; echo D$((1+1)) $(ifconfig eth0 | grep -o "inet addr:[0-9.]*") D$((2+1))' \
	"D2 inet addr:10.0.2.15 D3"
if [ -n "$http_port" ]; then
	guest_wget_checks
fi
console_check "the driver negotiated CSUM, GUEST_CSUM, HOST_TSO4/6/ECN, CTRL_VQ/RX/MAC_ADDR" \
	'f=$(cat /sys/class/net/eth0/device/features); echo O$((1+1)) $(for b in 0 1 11 12 13 17 18 23; do printf %s "${f:$b:1}"; done) O$((2+1))' \
	"O2 11111111 O3"
if [ -z "$dns_why" ]; then
	console_check "DNS: nslookup of a name through slirp's proxy at 10.0.2.3 gets the test server's answer" \
		"echo N\$((1+1)) \$(nslookup $DNS_NAME 10.0.2.3 2>&1 | grep -o 'Address: *$dns_answer\$' | tr -d ' ') N\$((2+1))" \
		"N2 Address:$dns_answer N3" 120
	console_check "DNS: a name the server does not know is not found" \
		"nslookup nowhere.$DNS_NAME 10.0.2.3 >/tmp/nx.log 2>&1; echo X\$((1+1)) \$(grep -c \"can't find\" /tmp/nx.log) X\$((2+1))" \
		"X2 [1-9] X3" 120
	if grep -q "query $DNS_NAME 1" "$tmp/dns.log"; then
		tap_ok "DNS: the query reached the test's server on the host"
	else
		tap_not_ok "DNS: the query reached the test's server on the host" "$(head -n 3 "$tmp/dns.log" | tr '\n' ' ')"
	fi
else
	tap_skip "DNS through slirp's proxy" "$dns_why"
fi
console_check "receive interrupts arrive on eth0's MSI-X queue vector" \
	'echo I$((1+1)) $(awk '"'"'/virtio0-input.0/ { print ($2 > 0) }'"'"' /proc/interrupts) I$((2+1))' \
	"I2 1 I3"

# the guest serves; the host fetches through the forward
guest_httpd_start
console_send 'cat /sys/class/net/eth0/statistics/tx_packets >/tmp/txp0'
host_fetch_token "hostfwd: curl on the host gets the guest's token" "http://127.0.0.1:$fwd_port/token"
host_fetch_blob "hostfwd: the guest's random MiB arrives byte-exact" "http://127.0.0.1:$fwd_port/blob"
# 1 MiB in 1448-byte segments is 725 frames; fewer means the driver
# handed over larger ones (TSO) and the device cut them for slirp
console_check "TSO: eth0 sent the MiB in fewer frames than 1448-byte segments take" \
	'n=$(( $(cat /sys/class/net/eth0/statistics/tx_packets) - $(cat /tmp/txp0) )); echo Q$((1+1)) $(( n > 0 && n < 725 )) $n Q$((2+1))' \
	"Q2 1 [0-9]+ Q3"

# a new MAC address through the control queue; DHCP and traffic go on
if [ -n "$http_port" ]; then
	console_check "MAC_ADDR_SET: after ip link set eth0 address, DHCP and a fetch work with the new address" \
		"ip link set eth0 address $MAC_NEW && udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; echo C\$((1+1)) \$(cat /sys/class/net/eth0/address) \$(wget -q -O - http://10.0.2.2:$http_port/token | sha256sum) C\$((2+1))" \
		"C2 $MAC_NEW $token_sum - C3" 120
fi

if [ ${#tap_args[@]} -gt 0 ]; then
	console_check "tap: eth1 carries its mac= address" \
		'echo M$((1+1)) $(cat /sys/class/net/eth1/address) M$((2+1))' "M2 $MAC_TAP M3"
	console_check "tap: the driver negotiated GUEST_TSO4/6 and GUEST_CSUM on eth1 (a vnet header on $tap_if)" \
		'f=$(cat /sys/class/net/eth1/device/features); echo K$((1+1)) $(for b in 1 7 8; do printf %s "${f:$b:1}"; done) K$((2+1))' \
		"K2 111 K3"
	console_check "tap: the guest pings the host's side of $tap_if" \
		"ifconfig eth1 $guest_ip netmask 255.255.255.0 up && ping -c 3 -W 5 $host_ip >/tmp/ping.log 2>&1; echo P\$((1+1)) \$(grep -o '[0-9]* packets received' /tmp/ping.log) P\$((2+1))" \
		"P2 [1-9] packets received P3"
	host_fetch_token "tap: curl on the host gets the guest's token over $tap_if" "http://$guest_ip:8080/token"
	host_fetch_blob "tap: the guest's random MiB reaches the host byte-exact" "http://$guest_ip:8080/blob" \
		"(offloads passed to the host's kernel)"
	tap_http_port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$tmp/tap-http.log" | head -n 1)
	if [ -n "$tap_http_port" ]; then
		console_check "tap: the guest fetches the host's random MiB over $tap_if, byte-exact, in frames larger than the MTU (GUEST_TSO)" \
			"r0=\$(cat /sys/class/net/eth1/statistics/rx_packets); s=\$(wget -q -O - http://$host_ip:$tap_http_port/blob | sha256sum); n=\$(( \$(cat /sys/class/net/eth1/statistics/rx_packets) - r0 )); echo W\$((1+1)) \$s \$(( n > 0 && n < 725 )) W\$((2+1))" \
			"W2 $blob_sum - 1 W3" 300
	else
		tap_not_ok "tap: the host's http.server on $host_ip started" "$(head -c 200 "$tmp/tap-http.log")"
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

console_poweroff "poweroff"
bad='virtio_net.*(error|fail)|rx error|NETDEV WATCHDOG|transmit queue .* timed out|virtio.*needs reset'
if grep -qiE "$bad" "$log"; then
	tap_not_ok "no virtio-net errors on the console" "$(grep -iE "$bad" "$log" | head -n 3)"
else
	tap_ok "no virtio-net errors on the console"
fi
tap_summary
