#!/usr/bin/env bash
# Runs each guest test kernel on accord's emu engine, booted both as
# Multiboot (NAME.elf) and as PVH (NAME.pvh.elf), on the machine its family
# asks for (guest/families), and reports TAP. Every FAIL counts, unless
# guest/known-deviations lists it for accord with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash

ACCORD=${ACCORD:-build/accord}
ACCEL=${ACCEL:-emu}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-300}

if [ ! -x "$ACCORD" ]; then
	tap_not_ok "accord_guest" "$ACCORD is missing (make all)"
	tap_summary
	exit 1
fi

# the machine the entries' conditions are matched against: on kvm the
# default irqchip (split where the host's KVM can; the one family with a
# personality, hyperv, runs with accord's LAPIC and has no irqchip entries)
if [ "$ACCEL" = emu ]; then
	load_known_deviations "accord:$ACCEL" "kvm=none irqchip=user"
else
	load_known_deviations "accord:$ACCEL" "kvm=$(kvm_kind "$ACCORD") irqchip=$(kvm_irqchip "$ACCORD")"
fi
test_tmp

guest_tap_run_all accord "$tmp" "$ACCORD" run --kernel @KERNEL --debug-exit --accel "$ACCEL" @ARGS
tap_summary
