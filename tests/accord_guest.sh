#!/usr/bin/env bash
# Runs each guest test kernel on accord's emu engine, booted both as
# Multiboot (NAME.elf) and as PVH (NAME.pvh.elf), and reports TAP. accord
# follows the SDM, so it has no list of known deviations: every FAIL counts.
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

names=$(guest_kernel_names)
[ -n "$names" ] || tap_not_ok "accord_guest: guest kernels" "guest/tests/ has none"
for name in $names; do
	for variant in multiboot pvh; do
		image=build/guest/$name.elf
		[ "$variant" = pvh ] && image=build/guest/$name.pvh.elf
		if [ ! -f "$image" ]; then
			tap_not_ok "$name.$variant: clean run" "$image is missing (make guests)"
			continue
		fi
		# shellcheck disable=SC2046 # the family's options are words
		guest_tap_run "$name.$variant" "$name" "$GUEST_TIMEOUT" \
			"$ACCORD" run --kernel "$image" --debug-exit --accel "$ACCEL" $(guest_accord_opts "$name")
	done
done
tap_summary
