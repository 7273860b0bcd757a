#!/usr/bin/env bash
# Sequential disk throughput inside the guest: accord (emu engine) against
# QEMU's TCG, each with a virtio-blk disk on a raw image, the same kernel,
# initramfs, command line and guest commands, interleaved in one run.
#
# The guest writes SIZE MiB of zeros to /dev/vda with dd bs=BS (1M)
# oflag=direct, drops its page cache, and reads them back with
# iflag=direct. It prints a line before and after each dd; the host stamps
# every console line as it arrives, so both VMMs are timed by the same
# clock and boot time is left out. Prints MB/s (10^6 bytes per second) for
# each run, the medians and the median of the runs' ratios accord / QEMU
# (above 1.0: accord is faster). After each run the image is checked to
# hold the zeros. The image is in /dev/shm when it has room (else $TMPDIR
# or /tmp).
#
#   bench/disk.sh [RUNS] [SIZE_MIB] [BS]  (default 3 runs of 256 MiB in 1M
#   requests; at 64 MiB QEMU's spans are under 0.1 s and the ratio is noisy;
#   BS 4k makes it a run of small requests, one in flight at a time)
#   ACCORD=PATH runs another accord binary (an earlier build, to compare)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
mib=${2:-256}
bs=${3:-1M}
case "$bs" in
1M) count=$mib ;;
4k) count=$((mib * 256)) ;;
*) echo "bench: BS must be 1M or 4k" >&2; exit 1 ;;
esac
ACCORD=${ACCORD:-build/accord}
make -s all >/dev/null
IMG=build/guest-image-virtio
MKGUEST_OUT=$PWD/$IMG GUEST_MODULES="virtio_pci virtio_blk" tools/mkguest >/dev/null 2>&1 ||
	{ echo "bench: tools/mkguest failed" >&2; exit 1; }
K=$IMG/vmlinuz
CMDLINE="console=ttyS0 quiet accord.autotest"
# as in bench/boot.sh: the optional instruction sets accord advertises
QEMU_CPU=qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16

# the images live in memory (/dev/shm) when there is room, so that the
# host's disk and its writeback do not decide the figures
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] && [ "$(df -Pk "$shm" | awk 'NR == 2 { print $4 }')" -gt $(((mib + 64) * 1024)) ] ||
	shm=${TMPDIR:-/tmp}
tmp=$(mktemp -d "$shm/accord-bench-disk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# the guest's /autotest.sh, in a second archive appended to the initramfs
# (the kernel unpacks both; the later file replaces the earlier)
mkdir -p "$tmp/overlay"
cat >"$tmp/overlay/autotest.sh" <<EOF
#!/bin/sh
echo "bench-disk: write-start"
dd if=/dev/zero of=/dev/vda bs=$bs count=$count oflag=direct 2>/dev/null || echo "bench-disk: write failed"
echo "bench-disk: write-end"
sync
echo 3 >/proc/sys/vm/drop_caches
echo "bench-disk: read-start"
dd if=/dev/vda of=/dev/null bs=$bs count=$count iflag=direct 2>/dev/null || echo "bench-disk: read failed"
echo "bench-disk: read-end"
poweroff -f
EOF
chmod 755 "$tmp/overlay/autotest.sh"
I=$tmp/initrd.img
cp "$IMG/initrd.cpio.gz" "$I"
(cd "$tmp/overlay" && echo autotest.sh | cpio -o -H newc -R 0:0 --quiet | gzip -9n) >>"$I"

disk=$tmp/disk.img
# a disk of non-zero bytes, so that the zeros afterwards prove the writes
fresh_disk() {
	head -c $(((mib + 16) << 20)) /dev/zero | tr '\0' '\377' >"$disk"
}

# stamp each line of the VMM's console with the host's clock as it arrives
stamp() {
	while IFS= read -r line; do
		printf "%s %s\n" "$EPOCHREALTIME" "${line%$'\r'}"
	done
}
run_accord() {
	"$ACCORD" run --kernel "$K" --initrd "$I" --cmdline "$CMDLINE" --memory 256M --accel emu \
		--disk path="$disk" </dev/null 2>&1 | stamp >"$tmp/accord.log"
}
run_qemu() {
	qemu-system-x86_64 -accel tcg -cpu $QEMU_CPU -m 256 -kernel "$K" -initrd "$I" \
		-append "$CMDLINE" -display none -serial stdio -no-reboot -monitor none \
		-drive file="$disk",format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0 \
		</dev/null 2>&1 | stamp >"$tmp/qemu.log"
}
# seconds between two marker lines of a stamped log
span() {
	awk -v a="bench-disk: $2-start" -v b="bench-disk: $2-end" '
		index($0, a) { t0 = $1 } index($0, b) { t1 = $1 }
		END { if (t0 && t1 > t0) printf "%.3f", t1 - t0; else exit 1 }' "$1"
}
check() {
	local log=$1 who=$2
	if ! grep -q "bench-disk: read-end" "$log" || grep -q "failed" "$log"; then
		echo "bench: $who did not finish the workload:" >&2
		tail -n 20 "$log" >&2
		exit 1
	fi
	if ! cmp -s -n $((mib << 20)) "$disk" /dev/zero; then
		echo "bench: $who: the image does not hold the zeros written" >&2
		exit 1
	fi
}
mbs() { echo "scale=3; $mib * 1048576 / 1000000 / $1" | bc; }

aw=() ar=() qw=() qr=() rw=() rr=()
for i in $(seq "$runs"); do
	fresh_disk
	run_accord
	check "$tmp/accord.log" accord
	aw+=("$(mbs "$(span "$tmp/accord.log" write)")")
	ar+=("$(mbs "$(span "$tmp/accord.log" read)")")
	fresh_disk
	run_qemu
	check "$tmp/qemu.log" qemu
	qw+=("$(mbs "$(span "$tmp/qemu.log" write)")")
	qr+=("$(mbs "$(span "$tmp/qemu.log" read)")")
	rw+=("$(echo "${aw[-1]} / ${qw[-1]}" | bc -l)")
	rr+=("$(echo "${ar[-1]} / ${qr[-1]}" | bc -l)")
	printf 'run %d: write accord emu %.1f MB/s, qemu tcg %.1f MB/s (%.2f); read accord emu %.1f MB/s, qemu tcg %.1f MB/s (%.2f)\n' \
		"$i" "${aw[-1]}" "${qw[-1]}" "${rw[-1]}" "${ar[-1]}" "${qr[-1]}" "${rr[-1]}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
maw=$(median "${aw[@]}") mar=$(median "${ar[@]}")
mqw=$(median "${qw[@]}") mqr=$(median "${qr[@]}")
# the ratio is the median of the runs' ratios: each pair ran back to back,
# so it shares the machine's load of the moment
printf 'sequential write, %d MiB in %s requests, O_DIRECT, median of %d: accord emu %.1f MB/s, qemu tcg %.1f MB/s, ratio %.2f\n' \
	"$mib" "$bs" "$runs" "$maw" "$mqw" "$(median "${rw[@]}")"
printf 'sequential read,  %d MiB in %s requests, O_DIRECT, median of %d: accord emu %.1f MB/s, qemu tcg %.1f MB/s, ratio %.2f\n' \
	"$mib" "$bs" "$runs" "$mar" "$mqr" "$(median "${rr[@]}")"
