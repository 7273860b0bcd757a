# A host with hardware virtualization for the kvm engine's tests, on a
# machine that has none: the stock Debian kernel under QEMU's TCG with
# -cpu max, whose CPU has AMD-V (SVM with nested paging, emulated by QEMU),
# kvm_amd loaded, and accord inside. KVM there virtualizes the guest as on
# an AMD host: guest code runs on the "hardware" (TCG), KVM sees only the
# exits SVM's intercepts give it. What differs from a real AMD CPU is
# QEMU's implementation of the CPU itself (its known defects are
# guest/known-deviations' qemu:tcg entries).
#
#   svm_host_image NAME           build $SVM_IMG (the stock kernel, an
#                                 initramfs with kvm_amd, virtio_blk and
#                                 accord); without one: NAME skipped, the
#                                 summary, exit 0; without $ACCORD
#                                 (build/accord): NAME not ok, exit 1.
#                                 Sets SVM_ACCORD, $ACCORD's absolute path
#                                 (the host has it there)
#   svm_host_run LOG OUT SCRIPT [FILE...]
#                                 boots the host and runs SCRIPT there with
#                                 /bin/sh (busybox): the FILEs are copied
#                                 in at their paths on this machine, the
#                                 files SCRIPT writes under /out come back
#                                 in the directory OUT; the console in LOG.
#                                 Sets SVM_STATUS (QEMU's exit status) and
#                                 SVM_CPU (the host CPU's flags SVM needs:
#                                 "npt svm" when both are there)
#   svm_host_required NAME        after svm_host_run: unless the host had
#                                 SVM and NPT, NAME skipped with the
#                                 reason, the summary, exit 0
#   svm_quote ARG...              the ARGs quoted for the host's sh
#
# Needs qemu-system-x86_64 (Debian's qemu-system-x86), cpio and tar.

SVM_IMG=${SVM_IMG:-build/svm-host}
SVM_TIMEOUT=${SVM_TIMEOUT:-1200}
SVM_MEMORY=${SVM_MEMORY:-3G}

# svm_host_image NAME
svm_host_image() {
	local name=$1 accord=${ACCORD:-build/accord}
	if [ ! -x "$accord" ]; then
		tap_not_ok "$name" "$accord is missing (make all)"
		tap_summary
		exit 1
	fi
	SVM_ACCORD=$(cd "$(dirname "$accord")" && pwd)/$(basename "$accord")
	if ! command -v qemu-system-x86_64 >/dev/null; then
		tap_skip "$name" "no qemu-system-x86_64 (Debian package qemu-system-x86) for a host with AMD-V"
		tap_summary
		exit 0
	fi
	if ! PATH=$PWD/build:$PATH MKGUEST_OUT=$PWD/$SVM_IMG GUEST_MODULES="kvm_amd virtio_pci virtio_blk" \
		GUEST_TOOLS=accord tools/mkguest >"$tmp/svm-mkguest.log" 2>&1; then
		tap_skip "$name" "no host image (tools/mkguest failed: $(tail -n 1 "$tmp/svm-mkguest.log"))"
		tap_summary
		exit 0
	fi
}

# svm_host_run LOG OUT SCRIPT [FILE...]
svm_host_run() {
	local log=$1 out=$2 script=$3 stage=$tmp/svm-stage f
	shift 3
	rm -rf "$stage" "$out"
	mkdir -p "$stage/svm" "$out"
	# under /svm/files: the host's /init mounts a tmpfs on /tmp, which
	# would hide files staged there (accord's own binary in a clone under
	# /tmp among them); its script copies them out
	for f in "$SVM_ACCORD" "$@"; do
		mkdir -p "$stage/svm/files$(dirname "$f")"
		cp -L "$f" "$stage/svm/files$f"
	done
	cp "$script" "$stage/svm/run.sh"
	# the host's own check of its CPU, then the caller's script; what it
	# left in /out goes to the disk as a tar archive
	cat >"$stage/autotest.sh" <<'EOF'
#!/bin/sh
echo "svm-host: cpu $(grep -o -w -E 'svm|npt' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "svm-host: kvm $(ls /dev/kvm 2>&1)"
mkdir -p /out
cp -a /svm/files/. /
(cd /svm && sh ./run.sh)
echo "svm-host: script status $?"
tar -cf /dev/vda -C /out .
echo "svm-host: done"
poweroff -f
EOF
	chmod 755 "$stage/autotest.sh"
	(cd "$stage" && find . -mindepth 1 | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$tmp/svm-extra.cpio.gz"
	# a later archive's files replace the image's (/autotest.sh)
	cat "$SVM_IMG/initrd.cpio.gz" "$tmp/svm-extra.cpio.gz" >"$tmp/svm-initrd.cpio.gz"
	rm -f "$tmp/svm-out.img"
	truncate -s 256M "$tmp/svm-out.img"
	SVM_STATUS=0
	# one CPU: QEMU's TCG gives two CPUs unsynchronized TSCs (Linux there
	# marks the TSC unstable), and a vCPU thread moving between them would
	# see its guest's TSC jump, which no real host does
	timeout --kill-after=10 "$SVM_TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m "$SVM_MEMORY" -smp 1 \
		-nographic -no-reboot -kernel "$SVM_IMG/vmlinuz" -initrd "$tmp/svm-initrd.cpio.gz" \
		-append "console=ttyS0 panic=-1 quiet accord.autotest" \
		-drive "file=$tmp/svm-out.img,format=raw,if=virtio" </dev/null >"$log" 2>&1 || SVM_STATUS=$?
	SVM_LOG=$log
	SVM_CPU=$(sed -n 's/\r$//; s/^svm-host: cpu //p' "$log" | head -n 1)
	SVM_CPU=${SVM_CPU% }
	tar -xf "$tmp/svm-out.img" -C "$out" 2>/dev/null || true
	rm -f "$tmp/svm-out.img" "$tmp/svm-initrd.cpio.gz" "$tmp/svm-extra.cpio.gz"
	rm -rf "$stage"
}

# svm_host_required NAME
svm_host_required() {
	local why
	[ "$SVM_CPU" = "npt svm" ] && return 0
	why=$(grep -m1 -i 'error\|qemu-system' "$SVM_LOG")
	grep -q '^svm-host: cpu' "$SVM_LOG" && why="its CPU flags: '${SVM_CPU}' (QEMU's -cpu max without SVM or NPT)"
	tap_skip "$1" "QEMU gives no host with SVM and nested paging: ${why:-QEMU status $SVM_STATUS}"
	tap_summary
	exit 0
}

# svm_quote ARG...: each in single quotes, for a line of the host's script
svm_quote() {
	local a out=""
	for a in "$@"; do out+="'${a//\'/\'\\\'\'}' "; done
	echo "$out"
}
