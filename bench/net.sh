#!/usr/bin/env bash
# Guest-to-host TCP throughput over user networking: accord (emu engine,
# --net user) against QEMU TCG (-netdev user, virtio-net-pci) on the same
# kernel and initrd (tools/mkguest with virtio_net), interleaved in one run.
# In each guest, udhcpc configures eth0 and busybox nc sends MIB MiB of
# zeros to a sink on the host's loopback (10.0.2.2); the sink times from the
# first byte to the end of the stream. Prints each run, the medians and the
# ratio accord / QEMU (above 1.0: accord is faster).
# With hyperv as the third argument, accord runs --personality hyperv and
# its NIC is netvsc (a guest image with hv_vmbus and hv_netvsc); QEMU stays
# on virtio-net, the reference figure.
#
#   bench/net.sh [RUNS] [MIB] [kvm|hyperv]   (default 3 runs of 16 MiB, kvm)
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/console.bash
runs=${1:-3}
mib=${2:-16}
personality=${3:-kvm}
IMG=build/guest-image-net
make -s all >/dev/null
MKGUEST_OUT=$PWD/$IMG GUEST_MODULES="virtio_pci virtio_net" tools/mkguest >/dev/null 2>&1
K=$IMG/vmlinuz
I=$IMG/initrd.cpio.gz
# accord's image and NIC
IA=$I
nic=virtio-net
case $personality in
kvm) ;;
hyperv)
	MKGUEST_OUT=$PWD/build/guest-image-hvnet GUEST_MODULES="hv_vmbus hv_netvsc" tools/mkguest >/dev/null 2>&1
	IA=build/guest-image-hvnet/initrd.cpio.gz
	nic=netvsc
	;;
*)
	echo "bench/net.sh: personality '$personality': expected kvm or hyperv" >&2
	exit 1
	;;
esac
CMDLINE="console=ttyS0 quiet panic=-1"
QEMU_CPU=qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# one connection: prints "BYTES SECONDS" from its first byte to EOF
sink() {
	python3 -u -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
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
' >"$tmp/sink.out" &
	sink_pid=$!
	for _ in $(seq 50); do
		port=$(head -n 1 "$tmp/sink.out")
		[ -n "$port" ] && return 0
		sleep 0.1
	done
	echo "bench: the sink did not start" >&2
	exit 1
}

# run_one NAME COMMAND...: boot, configure, send; prints MB/s
run_one() {
	local name=$1 log=$tmp/$1.log
	shift
	sink
	console_start "$log" "$@"
	console_wait "accord-guest: init ready" 600 || { echo "bench: $name did not boot" >&2; tail -n 20 "$log" >&2; exit 1; }
	console_send 'udhcpc -i eth0 -q -n -t 5 -T 3 >/dev/null 2>&1; echo U$((1+1))'
	console_wait "^U2" 60 || { echo "bench: $name: no DHCP" >&2; exit 1; }
	console_send "dd if=/dev/zero bs=65536 count=$((mib * 16)) 2>/dev/null | nc 10.0.2.2 $port; echo N\$((1+1))"
	console_wait "^N2" 900 || { echo "bench: $name: the transfer did not end" >&2; exit 1; }
	wait "$sink_pid"
	console_send 'poweroff -f'
	console_finish 60
	read -r bytes secs < <(sed -n 2p "$tmp/sink.out")
	[ "$bytes" = $((mib * 1048576)) ] || { echo "bench: $name: the sink got $bytes bytes" >&2; exit 1; }
	echo "$bytes $secs" | awk '{ printf "%.3f\n", $1 / $2 / 1e6 }'
}

a=() q=()
for i in $(seq "$runs"); do
	a+=("$(run_one accord build/accord run --kernel $K --initrd $IA --cmdline "$CMDLINE" --memory 256M \
		--accel emu --personality "$personality" --net user)")
	q+=("$(run_one qemu qemu-system-x86_64 -accel tcg -cpu $QEMU_CPU -m 256 -kernel $K -initrd $I \
		-append "$CMDLINE" -display none -serial stdio -no-reboot -monitor none \
		-netdev user,id=n0 -device virtio-net-pci,netdev=n0)")
	printf 'run %d: accord emu (%s) %s MB/s, qemu tcg (virtio-net) %s MB/s\n' "$i" "$nic" "${a[-1]}" "${q[-1]}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ma=$(median "${a[@]}")
mq=$(median "${q[@]}")
printf 'guest-to-host TCP over user networking, %d MiB, median of %d: accord emu (%s) %.2f MB/s, qemu tcg (virtio-net) %.2f MB/s, ratio %.2f\n' \
	"$mib" "$runs" "$nic" "$ma" "$mq" "$(echo "$ma / $mq" | bc -l)"
