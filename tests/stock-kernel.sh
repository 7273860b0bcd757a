#!/bin/sh
# Extracts the stock Debian kernel the boot tests use into DIR (default
# build/kernel) once, and prints the path of its vmlinuz. Prints nothing
# when the package is not there, so tests can skip with a reason.
# ACCORD_KERNEL_DEB names another linux-image .deb.
set -e
dir=${1:-build/kernel}
deb=${ACCORD_KERNEL_DEB:-$(ls ../shared/debs/linux-image-*-amd64_*.deb 2>/dev/null | head -n 1)}
[ -n "$deb" ] && [ -f "$deb" ] || exit 0
name=$(basename "$deb" | sed 's/^linux-image-\([^_]*\)_.*/\1/')
kernel="$dir/boot/vmlinuz-$name"
if [ ! -f "$kernel" ]; then
	mkdir -p "$dir"
	dpkg-deb -x "$deb" "$dir"
fi
echo "$kernel"
