#!/usr/bin/env bash
# CPU-bound guest workloads: accord (emu engine) against QEMU's TCG on the
# same kernel, initramfs, command line and guest commands, interleaved in
# one run.
#
# The guest builds a 64 MiB file in its tmpfs from 64 copies of a 1 MiB
# chunk of text that this script generates (deterministic, compresses about
# 3:1 with gzip), then times, one after another:
#   sha256   sha256sum of the file (its digest is checked against the host's)
#   gzip     gzip -c of the file to /dev/null
#   awk      a floating-point loop in busybox awk (LOOP iterations)
# It prints a line before and after each; the host stamps every console
# line as it arrives, so both VMMs are timed by the same clock and the boot
# is left out. Prints each run's seconds, the medians and the median of the
# runs' ratios accord / QEMU (below 1.0: accord is faster), per workload and
# for the three together.
#
#   bench/work.sh [RUNS] [SIZE_MIB] [LOOP]   (default 3 runs, 64 MiB,
#                                             500000 awk iterations)
#   ACCORD=PATH runs another accord binary (an earlier build, to compare)
#   WORK_INITRD=PATH writes the guest's initramfs there and exits (to run
#   the workload under a profiler: build/accord run --kernel
#   build/guest-image/vmlinuz --initrd PATH --cmdline "console=ttyS0 quiet
#   accord.autotest" --memory 512M --accel emu)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
mib=${2:-64}
loop=${3:-500000}
ACCORD=${ACCORD:-build/accord}
make -s all guest-image >/dev/null
K=build/guest-image/vmlinuz
CMDLINE="console=ttyS0 quiet accord.autotest"
# as in bench/boot.sh: the optional instruction sets accord advertises
QEMU_CPU=qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16
WORKS="gen sha256 gzip awk"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/accord-bench-work.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1 MiB of words drawn from a fixed vocabulary with a skewed distribution,
# in lines: text that gzip compresses about 3:1, the same bytes every run
mkdir -p "$tmp/overlay"
python3 - "$tmp/overlay/chunk" <<'EOF'
import random, sys
r = random.Random(10)
letters = "etaoinshrdlcumwfgypbvkjxqz"
vocab = ["".join(r.choice(letters[:r.randint(6, 26)]) for _ in range(r.randint(2, 11)))
         for _ in range(4000)]
weights = [1.0 / (i + 1) for i in range(len(vocab))]
out, size = [], 0
while size < 1 << 20:
    line = " ".join(r.choices(vocab, weights, k=r.randint(4, 16))) + "\n"
    out.append(line)
    size += len(line)
sys.stdout = open(sys.argv[1], "w")
sys.stdout.write("".join(out)[:1 << 20])
EOF
want=$(for _ in $(seq "$mib"); do cat "$tmp/overlay/chunk"; done | sha256sum | cut -d' ' -f1)

# the guest's /autotest.sh, in a second archive appended to the initramfs
# (the kernel unpacks both; the later file replaces the earlier)
cat >"$tmp/overlay/autotest.sh" <<EOF
#!/bin/sh
cd /tmp
echo "bench-work: gen-start"
i=0
while [ \$i -lt $mib ]; do
	cat /chunk
	i=\$((i + 1))
done >data
echo "bench-work: gen-end"
echo "bench-work: sha256-start"
echo "bench-work: digest \$(sha256sum data | cut -d' ' -f1)"
echo "bench-work: sha256-end"
echo "bench-work: gzip-start"
echo "bench-work: gzip-bytes \$(gzip -c data | wc -c)"
echo "bench-work: gzip-end"
echo "bench-work: awk-start"
echo "bench-work: awk-result \$(awk 'BEGIN { s = 0; for (i = 1; i <= $loop; i++) s += (i * 7 % 13) / i; printf "%.6f", s }')"
echo "bench-work: awk-end"
poweroff -f
EOF
chmod 755 "$tmp/overlay/autotest.sh"
I=$tmp/initrd.img
cp build/guest-image/initrd.cpio.gz "$I"
(cd "$tmp/overlay" && printf '%s\n' autotest.sh chunk | cpio -o -H newc -R 0:0 --quiet | gzip -9n) >>"$I"
if [ -n "${WORK_INITRD:-}" ]; then
	cp "$I" "$WORK_INITRD"
	exit 0
