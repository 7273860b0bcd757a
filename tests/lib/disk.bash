# Host-side checks of a disk image the storage tests' guests wrote (sourced
# after guest-tap.bash): the MiB the guest copied to 48 MiB has the pattern,
# and the file system the guest made is clean ext4 holding /hello.txt and
# /dir/blob.
#
# disk_check_image IMAGE PATTERN_SHA256 HELLO_TEXT TMPDIR
disk_check_image() {
	local disk=$1 pattern_sum=$2 hello_text=$3 tmpdir=$4
	local copy_sum features hello blob_sum

	copy_sum=$(dd if="$disk" bs=1048576 skip=48 count=1 status=none | sha256sum | cut -d' ' -f1)
	if [ "$copy_sum" = "$pattern_sum" ]; then
		tap_ok "the copy at 48 MiB is in the image"
	else
		tap_not_ok "the copy at 48 MiB is in the image" "sha256 $copy_sum"
	fi
	if ! command -v e2fsck >/dev/null || ! command -v debugfs >/dev/null; then
		tap_skip "e2fsck and debugfs on the image" "e2fsprogs not installed"
		return
	fi
	if e2fsck -fn "$disk" >"$tmpdir/fsck.log" 2>&1; then
		tap_ok "e2fsck -fn finds the guest's file system clean"
	else
		tap_not_ok "e2fsck -fn" "$(tail -n 3 "$tmpdir/fsck.log" | tr '\n' ' ')"
	fi
	# ext4, not ext2: a journal and extents (debugfs prints the features
	# space-separated after "Filesystem features:")
	features=" $(debugfs -R features "$disk" 2>/dev/null | sed -n 's/^Filesystem features://p') "
	case "$features" in
	*" has_journal "*" extent "* | *" extent "*" has_journal "*)
		tap_ok "the guest's file system is ext4 (has_journal, extent)"
		;;
	*)
		tap_not_ok "the guest's file system is ext4" "features:$features"
		;;
	esac
	hello=$(debugfs -R "cat /hello.txt" "$disk" 2>/dev/null)
	blob_sum=$(debugfs -R "cat /dir/blob" "$disk" 2>/dev/null | sha256sum | cut -d' ' -f1)
	if [ "$hello" = "$hello_text" ] && [ "$blob_sum" = "$pattern_sum" ]; then
		tap_ok "debugfs reads the guest's files back"
	else
		tap_not_ok "debugfs reads the guest's files back" "hello.txt '$hello', blob $blob_sum"
	fi
}
