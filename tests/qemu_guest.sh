#!/usr/bin/env bash
# The reference check of the guest test kernels: runs each one on QEMU TCG,
# booted both as Multiboot (NAME.elf) and as PVH (NAME.pvh.elf), and reports
# TAP, each on the machine its family asks for (guest/families). A test that
# fails here is a wrong test, unless QEMU is the one at odds with the SDM:
# those cases are listed in guest/known-deviations, with the section that
# decides.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash

QEMU=${QEMU:-qemu-system-x86_64}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-120}

load_known_deviations qemu:tcg kvm=none
test_tmp

if ! command -v "$QEMU" >/dev/null; then
	tap_skip "qemu_guest" "$QEMU is not installed"
	tap_summary
	exit 0
fi

guest_tap_run_all qemu "$tmp" "$QEMU" -accel tcg -kernel @KERNEL @ARGS \
	-device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial stdio -display none -monitor none -no-reboot -m 128
tap_summary
