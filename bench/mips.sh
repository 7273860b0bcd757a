#!/usr/bin/env bash
# Guest instructions per second on a CPU-bound loop (guest/tests/loop.c,
# 9 instructions an iteration): accord's emu engine and QEMU's TCG, each
# run with the loop and without it in one session, so that boot and exit
# costs cancel. Prints MIPS for both and the ratio of run times.
#
#   bench/mips.sh [ITERATIONS]      (default 400000000 for both, so that
#                                   each loop takes a second or more)
set -euo pipefail
cd "$(dirname "$0")/.."
iters=${1:-400000000}
qiters=$iters
make -s all guests >/dev/null
K=build/guest/loop.elf

now() { date +%s.%N; }
timed() {
	local t0 t1
	t0=$(now)
	"$@" </dev/null >/tmp/bench-mips.log 2>&1 || true
	t1=$(now)
	grep -q "^DONE" /tmp/bench-mips.log || { echo "bench: $1 did not finish" >&2; cat /tmp/bench-mips.log >&2; exit 1; }
	echo "$t1 - $t0" | bc -l
}
accord() { timed build/accord run --kernel $K --debug-exit --accel emu --cmdline "loop.iters=$1"; }
qemu() {
	timed qemu-system-x86_64 -accel tcg -kernel $K -append "loop.iters=$1" -display none \
		-serial stdio -no-reboot -monitor none -device isa-debug-exit,iobase=0xf4,iosize=0x04
}
a0=$(accord 0); a1=$(accord "$iters")
q0=$(qemu 0); q1=$(qemu "$qiters")
am=$(echo "$iters * 9 / ($a1 - $a0) / 1000000" | bc -l)
qm=$(echo "$qiters * 9 / ($q1 - $q0) / 1000000" | bc -l)
printf 'CPU-bound loop: accord emu %.0f MIPS (%d instructions in %.2f s), qemu tcg %.0f MIPS (%d in %.2f s), ratio %.1f\n' \
	"$am" $((iters * 9)) "$(echo "$a1 - $a0" | bc -l)" "$qm" $((qiters * 9)) "$(echo "$q1 - $q0" | bc -l)" \
	"$(echo "$qm / $am" | bc -l)"
