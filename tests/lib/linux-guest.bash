# Sourced by the tests that boot the stock Debian kernel (after
# guest-tap.bash): the guest image from tools/mkguest.
# They use the caller's $IMG and $tmp.
#
#   guest_image NAME MODULES [TOOLS]  build $IMG with GUEST_MODULES and
#                                     GUEST_TOOLS (its log: $tmp/mkguest.log)
#   guest_image_default NAME          build/guest-image, made when missing
#
# Without a kernel and initrd the guest_image functions print NAME as
# skipped with the reason, the summary, and end the script with status 0.

# guest_image NAME MODULES [TOOLS]
guest_image() {
	local name=$1 modules=$2 tools=${3:-}
	MKGUEST_OUT=$PWD/$IMG GUEST_TOOLS=$tools GUEST_MODULES=$modules tools/mkguest >"$tmp/mkguest.log" 2>&1
	if [ ! -f "$IMG/vmlinuz" ] || [ ! -f "$IMG/initrd.cpio.gz" ]; then
		tap_skip "$name" "no guest image (tools/mkguest failed: $(tail -n 1 "$tmp/mkguest.log"))"
		tap_summary
		exit 0
	fi
}

# guest_image_default NAME: the default image (IMG=build/guest-image),
# made by tools/mkguest only when it is not there yet
guest_image_default() {
	if [ ! -f "$IMG/vmlinuz" ] || [ ! -f "$IMG/initrd.cpio.gz" ]; then
		tools/mkguest >/dev/null 2>&1 || true
	fi
	if [ ! -f "$IMG/vmlinuz" ]; then
		tap_skip "$1" "no guest image (tools/mkguest failed: no kernel package)"
		tap_summary
		exit 0
	fi
}
