#!/bin/sh
# Prints the path of the stock Debian kernel (bzImage) that tests/unit_boot
# loads, extracting it once from its package into DIR (default
# build/kernel). The package comes from ../shared/debs or build/cache/debs
# (where tools/mkguest downloads), or ACCORD_KERNEL_DEB. Prints nothing when
# there is no package, so the test can skip with a reason.
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build/kernel}
deb=${ACCORD_KERNEL_DEB:-}
if [ -z "$deb" ]; then
	for d in "$root/../shared/debs" "$root/build/cache/debs"; do
		[ -d "$d" ] || continue
		deb=$(find "$d" -maxdepth 1 -name 'linux-image-[0-9]*-amd64_*.deb' | sort -V | tail -n 1)
		[ -n "$deb" ] && break
	done
fi
[ -n "$deb" ] && [ -f "$deb" ] || exit 0
release=$(basename "$deb" | sed 's/^linux-image-\([^_]*\)_.*/\1/')
kernel=$dir/boot/vmlinuz-$release
if [ ! -f "$kernel" ]; then
	mkdir -p "$dir"
	dpkg-deb -x "$deb" "$dir"
fi
echo "$kernel"
