#!/usr/bin/env bash
# Boot to init and power off on KVM with AMD-V: accord's kvm engine against
# QEMU with -accel kvm, on the same kernel, initrd and command line,
# interleaved in one run. The host with AMD-V is the stock kernel under
# QEMU's TCG with -cpu max and kvm_amd (tests/lib/svm-host.bash): this
# project's machines have no VT-x or AMD-V, and their /dev/kvm emulates
# guest kernel code. Guest code and both VMMs run at TCG's speed there, so
# the seconds are not a real host's; the ratio compares what each VMM adds
# (its exits, its devices, its set-up) on the same KVM. Prints each run,
# the medians and the ratio accord / QEMU (below 1.0: accord is faster).
#
#   bench/kvm_boot.sh [RUNS]      (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
make -s all guest-image >/dev/null
. tests/lib/guest-tap.bash
. tests/lib/svm-host.bash
test_tmp
svm_host_image "bench kvm_boot" >/dev/null

K=$PWD/build/guest-image/vmlinuz
I=$PWD/build/guest-image/initrd.cpio.gz
CMDLINE="console=ttyS0 quiet accord.autotest"
A=$PWD/build/accord
QEMU=$(command -v qemu-system-x86_64)
# QEMU and what it loads for -kernel on its pc machine, at their paths here
files=("$K" "$I" "$QEMU" /usr/share/seabios/bios-256k.bin /usr/share/qemu/linuxboot_dma.bin
	/usr/share/qemu/kvmvapic.bin)
while read -r lib; do files+=("$lib"); done < <(ldd "$QEMU" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')

cat >"$tmp/run.sh" <<SH
up() { cut -d' ' -f1 /proc/uptime; }
run_accord() {
	$A run --accel kvm --kernel $K --initrd $I --cmdline "$CMDLINE" --memory 512M </dev/null >/out/accord.\$i.log 2>&1
}
run_qemu() {
	$QEMU -accel kvm -cpu host -m 512 -kernel $K -initrd $I -append "$CMDLINE" -nodefaults -vga none \\
		-display none -serial stdio -no-reboot -monitor none -L /usr/share/seabios -L /usr/share/qemu \\
		</dev/null >/out/qemu.\$i.log 2>&1
}
timed() {
	t0=\$(up)
	run_\$1
	echo "\$i \$1 \$t0 \$(up)" >>/out/times
}
# the first VM on the freshly booted host boots faster (4.8 s against 6.7 s
# for the same accord run): the VMMs take turns at going first
for i in \$(seq $runs); do
	if [ \$((i % 2)) = 1 ]; then timed accord; timed qemu; else timed qemu; timed accord; fi
done
SH
svm_host_run "$tmp/svm.log" "$tmp/out" "$tmp/run.sh" "${files[@]}"
[ "$SVM_CPU" = "npt svm" ] || { echo "bench: QEMU gives no host with SVM and NPT (see $tmp/svm.log)" >&2; exit 1; }
[ -s "$tmp/out/times" ] || { echo "bench: no times from the host (see $tmp/svm.log)" >&2; exit 1; }
a=() q=()
for i in $(seq "$runs"); do
	for vmm in accord qemu; do
		grep -q "accord-autotest: cpus 1" "$tmp/out/$vmm.$i.log" 2>/dev/null ||
			{ echo "bench: $vmm did not boot in run $i:" >&2; tail -n 5 "$tmp/out/$vmm.$i.log" >&2; exit 1; }
	done
	a+=("$(awk -v i="$i" '$1 == i && $2 == "accord" { print $4 - $3 }' "$tmp/out/times")")
	q+=("$(awk -v i="$i" '$1 == i && $2 == "qemu" { print $4 - $3 }' "$tmp/out/times")")
	printf 'run %d (%s first): accord kvm %.2f s, qemu kvm %.2f s\n' "$i" \
		"$([ $((i % 2)) = 1 ] && echo accord || echo qemu)" "${a[-1]}" "${q[-1]}"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ma=$(median "${a[@]}")
mq=$(median "${q[@]}")
printf 'boot to init and power off on KVM with AMD-V (QEMU TCG -cpu max), median of %d: accord kvm %.2f s, qemu kvm %.2f s, ratio %.2f\n' \
	"$runs" "$ma" "$mq" "$(echo "$ma / $mq" | bc -l)"
