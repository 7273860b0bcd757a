#!/usr/bin/env bash
# TCP throughput over user networking: accord (emu engine, --net user)
# against QEMU TCG (-netdev user, virtio-net-pci, its default offloads) on
# the same kernel and initrd (tools/mkguest with virtio_net), interleaved
# in one run. In each guest, udhcpc configures eth0; then
#  - tx (guest to host): busybox nc sends MIB MiB of zeros to a sink on the
#    host's loopback (10.0.2.2); the sink times from the first byte to the
#    end of the stream;
#  - rx (host to guest): busybox nc -l in the guest, reached through a
#    hostfwd, takes MIB MiB of zeros from the host, which times from its
#    first byte to the guest's close after the end of the stream.
# Prints each run, the medians and the ratio accord / QEMU (above 1.0:
# accord is faster), and the CPU time the VMM process (every thread) used
# per MiB during the transfer, which a loaded machine disturbs less than
# the wall-clock rate.
#
#   bench/net.sh [RUNS] [MIB] [tx|rx]   (default 3 runs of 16 MiB, tx)
#
# Environment: BACKEND=tap (as root) puts both on a TAP interface the
# script creates (accord --net tap=, QEMU -netdev tap with its vnet header)
# instead of user networking: the guest gets a static address, the host's
# side of the interface is the peer, and no hostfwd is involved. For
# accord only (QEMU keeps its defaults): NET_OPTS is added to accord's
# --net (",offload=off": no offloads; ",offload=csum": checksum offload
# both ways, no TSO), GUEST_APPEND to its kernel command line.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/console.bash
runs=${1:-3}
mib=${2:-16}
dir=${3:-tx}
case $dir in tx | rx) ;; *) echo "bench: direction tx or rx, not '$dir'" >&2; exit 1 ;; esac
NET_OPTS=${NET_OPTS:-}
GUEST_APPEND=${GUEST_APPEND:-}
BACKEND=${BACKEND:-user}
IMG=build/guest-image-net
make -s all >/dev/null
MKGUEST_OUT=$PWD/$IMG GUEST_MODULES="virtio_pci virtio_net" tools/mkguest >/dev/null 2>&1
K=$IMG/vmlinuz
I=$IMG/initrd.cpio.gz
CMDLINE="console=ttyS0 quiet panic=-1"
QEMU_CPU=qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16
tmp=$(mktemp -d)
tap_if=
sink_pid=
trap 'rm -rf "$tmp"; [ -z "$sink_pid" ] || kill "$sink_pid" 2>/dev/null; [ -z "$tap_if" ] || ip link del "$tap_if" 2>/dev/null' EXIT

# where the host listens and where the guest is reached
host_addr=127.0.0.1 guest_peer=10.0.2.2
if [ "$BACKEND" = tap ]; then
	[ "$(id -u)" -eq 0 ] || { echo "bench: BACKEND=tap needs root" >&2; exit 1; }
	tap_if=acbench$$
	net3=$((RANDOM % 200 + 20))
	host_addr=172.31.$net3.1 guest_peer=172.31.$net3.1 guest_addr=172.31.$net3.2
	ip tuntap add dev "$tap_if" mode tap
	ip addr add "$host_addr/24" dev "$tap_if"
	ip link set "$tap_if" up
elif [ "$BACKEND" != user ]; then
	echo "bench: BACKEND user or tap, not '$BACKEND'" >&2
	exit 1
fi

# one connection: prints "BYTES SECONDS" from its first byte to EOF
sink() {
	# empty first: the loop below must not read the last run's port
	: >"$tmp/sink.out"
	python3 -u -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
n, t0 = 0, None
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    if t0 is None:
        t0 = time.monotonic()
    n += len(b)
print(n, time.monotonic() - t0 if t0 else 0, flush=True)
' "$host_addr" >"$tmp/sink.out" &
	sink_pid=$!
	for _ in $(seq 50); do
		port=$(head -n 1 "$tmp/sink.out")
		[ -n "$port" ] && return 0
		sleep 0.1
	done
	echo "bench: the sink did not start" >&2
	exit 1
}

# the rx direction: sends MIB MiB to $1:$2 (a hostfwd to the guest's nc -l,
# or the guest on TAP), retrying until the guest listens; prints "BYTES
# SECONDS" from the first byte to the guest's close
source_to() {
	python3 -u -c '
import socket, sys, time
addr, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = bytes(1 << 16)
for _ in range(600):
    try:
        s = socket.create_connection((addr, port))
        break
    except OSError:
        time.sleep(0.2)
t0 = time.monotonic()
n = 0
while n < total:
    n += s.send(buf[:min(len(buf), total - n)])
s.shutdown(socket.SHUT_WR)
while s.recv(1 << 16):
    pass
print(n, time.monotonic() - t0, flush=True)
' "$1" "$2" "$((mib * 1048576))" >"$tmp/sink.out" &
	sink_pid=$!
}

