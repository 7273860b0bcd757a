# Sourced by the tests that boot the stock Debian kernel, from the top of
# the tree: guest-tap.bash and console.bash, ACCORD (build/accord) and
# ACCEL (emu) unless set, the guest image from tools/mkguest, and the
# host's side of the network tests. The functions use the caller's $IMG and
# $tmp.
#
#   guest_image NAME MODULES [TOOLS]  build $IMG with GUEST_MODULES and
#                                     GUEST_TOOLS (its log: $tmp/mkguest.log)
#   guest_image_default NAME          build/guest-image, made when missing
#   host_www_start                    a python3 http.server on loopback
#   host_tap_create NAME NET MAC      a TAP interface for a second NIC
#   guest_wget_checks                 the guest fetches host_www_start's files
#   guest_httpd_start                 busybox httpd in the guest, port 8080
#   host_fetch_token NAME URL         the host fetches the guest's token
#   host_fetch_blob NAME URL [MORE]   and its MiB
#   guest_boot_wait NAME              the guest's init is ready (status 0)
#   guest_booted NAME                 the guest's init is ready, or the end
#
# Without a kernel and initrd the guest_image functions print NAME as
# skipped with the reason, the summary, and end the script with status 0.

. tests/lib/guest-tap.bash
. tests/lib/console.bash

ACCORD=${ACCORD:-build/accord}
ACCEL=${ACCEL:-emu}

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

# host_www_start: $tmp/www holds a random token and a random MiB, served by
# a python3 http.server on 127.0.0.1 (its log: $tmp/http.log). Sets token,
# token_sum, blob_sum (sha256), http_pid (for the caller's cleanup),
# http_port (empty when the server did not start) and fwd_port, a free
# loopback port for a hostfwd.
host_www_start() {
	token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	mkdir -p "$tmp/www"
	printf '%s' "$token" >"$tmp/www/token"
	head -c 1048576 /dev/urandom >"$tmp/www/blob"
	token_sum=$(sha256sum <"$tmp/www/token" | cut -d' ' -f1)
	blob_sum=$(sha256sum <"$tmp/www/blob" | cut -d' ' -f1)
	(cd "$tmp/www" && exec python3 -u -m http.server 0 --bind 127.0.0.1) >"$tmp/http.log" 2>&1 &
	http_pid=$!
	http_port=
	for _ in $(seq 50); do
		http_port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$tmp/http.log" | head -n 1)
		[ -n "$http_port" ] && break
		sleep 0.2
	done
	fwd_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
}

# host_tap_create NAME NET MAC: as root with /dev/net/tun and ip, the TAP
# interface NAME with the host at NET.X.1/24 (X random), up. Sets tap_if
# (empty without one; the caller's cleanup deletes it), host_ip, guest_ip
# (NET.X.2), tap_args (the --net option with mac=MAC, or none) and tap_why
# (why there is no interface).
host_tap_create() {
	local name=$1 net=$2 mac=$3 net3
	tap_args=()
	tap_why=
	if [ "$(id -u)" -ne 0 ]; then
		tap_why="not root"
	elif [ ! -c /dev/net/tun ]; then
		tap_why="/dev/net/tun is unavailable"
	elif ! command -v ip >/dev/null; then
		tap_why="no ip command (iproute2)"
	else
		tap_if=$name
		net3=$((RANDOM % 200 + 20))
		host_ip=$net.$net3.1
		guest_ip=$net.$net3.2
		if ip tuntap add dev "$tap_if" mode tap 2>"$tmp/tap.log" &&
			ip addr add "$host_ip/24" dev "$tap_if" 2>>"$tmp/tap.log" &&
			ip link set "$tap_if" up 2>>"$tmp/tap.log"; then
			tap_args=(--net "tap=$tap_if,mac=$mac")
		else
			tap_why="cannot create a TAP interface: $(head -n 1 "$tmp/tap.log")"
			ip link del "$tap_if" 2>/dev/null
			tap_if=
		fi
	fi
}

# guest_wget_checks: the guest (its NIC up) fetches the token and the MiB
# of host_www_start from 10.0.2.2, slirp's address for the host
guest_wget_checks() {
	console_check "wget from the host's loopback via 10.0.2.2: the token, byte-exact" \
		"echo T\$((1+1)) \$(wget -q -O - http://10.0.2.2:$http_port/token | sha256sum) T\$((2+1))" \
		"T2 $token_sum - T3"
	console_check "wget of a random MiB from the host, byte-exact" \
		"echo B\$((1+1)) \$(wget -q -O - http://10.0.2.2:$http_port/blob | sha256sum) B\$((2+1))" \
		"B2 $blob_sum - B3" 300
}

# guest_httpd_start: busybox httpd in the guest serves a random token and a
# random MiB from /www on port 8080. Sets token2 and guest_blob_sum (the
# MiB's sha256 the guest printed; empty when it did not).
guest_httpd_start() {
	token2=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	console_check "busybox httpd serves a token and a random MiB in the guest" \
		"mkdir -p /www && printf %s $token2 >/www/token && dd if=/dev/urandom of=/www/blob bs=1024 count=1024 2>/dev/null && httpd -p 8080 -h /www && echo S\$((1+1)) \$(sha256sum </www/blob) S\$((2+1))" \
		"S2 [0-9a-f]{64} - S3"
	guest_blob_sum=$(tr -d '\r' <"$CONSOLE_LOG" | sed -n 's/^S2 \([0-9a-f]\{64\}\) - S3$/\1/p' | tail -n 1)
}

# host_fetch_token NAME URL: NAME passes when curl on the host gets the
# guest's $token2 from URL
host_fetch_token() {
	local got
	got=$(curl -s --max-time 60 "$2")
	if [ "$got" = "$token2" ]; then
		tap_ok "$1"
	else
		tap_not_ok "$1" "got '$(printf %s "$got" | head -c 80)'"
	fi
}

# host_fetch_blob NAME URL [MORE]: NAME passes (told as NAME MORE) when the
# MiB curl on the host gets from URL has the guest's $guest_blob_sum
host_fetch_blob() {
	local got
	got=$(curl -s --max-time 300 "$2" | sha256sum | cut -d' ' -f1)
	if [ -n "$guest_blob_sum" ] && [ "$got" = "$guest_blob_sum" ]; then
		tap_ok "$1${3:+ $3}"
	else
		tap_not_ok "$1" "host $got, guest '$guest_blob_sum'"
	fi
}

# guest_boot_wait NAME: NAME passes once the guest's init says it is ready
# within BOOT_TIMEOUT seconds; otherwise NAME fails with the console's last
# lines, the VMM is ended and the status is 1
guest_boot_wait() {
	if ! console_wait "accord-guest: init ready" "$BOOT_TIMEOUT"; then
		tap_not_ok "$1" "no 'init ready' within ${BOOT_TIMEOUT}s"
		console_tail 25
		console_finish 1
		return 1
	fi
	tap_ok "$1"
}

# guest_booted NAME: guest_boot_wait, and when the guest did not boot the
# script ends (the summary, status 0)
guest_booted() {
	guest_boot_wait "$1" && return
	tap_summary
	exit 0
}
