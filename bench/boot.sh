#!/usr/bin/env bash
# Boot to init and power off: accord (emu engine) against QEMU's TCG on the
# same kernel, initrd and command line, interleaved in one run, so that the
# ratio is meaningful on a shared, noisy machine. Prints each run, the
# medians and the ratio accord / QEMU (below 1.0: accord is faster).
#
#   bench/boot.sh [RUNS]      (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
make -s all guest-image >/dev/null
K=build/guest-image/vmlinuz
I=build/guest-image/initrd.cpio.gz
CMDLINE="console=ttyS0 quiet accord.autotest"
# QEMU's CPU is given the same optional instruction sets accord advertises,
# so that both kernels take the same code paths
QEMU_CPU=qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16

now() { date +%s.%N; }
run_accord() {
	build/accord run --kernel $K --initrd $I --cmdline "$CMDLINE" --memory 512M --accel emu \
		</dev/null >/tmp/bench-accord.log 2>&1
}
run_qemu() {
	qemu-system-x86_64 -accel tcg -cpu $QEMU_CPU -m 512 -kernel $K -initrd $I \
		-append "$CMDLINE" -display none -serial stdio -no-reboot -monitor none \
		</dev/null >/tmp/bench-qemu.log 2>&1
}
check() {
	grep -q "accord-autotest: cpus 1" "$1" || { echo "bench: $2 did not boot (see $1)" >&2; exit 1; }
}

a=() q=()
for i in $(seq "$runs"); do
	t0=$(now); run_accord; t1=$(now); check /tmp/bench-accord.log accord
	q0=$(now); run_qemu; q1=$(now); check /tmp/bench-qemu.log qemu
	a+=("$(echo "$t1 - $t0" | bc)")
	q+=("$(echo "$q1 - $q0" | bc)")
	printf 'run %d: accord emu %.2f s, qemu tcg %.2f s\n' "$i" "${a[-1]}" "${q[-1]}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ma=$(median "${a[@]}")
mq=$(median "${q[@]}")
printf 'boot to init and power off, median of %d: accord emu %.2f s, qemu tcg %.2f s, ratio %.2f\n' \
	"$runs" "$ma" "$mq" "$(echo "$ma / $mq" | bc -l)"