fi

# stamp each line of the VMM's console with the host's clock as it arrives
stamp() {
	while IFS= read -r line; do
		printf "%s %s\n" "$EPOCHREALTIME" "${line%$'\r'}"
	done
}
run_accord() {
	"$ACCORD" run --kernel "$K" --initrd "$I" --cmdline "$CMDLINE" --memory 512M --accel emu \
		</dev/null 2>&1 | stamp >"$tmp/accord.log"
}
run_qemu() {
	qemu-system-x86_64 -accel tcg -cpu $QEMU_CPU -m 512 -kernel "$K" -initrd "$I" \
		-append "$CMDLINE" -display none -serial stdio -no-reboot -monitor none \
		</dev/null 2>&1 | stamp >"$tmp/qemu.log"
}
# seconds between two marker lines of a stamped log
span() {
	awk -v a="bench-work: $2-start" -v b="bench-work: $2-end" '
		index($0, a) { t0 = $1 } index($0, b) { t1 = $1 }
		END { if (t0 && t1 > t0) printf "%.3f", t1 - t0; else exit 1 }' "$1"
}
field() { awk -v k="bench-work: $2 " 'index($0, k) { print $NF }' "$1" | tr -d '\r'; }
check() {
	local log=$1 who=$2
	if ! grep -q "bench-work: awk-end" "$log"; then
		echo "bench: $who did not finish the workload:" >&2
		tail -n 20 "$log" >&2
		exit 1
	fi
	if [ "$(field "$log" digest)" != "$want" ]; then
		echo "bench: $who: sha256 $(field "$log" digest), expected $want" >&2
		exit 1
	fi
}

declare -A A Q R
for i in $(seq "$runs"); do
	run_accord
	check "$tmp/accord.log" accord
	run_qemu
	check "$tmp/qemu.log" qemu
	for k in gzip-bytes awk-result; do
		[ "$(field "$tmp/accord.log" $k)" = "$(field "$tmp/qemu.log" $k)" ] || {
			echo "bench: $k differs: accord $(field "$tmp/accord.log" $k), qemu $(field "$tmp/qemu.log" $k)" >&2
			exit 1
		}
	done
	line="run $i:"
	ta=0 tq=0
	for w in $WORKS; do
		a=$(span "$tmp/accord.log" $w) q=$(span "$tmp/qemu.log" $w)
		A[$w]+=" $a" Q[$w]+=" $q" R[$w]+=" $(echo "$a / $q" | bc -l)"
		[ "$w" = gen ] && continue
		ta=$(echo "$ta + $a" | bc -l) tq=$(echo "$tq + $q" | bc -l)
		line+=$(printf ' %s %.2f/%.2f s' "$w" "$a" "$q")
	done
	A[all]+=" $ta" Q[all]+=" $tq" R[all]+=" $(echo "$ta / $tq" | bc -l)"
	printf '%s (accord/qemu); sha256 %s, gzip %s bytes\n' "$line" "$want" "$(field "$tmp/qemu.log" gzip-bytes)"
done
median() { printf '%s\n' $@ | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
printf 'median of %d runs, %d MiB, awk loop of %d (load %s):\n' "$runs" "$mib" "$loop" "$(cut -d' ' -f1-3 /proc/loadavg)"
for w in $WORKS all; do
	printf '  %-7s accord emu %6.2f s, qemu tcg %6.2f s, ratio %.2f\n' \
		"$w" "$(median ${A[$w]})" "$(median ${Q[$w]})" "$(median ${R[$w]})"
done
