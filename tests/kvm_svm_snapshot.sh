#!/usr/bin/env bash
# Snapshots of a running Linux on the kvm engine, on a host with AMD-V
# (tests/lib/svm-host.bash: the stock kernel under QEMU's TCG with -cpu max,
# kvm_amd, accord inside): the stock kernel with two vCPUs runs a user-space
# loop that prints a counter and the sha256 of /bin/busybox once a second;
# `accord snapshot NAME FILE --stop` saves it mid-loop (the VM ends with
# status 0), and `accord restore FILE` in a fresh process goes on from the
# next number, with the same sum, to the end of the loop and the guest's
# poweroff (status 0); a second restore of the same file does the same.
# What a restore on KVM must carry: both vCPUs' registers, x87/SSE/XSAVE
# state, MSRs (kvmclock's among them), accord's LAPICs and timers, the
# TSC, and memory.
# Without qemu-system-x86_64 or a host image: one skip with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash
. tests/lib/linux-guest.bash
. tests/lib/api.bash
. tests/lib/svm-host.bash

IMG=build/guest-image
TICKS=15
test_tmp
svm_host_image "linux snapshots on kvm with AMD-V"
guest_image_default "linux snapshots on kvm with AMD-V"

# the guest's loop replaces the image's /autotest.sh (a later cpio
# archive's files replace the earlier ones')
mkdir -p "$tmp/l2"
cat >"$tmp/l2/autotest.sh" <<EOF
#!/bin/sh
i=0
while [ \$i -lt $TICKS ]; do
	i=\$((i + 1))
	echo "tick \$i \$(sha256sum /bin/busybox | cut -c1-16)"
	sleep 1
done
poweroff -f
EOF
chmod 755 "$tmp/l2/autotest.sh"
initrd=$tmp/initrd.cpio.gz
{
	cat "$IMG/initrd.cpio.gz"
	(cd "$tmp/l2" && echo autotest.sh | cpio -o -H newc -R 0:0 --quiet | gzip -1)
} >"$initrd"
mkdir -p "$tmp/l2root"
(cd "$tmp/l2root" && zcat "$OLDPWD/$IMG/initrd.cpio.gz" | cpio -id --quiet bin/busybox 2>/dev/null)
sum=$(sha256sum "$tmp/l2root/bin/busybox" | cut -c1-16)

cat >"$tmp/run.sh" <<EOF
A=$SVM_ACCORD
mkdir -p /run
# wait_for FILE PATTERN SECONDS PID: until the pattern is in the file;
# 1 after SECONDS or once the process PID has ended without it
wait_for() {
	n=0
	while ! grep -q "\$2" "\$1" 2>/dev/null; do
		n=\$((n + 1))
		[ \$n -gt \$3 ] && return 1
		kill -0 "\$4" 2>/dev/null || return 1
		sleep 1
	done
}
\$A run --accel kvm --irqchip user --cpus 2 --memory 256M --name lin --kernel $PWD/$IMG/vmlinuz \\
	--initrd $initrd --cmdline "console=ttyS0 panic=-1 quiet accord.autotest" </dev/null >/out/run.log 2>&1 &
pid=\$!
wait_for /out/run.log "^tick 4 " 300 \$pid || kill \$pid
\$A snapshot lin /tmp/lin.snap --stop >/out/snap.log 2>&1
echo \$? >/out/snap.status
wait \$pid
echo \$? >/out/run.status
for r in 1 2; do
	\$A restore /tmp/lin.snap --name lin\$r </dev/null >/out/restore\$r.log 2>&1 &
	pid=\$!
	wait_for /out/restore\$r.log "^tick $TICKS " 300 \$pid || kill \$pid
	wait \$pid
	echo \$? >/out/restore\$r.status
done
EOF
svm_host_run "$tmp/svm.log" "$tmp/out" "$tmp/run.sh" "$PWD/$IMG/vmlinuz" "$initrd"
svm_host_required "linux snapshots on kvm with AMD-V"

# ticks LOG: the numbers of its tick lines with the right sum, in order
ticks() {
	sed -n "s/\r$//; s/^tick \([0-9]*\) $sum\$/\1/p" "$1" 2>/dev/null | tr '\n' ' '
}
before=$(ticks "$tmp/out/run.log")
last=$(echo "$before" | awk '{ print $NF }')
if [ -n "$last" ] && [ "$(cat "$tmp/out/snap.status" 2>/dev/null)" = 0 ] &&
	[ "$(cat "$tmp/out/run.status" 2>/dev/null)" = 0 ] && [ "$last" -lt "$TICKS" ]; then
	tap_ok "Linux on kvm (2 vCPUs) ticks in user space, is saved mid-loop at tick $last; the VM ends with status 0"
else
	tap_not_ok "Linux on kvm saved mid-loop" \
		"ticks '$before', snapshot status $(cat "$tmp/out/snap.status" 2>/dev/null) ($(head -c 200 "$tmp/out/snap.log" 2>/dev/null)), run status $(cat "$tmp/out/run.status" 2>/dev/null); $(grep -m3 'accord:' "$tmp/out/run.log" 2>/dev/null | tr '\n' ' ')"
fi
bad=$(grep -c '^tick ' "$tmp/out/run.log" 2>/dev/null)
[ "$bad" -eq "$(echo "$before" | wc -w)" ]
result $? "every tick before the snapshot has the host's sum of /bin/busybox" "$(grep -m2 '^tick ' "$tmp/out/run.log")"
for r in 1 2; do
	after=$(ticks "$tmp/out/restore$r.log")
	want=$(seq $((${last:-0} + 1)) "$TICKS" | tr '\n' ' ')
	if [ -n "$last" ] && [ "$after" = "$want" ] &&
		[ "$(grep -c '^tick ' "$tmp/out/restore$r.log")" -eq "$(echo "$after" | wc -w)" ]; then
		tap_ok "restore $r: the loop goes on from tick $((last + 1)) to $TICKS, every sum right"
	else
		tap_not_ok "restore $r: the loop goes on from tick $((${last:-0} + 1))" \
			"ticks '$after'; $(grep -v '^tick' "$tmp/out/restore$r.log" 2>/dev/null | grep -m4 . | tr '\n' ' ')"
	fi
	[ "$(cat "$tmp/out/restore$r.status" 2>/dev/null)" = 0 ]
	result $? "restore $r: the guest's poweroff ends accord with status 0" \
		"status $(cat "$tmp/out/restore$r.status" 2>/dev/null); $(tail -n 3 "$tmp/out/restore$r.log" 2>/dev/null | tr '\n' ' ')"
done
tap_summary