# the CPU time of process $1 so far, in clock ticks
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# run_one NAME COMMAND...: boot, configure, transfer; prints "MB/s CPU-ms/MiB". For rx,
# the command forwards 127.0.0.1:$fwd to the guest's port 5001.
run_one() {
	local name=$1 log=$tmp/$1.log
	shift
	[ "$dir" = tx ] && sink
	console_start "$log" "$@"
	console_wait "accord-guest: init ready" 600 || { echo "bench: $name did not boot" >&2; tail -n 20 "$log" >&2; exit 1; }
	if [ "$BACKEND" = tap ]; then
		console_send "ifconfig eth0 $guest_addr netmask 255.255.255.0 up; echo U\$((1+1))"
	else
		console_send 'udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; echo U$((1+1))'
	fi
	console_wait "^U2" 60 || { echo "bench: $name: no DHCP" >&2; exit 1; }
	local c0 c1
	c0=$(cpu_ticks "$CONSOLE_PID")
	if [ "$dir" = tx ]; then
		console_send "dd if=/dev/zero bs=65536 count=$((mib * 16)) 2>/dev/null | nc $guest_peer $port; echo N\$((1+1))"
	else
		console_send "nc -l -p 5001 >/dev/null; echo N\$((1+1))"
		# slirp takes the host's connection at once and drops it if the
		# guest does not listen yet: give nc time to start
		sleep 3
		if [ "$BACKEND" = tap ]; then
			source_to "$guest_addr" 5001
		else
			source_to 127.0.0.1 "$fwd"
		fi
	fi
	console_wait "^N2" 900 || { echo "bench: $name: the transfer did not end" >&2; exit 1; }
	c1=$(cpu_ticks "$CONSOLE_PID")
	wait "$sink_pid"
	console_send 'poweroff -f'
	console_finish 60
	read -r bytes secs < <(sed -n '$p' "$tmp/sink.out")
	[ "$bytes" = $((mib * 1048576)) ] || { echo "bench: $name: $bytes bytes moved" >&2; exit 1; }
	echo "$bytes $secs $((c1 - c0)) $(getconf CLK_TCK)" |
		awk '{ printf "%.3f %.0f\n", $1 / $2 / 1e6, $3 / $4 * 1000 / ($1 / 1048576) }'
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

a=() q=()
for i in $(seq "$runs"); do
	fwd=$(free_port)
	anet="user,hostfwd=tcp:127.0.0.1:$fwd-:5001$NET_OPTS"
	[ "$BACKEND" = tap ] && anet="tap=$tap_if$NET_OPTS"
	a+=("$(run_one accord build/accord run --kernel $K --initrd $I --cmdline "$CMDLINE $GUEST_APPEND" \
		--memory 256M --accel emu --net "$anet")")
	fwd=$(free_port)
	qnet="user,id=n0,hostfwd=tcp:127.0.0.1:$fwd-:5001"
	[ "$BACKEND" = tap ] && qnet="tap,id=n0,ifname=$tap_if,script=no,downscript=no"
	q+=("$(run_one qemu qemu-system-x86_64 -accel tcg -cpu $QEMU_CPU -m 256 -kernel $K -initrd $I \
		-append "$CMDLINE" -display none -serial stdio -no-reboot -monitor none \
		-netdev "$qnet" -device virtio-net-pci,netdev=n0)")
	printf 'run %d: accord emu %s MB/s (%s CPU-ms/MiB), qemu tcg %s MB/s (%s CPU-ms/MiB)\n' "$i" \
		${a[-1]} ${q[-1]}
done
# median FIELD RUN...: the median of field FIELD (1: MB/s, 2: CPU-ms/MiB)
median() {
	local f=$1
	shift
	printf '%s\n' "$@" | awk -v f="$f" '{ print $f }' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}
ma=$(median 1 "${a[@]}")
mq=$(median 1 "${q[@]}")
ca=$(median 2 "${a[@]}")
cq=$(median 2 "${q[@]}")
what="guest-to-host"
[ "$dir" = rx ] && what="host-to-guest"
printf '%s TCP over %s, %d MiB, median of %d: accord emu (--net %s%s%s) %.2f MB/s, qemu tcg %.2f MB/s, ratio %.2f\n' \
	"$what" "$BACKEND" "$mib" "$runs" "$BACKEND" "$NET_OPTS" "${GUEST_APPEND:+, $GUEST_APPEND}" "$ma" "$mq" "$(echo "$ma / $mq" | bc -l)"
printf 'CPU time of the VMM process per MiB moved, median: accord %s ms, qemu %s ms\n' "$ca" "$cq"
