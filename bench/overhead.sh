#!/usr/bin/env bash
# What the emu engine costs beyond the guest, report only (no assertion):
# resident memory of a 1-vCPU 256 MiB guest beyond the guest RAM it touched
# (from /proc/PID/smaps while a CPU-bound guest runs), and the time from
# process start to the first guest instruction (ACCORD_FIRST_INSN makes the
# engine print its clock there; the shell's clock is read just before exec).
#
#   bench/overhead.sh [RUNS]      (default 5; the median start-up time)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
make -s all guests >/dev/null
K=build/guest/loop.elf
A=(build/accord run --kernel $K --debug-exit --accel emu --memory 256M)

starts=()
for i in $(seq "$runs"); do
	t0=$EPOCHREALTIME
	ACCORD_FIRST_INSN=1 "${A[@]}" --cmdline loop.iters=0 </dev/null >/dev/null 2>/tmp/bench-overhead.err || true
	t1=$(sed -n 's/^accord: first guest instruction at //p' /tmp/bench-overhead.err)
	[ -n "$t1" ] || { echo "bench: no first-instruction time (see /tmp/bench-overhead.err)" >&2; exit 1; }
	starts+=("$(echo "($t1 - $t0) * 1000" | bc -l)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

"${A[@]}" --cmdline loop.iters=2000000000 </dev/null >/dev/null 2>&1 &
pid=$!
sleep 2
# every mapping's Rss; guest RAM is the one mapping of at least 256 MiB
read -r total ram < <(awk '
	/^[0-9a-f]+-[0-9a-f]+ / { big = 0 }
	/^Size:/ { big = $2 >= 262144 }
	/^Rss:/ { total += $2; if (big) ram += $2 }
	END { print total, ram }' /proc/$pid/smaps)
kill "$pid"
wait "$pid" 2>/dev/null || true

printf 'start to first guest instruction, median of %d: %.1f ms\n' "$runs" "$(median "${starts[@]}")"
printf 'resident: %d KiB in all, %d KiB of it guest RAM touched, %d KiB (%.1f MiB) beyond guest RAM\n' \
	"$total" "$ram" $((total - ram)) "$(echo "($total - $ram) / 1024" | bc -l)"
