#!/usr/bin/env bash
# Installs the Debian packages that building and testing accord need, when
# they are missing. Non-interactive; needs root (or sudo) only when something
# is missing. tests/run calls it first.
set -euo pipefail

PACKAGES=(
	build-essential
	liblz4-dev zlib1g-dev liblzma-dev libzstd-dev	# kernel payloads
	libcapstone-dev					# disassembly in traces
	qemu-system-x86					# the peer in tests
	cpio gzip xz-utils zstd				# tools/mkguest
	e2fsprogs					# disk images
	gdb						# tests/gdbstub.sh
	bc						# bench/
	python3						# tools/lockstep, report checks
	libjson-c-dev					# the control API
	curl socat python3-yaml				# tests/api.sh
	libslirp-dev					# --net user
	iproute2					# tests/virtio_net.sh (TAP)
	libseccomp-dev					# the sandbox
	clang libclang-rt-14-dev			# fuzzing, ASan/UBSan (tests/fuzz, make asan)
	hyperv-daemons linuxptp				# tests/hyperv_util.sh (hv_kvp_daemon, phc_ctl)
)

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || {
		echo "setup: not root and no sudo; install: ${missing[*]}" >&2
		exit 1
	}
	sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
apt_install() {
	"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}
# stale or absent package lists: update once and retry
apt_install || { "${sudo[@]}" apt-get update -q && apt_install; }
