#!/usr/bin/env bash
# Configuring and starting a VM through the control API (issue 8):
# `accord run --name NAME` without --kernel waits in the state
# "configuring"; the pre-boot routes check what they can at once and
# answer 400 with a JSON error for bad values and files (with the line
# `accord run` prints for the same mistake); the start action answers 400
# for a configuration that went bad since (a kernel file removed, a disk
# removed, a host port taken) and the process keeps serving, so that the
# configuration can be fixed and started again; then one Linux boot of the
# stock kernel configured only through the API: 2 vCPUs, 256 MiB, a disk,
# a user NIC with a host forward, virtio-rng, checked from inside the
# guest; GET /vm/config shows NICs, rng and console; pre-boot routes and a
# second start answer 409 afterwards; a drive and a NIC removed with DELETE
# before the start are not in the guest, DELETE after it is 409. Also: a VM
# configured on the command line refuses the pre-boot routes, and stop
# before the start ends the process with status 0.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/api.bash

TICKER=build/api-guest/ticker.elf
BOOT_TIMEOUT=${BOOT_TIMEOUT:-400}
cleanup() {
	[ -n "${holder:-}" ] && kill "$holder" 2>/dev/null
}
api_test_tmp cleanup
API_MAX_TIME=60

api_error() { jq_ 'd["error"]'; }

# cli_line ARGS...: the one stderr line of `accord run ARGS...`, without
# "accord: ", the line the API must answer with for the same mistake
cli_line() {
	"$ACCORD" run "$@" </dev/null 2>&1 >/dev/null | head -n 1 | sed 's/^accord: //'
}

# ask METHOD NAME STATUS [REGEX] SOCKET PATH [CURL ARGS...]: a request
# answered with STATUS (and for errors a JSON error matching REGEX)
ask() {
	local method=$1 name=$2 want=$3 regex=$4 sock=$5 path=$6 code
	shift 6
	code=$(api "$sock" "$method" "$path" "$@")
	WHY="got $code: $(head -c 300 "$tmp/body")"
	if [ "$want" = 204 ]; then
		[ "$code" = 204 ]
	else
		[ "$code" = "$want" ] && api_error | grep -qE -- "$regex"
	fi
	result "$name"
}

# put NAME STATUS [REGEX] SOCKET PATH JSON
put() { ask PUT "$1" "$2" "$3" "$4" "$5" -d "$6"; }

# put_exact NAME STATUS LINE SOCKET PATH JSON: an error that is exactly LINE
put_exact() {
	local name=$1 want=$2 line=$3 sock=$4 path=$5 json=$6 code
	code=$(api "$sock" PUT "$path" -d "$json")
	WHY="got $code: $(head -c 300 "$tmp/body"); want: $line"
	[ -n "$line" ] && [ "$code" = "$want" ] && [ "$(api_error)" = "$line" ]
	result "$name"
}

# del NAME STATUS [REGEX] SOCKET PATH
del() { ask DELETE "$@"; }

# free TCP ports on 127.0.0.1
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

kernel=$(tests/stock-kernel.sh)

# ---- the command line ----
"$ACCORD" run --name cfg-x --initrd /dev/null </dev/null >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "need --kernel" "$tmp/err"; result "--initrd without --kernel: one line, status 1"

# ---- a VM configured on the command line has no pre-boot phase ----
if [ -f "$TICKER" ]; then
	"$ACCORD" run --kernel "$TICKER" --accel emu --name cfg-t </dev/null >"$tmp/t.log" 2>&1 &
	pid_t=$!
	pids+=("$pid_t")
	wait_for 60 grep -q '^tick ' "$tmp/t.log"
	put "--kernel VM: PUT /vm/machine-config is 409" 409 "has started" "$SOCKDIR/cfg-t.sock" \
		/vm/machine-config '{"vcpus": 2}'
	put "--kernel VM: the start action is 409" 409 "already started" "$SOCKDIR/cfg-t.sock" /vm/actions \
		'{"action": "start"}'
	"$ACCORD" stop cfg-t
	wait_for 60 gone "$pid_t"
else
	tap_not_ok "--kernel VM refuses pre-boot routes" "$TICKER missing (make tests)"
fi

# ---- stop before the start ----
"$ACCORD" run --name cfg-s --accel emu </dev/null >"$tmp/s.log" 2>&1 &
pid_s=$!
pids+=("$pid_s")
wait_for 30 test -S "$SOCKDIR/cfg-s.sock"
code=$(api "$SOCKDIR/cfg-s.sock" GET /vm)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] && [ "$(jq_ '(d["state"], d["engine"], d["uptime_ms"])')" = "('configuring', None, 0)" ]; result "without --kernel: GET /vm says configuring, no engine yet"
"$ACCORD" stop cfg-s >"$tmp/err" 2>&1
rc=$?
wait_for 30 gone "$pid_s"
wait "$pid_s"
rc_s=$?
WHY="client $rc, VM $rc_s: $(cat "$tmp/err" "$tmp/s.log")"
[ $rc -eq 0 ] && [ $rc_s -eq 0 ] && [ ! -e "$SOCKDIR/cfg-s.sock" ] && [ ! -s "$tmp/s.log" ]; result "stop before the start: status 0, silently, the socket removed"

# ---- the kvm engine, where this host has one: the VM is built on the API's
# thread and run on the vCPU threads ----
if [ -f "$TICKER" ]; then
	ACCORD_VERBOSE=1 "$ACCORD" run --name cfg-k </dev/null >"$tmp/k.log" 2>&1 &
	pid_k=$!
	pids+=("$pid_k")
	wait_for 30 test -S "$SOCKDIR/cfg-k.sock"
	code=$(api "$SOCKDIR/cfg-k.sock" PUT /vm/machine-config -d '{"accel": "kvm", "vcpus": 2}')
	if [ "$code" = 400 ] && api_error | grep -q "^accel kvm: "; then
		tap_skip "kvm: a ticker configured through the API runs" "no kvm engine here ($(api_error))"
	else
		# KVM's LAPICs asked for through the API: taken where the host's
		# KVM can, else refused now with the capability it lacks
		ic=$(api "$SOCKDIR/cfg-k.sock" PUT /vm/machine-config -d '{"irqchip": "split"}')
		icerr=$(api_error)
		api "$SOCKDIR/cfg-k.sock" PUT /vm/boot-source -d "{\"kernel\": \"$TICKER\"}" >/dev/null
		start=$(api "$SOCKDIR/cfg-k.sock" PUT /vm/actions -d '{"action": "start"}')
		WHY="machine-config $code, start $start: $(head -c 200 "$tmp/body") $(tail -n 2 "$tmp/k.log")"
		[ "$code" = 204 ] && [ "$start" = 204 ] && wait_for 60 grep -q '^tick 3' "$tmp/k.log" &&
			[ "$(api "$SOCKDIR/cfg-k.sock" GET /vm)" = 200 ] && [ "$(jq_ 'd["engine"]')" = kvm ]; result "kvm: a ticker configured through the API runs on kvm"
		WHY="PUT irqchip split: $ic $icerr; $(grep 'irqchip' "$tmp/k.log")"
		if [ "$ic" = 400 ] && [[ "$icerr" == "irqchip split: the host's KVM lacks "* ]]; then
			tap_skip "kvm: the API's irqchip split is the VM's" "refused on this host: $icerr"
		else
			[ "$ic" = 204 ] && grep -q "^accord: kvm: irqchip split: the LAPICs are KVM's" "$tmp/k.log" &&
				[ "$(api "$SOCKDIR/cfg-k.sock" GET /vm/config)" = 200 ] && [ "$(jq_ 'd["irqchip"]')" = split ]
			result "kvm: the API's irqchip split is the VM's"
		fi
	fi
	"$ACCORD" stop cfg-k >/dev/null 2>&1
	wait_for 30 gone "$pid_k"
fi

if [ -z "$kernel" ]; then
	tap_skip "configuring and booting Linux through the API" "no stock kernel package in ../shared/debs"
	tap_summary
	exit 0
fi
IMG=build/guest-image-apicfg
guest_image "configuring and booting Linux through the API" "virtio_pci virtio_blk virtio_net virtio-rng"

# ---- one process: every mistake first, then the boot ----
S=$SOCKDIR/cfg.sock
console_start "$tmp/linux.log" "$ACCORD" run --name cfg --accel emu
pids+=("$CONSOLE_PID")
wait_for 30 test -S "$S"

code=$(api "$S" GET /vm/config)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] &&
	[ "$(jq_ '(d["kernel"], d["engine"], d["vcpus"], d["memory_mib"], d["accel"], d["disks"], d["nics"], d["rng"], d["console"])')" = \
		"(None, None, 1, 512, 'emu', [], [], False, 'serial')" ]; result "GET /vm/config before any PUT: the command line's configuration and the defaults"
code=$(api "$S" GET /vm/counters)
[ "$code" = 409 ]; result "GET /vm/counters before the start: 409"
"$ACCORD" ls >"$tmp/ls" 2>&1
WHY=$(tr '\n' '|' <"$tmp/ls")
grep -qE "^cfg +[0-9]+ +configuring +- +$S\$" "$tmp/ls"; result "accord ls: cfg is configuring, no engine yet"
put "start without a boot source: 400" 400 "no boot source" "$S" /vm/actions '{"action": "start"}'
put "pause before the start: 409" 409 "not started" "$S" /vm/actions '{"action": "pause"}'
put "shutdown before the start: 409" 409 "not started" "$S" /vm/actions '{"action": "shutdown"}'

# machine-config
put "zero vCPUs: 400" 400 "^vcpus 0: expected a number from 1 to 64$" "$S" /vm/machine-config '{"vcpus": 0}'
put "65 vCPUs: 400" 400 "^vcpus 65: " "$S" /vm/machine-config '{"vcpus": 65}'
host_mib=$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)
put "memory beyond the host's RAM: 400" 400 "^memory_mib $((host_mib * 2)): more than this host's [0-9]+ MiB of RAM$" \
	"$S" /vm/machine-config "{\"memory_mib\": $((host_mib * 2))}"
put "8 MiB of memory: 400" 400 "^memory_mib 8: at least 16M" "$S" /vm/machine-config '{"memory_mib": 8}'
put "absurd memory: 400" 400 "memory_mib" "$S" /vm/machine-config '{"memory_mib": 99999999999999}'
put "negative memory: 400" 400 "memory_mib" "$S" /vm/machine-config '{"memory_mib": -256}'
put "vcpus as a string: 400" 400 "'vcpus' must be an integer" "$S" /vm/machine-config '{"vcpus": "2"}'
put "vcpus as a float: 400" 400 "'vcpus' must be an integer" "$S" /vm/machine-config '{"vcpus": 2.0}'
put "unknown accel: 400" 400 "^accel 'warp': expected auto, emu or kvm$" "$S" /vm/machine-config '{"accel": "warp"}'
put "unknown personality: 400" 400 "expected kvm or hyperv" "$S" /vm/machine-config '{"personality": "xen"}'
put "unknown irqchip: 400" 400 "^irqchip 'bogus': expected split or user$" "$S" /vm/machine-config '{"irqchip": "bogus"}'
put "irqchip split on emu: 400" 400 "^irqchip split: the emu engine has no in-kernel LAPIC" "$S" /vm/machine-config \
	'{"irqchip": "split"}'
put "unknown field: 400" 400 "unknown field 'cpus'" "$S" /vm/machine-config '{"cpus": 2}'
put "malformed JSON: 400" 400 "malformed JSON" "$S" /vm/machine-config '{"vcpus": 2'
code=$(api "$S" GET /vm/config)
WHY="$code $(cat "$tmp/body")"
[ "$(jq_ '(d["vcpus"], d["memory_mib"], d["accel"], d["personality"], d["irqchip"])')" = "(1, 512, 'emu', 'kvm', 'auto')" ]; result "refused PUTs changed nothing"

# boot-source: the same line as accord run's for the same file
want=$(cli_line --kernel "$tmp/nope" --accel emu)
put_exact "missing kernel file: 400 with accord run's line ($want)" 400 "$want" "$S" /vm/boot-source \
	"{\"kernel\": \"$tmp/nope\"}"
head -c 5000 "$kernel" >"$tmp/cut.bin"
want=$(cli_line --kernel "$tmp/cut.bin" --accel emu)
put_exact "truncated kernel: 400 with accord run's line ($want)" 400 "$want" "$S" /vm/boot-source \
	"{\"kernel\": \"$tmp/cut.bin\"}"
put "missing initrd: 400" 400 "^initrd $tmp/none: No such file or directory$" "$S" /vm/boot-source \
	"{\"kernel\": \"$kernel\", \"initrd\": \"$tmp/none\"}"
put "boot source without a kernel: 400" 400 "'kernel' is required" "$S" /vm/boot-source '{"cmdline": "x"}'

# drives
truncate -s 8M "$tmp/disk.img"
printf 'accord-apicfg-disk-7' | dd of="$tmp/disk.img" conv=notrunc 2>/dev/null
want=$(cli_line --kernel "$TICKER" --accel emu --disk path="$tmp/nodisk")
put_exact "a drive path that does not exist: 400 with accord run's line ($want)" 400 "$want" "$S" \
	/vm/drives/root "{\"path\": \"$tmp/nodisk\"}"
chmod 0444 "$tmp/disk.img"
if [ "$(id -u)" != 0 ]; then
	put "a read-only file as a writable drive: 400" 400 "Permission denied" "$S" /vm/drives/root \
		"{\"path\": \"$tmp/disk.img\"}"
fi
chmod 0644 "$tmp/disk.img"
put "a drive id with a slash: 404" 404 "no such resource" "$S" /vm/drives/a/b "{\"path\": \"$tmp/disk.img\"}"
put "a drive id starting with a dot: 400" 400 "an id is" "$S" /vm/drives/.hidden "{\"path\": \"$tmp/disk.img\"}"
put "read_only not a boolean: 400" 400 "'read_only' must be true or false" "$S" /vm/drives/root \
	"{\"path\": \"$tmp/disk.img\", \"read_only\": 1}"

# network interfaces
put "unknown backend: 400" 400 "expected user or tap" "$S" /vm/network-interfaces/eth0 '{"backend": "bridge"}'
put "tap without a name: 400" 400 "'tap' must name" "$S" /vm/network-interfaces/eth0 '{"backend": "tap"}'
put "hostfwd with tap: 400" 400 "user backend" "$S" /vm/network-interfaces/eth0 \
	'{"backend": "tap", "tap": "tap9", "hostfwd": ["tcp::1-:2"]}'
put "multicast MAC: 400" 400 "^mac '01:00:00:00:00:01'" "$S" /vm/network-interfaces/eth0 \
	'{"backend": "user", "mac": "01:00:00:00:00:01"}'
put "bad hostfwd: 400" 400 "^hostfwd 'tcp:2222:22'" "$S" /vm/network-interfaces/eth0 \
	'{"backend": "user", "hostfwd": ["tcp:2222:22"]}'
put "hostfwd not strings: 400" 400 "hostfwd" "$S" /vm/network-interfaces/eth0 '{"backend": "user", "hostfwd": [22]}'
put "unknown console: 400" 400 "expected serial or virtio" "$S" /vm/console '{"kind": "vga"}'
put "rng without enabled: 400" 400 "'enabled' is required" "$S" /vm/rng '{}'
code=$(api "$S" GET /vm/config)
WHY="$code $(cat "$tmp/body")"
[ "$(jq_ '(d["kernel"], d["disks"], d["nics"], d["rng"], d["console"])')" = "(None, [], [], False, 'serial')" ]; result "still nothing configured after the refused PUTs"

# ---- start-time failures: nothing is built, the configuration can be fixed ----
cp "$IMG/vmlinuz" "$tmp/vmlinuz"
put "machine-config: 2 vCPUs, 256 MiB" 204 "" "$S" /vm/machine-config '{"vcpus": 2, "memory_mib": 256, "accel": "emu"}'
put "boot-source: a copy of the stock kernel, the initrd" 204 "" "$S" /vm/boot-source \
	"{\"kernel\": \"$tmp/vmlinuz\", \"initrd\": \"$IMG/initrd.cpio.gz\", \"cmdline\": \"console=ttyS0 panic=-1\"}"
rm "$tmp/vmlinuz"
want=$(cli_line --kernel "$tmp/vmlinuz" --accel emu)
put_exact "start after the kernel file was removed: 400 with accord run's line" 400 "$want" "$S" /vm/actions \
	'{"action": "start"}'
put "boot-source: the stock kernel" 204 "" "$S" /vm/boot-source \
	"{\"kernel\": \"$IMG/vmlinuz\", \"initrd\": \"$IMG/initrd.cpio.gz\", \"cmdline\": \"console=ttyS0 panic=-1\"}"
cp "$tmp/disk.img" "$tmp/gone.img"
put "drives/scratch: a disk" 204 "" "$S" /vm/drives/scratch "{\"path\": \"$tmp/gone.img\"}"
rm "$tmp/gone.img"
"$ACCORD" start cfg >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 7 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
	grep -q "^accord: start cfg: 400: --disk $tmp/gone.img: No such file or directory$" "$tmp/err"; result "accord start after the disk was removed: 400 with --disk's line, status 7"
put "drives/scratch replaced by the real disk" 204 "" "$S" /vm/drives/scratch "{\"path\": \"$tmp/disk.img\"}"
# two forwards on one NIC, the second on a port someone holds: the start
# fails at the second, and the first must be let go again, or the next
# start could not listen on it
p1=$(free_port)
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(3600)' >"$tmp/held" &
holder=$!
wait_for 30 test -s "$tmp/held"
p2=$(cat "$tmp/held")
put "network-interfaces/eth0: user, forwards to a free and a taken port" 204 "" "$S" /vm/network-interfaces/eth0 \
	"{\"backend\": \"user\", \"hostfwd\": [\"tcp:127.0.0.1:$p1-:8080\", \"tcp:127.0.0.1:$p2-:8081\"]}"
put "start with a host port taken: 400 naming the forward" 400 "hostfwd=tcp:127.0.0.1:$p2: cannot listen" "$S" \
	/vm/actions '{"action": "start"}'
p3=$(free_port)
put "network-interfaces/eth0 replaced: the first port again, a free one" 204 "" "$S" /vm/network-interfaces/eth0 \
	"{\"backend\": \"user\", \"mac\": \"52:54:00:12:34:56\", \"hostfwd\": [\"tcp:127.0.0.1:$p1-:8080\", \"tcp:127.0.0.1:$p3-:8081\"]}"
put "rng on" 204 "" "$S" /vm/rng '{"enabled": true}'
put "console serial" 204 "" "$S" /vm/console '{"kind": "serial"}'
# a drive and a NIC added, then taken out again: the guest must not see them
put "drives/extra: a second disk" 204 "" "$S" /vm/drives/extra "{\"path\": \"$tmp/disk.img\", \"read_only\": true}"
put "network-interfaces/eth9: a second NIC" 204 "" "$S" /vm/network-interfaces/eth9 '{"backend": "user"}'
del "DELETE /vm/drives/extra: 204" 204 "" "$S" /vm/drives/extra
del "DELETE /vm/network-interfaces/eth9: 204" 204 "" "$S" /vm/network-interfaces/eth9
del "DELETE /vm/drives/extra again: 404" 404 "^no drive 'extra'$" "$S" /vm/drives/extra
del "DELETE /vm/network-interfaces/eth7 (never added): 404" 404 "^no network interface 'eth7'$" "$S" /vm/network-interfaces/eth7
code=$(api "$S" DELETE /vm/drives/scratch -d '{}')
WHY="got $code: $(head -c 300 "$tmp/body")"
[ "$code" = 400 ] && api_error | grep -q "takes no body"; result "DELETE with a body: 400"
code=$(api "$S" DELETE /vm/rng)
WHY="got $code: $(head -c 300 "$tmp/body")"
[ "$code" = 405 ] && api_error | grep -q "takes PUT, not DELETE"; result "DELETE /vm/rng: 405"
code=$(api "$S" GET /vm/config)
WHY="$code $(cat "$tmp/body")"
[ "$(jq_ '([x["id"] for x in d["disks"]], [x["id"] for x in d["nics"]])')" = "(['scratch'], ['eth0'])" ]; result "GET /vm/config: the removed drive and NIC are gone, the others stay"
code=$(api "$S" GET /vm)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] && [ "$(jq_ 'd["state"]')" = configuring ]; result "after all the refusals, the process still serves, still configuring"

# ---- the start and the boot ----
"$ACCORD" start cfg >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 0 ]; result "accord start cfg: status 0"
guest_booted "Linux configured through the API boots to init"
console_check "the guest has 2 CPUs" 'echo CPUS$(nproc)X' '^CPUS2X'
console_send 'echo MEM$(awk "/^MemTotal:/ { print \$2 }" /proc/meminfo)X'
console_wait 'MEM[0-9]+X' 120
mem_kb=$(console_match 'MEM([0-9]+)X')
WHY="MemTotal $mem_kb kB"
[ -n "$mem_kb" ] && [ "$mem_kb" -gt $((200 * 1024)) ] && [ "$mem_kb" -le $((256 * 1024)) ]; result "the guest has 256 MiB (MemTotal $mem_kb kB)"
console_check "/dev/vda is the configured disk: 8 MiB, its first bytes" \
	'echo VDA$(cat /sys/block/vda/size)-$(head -c 20 /dev/vda)X' '^VDA16384-accord-apicfg-disk-7X'
console_check "eth0 has the configured MAC" 'echo MAC$(cat /sys/class/net/eth0/address)X' '^MAC52:54:00:12:34:56X'
console_check "one disk and one NIC: the ones removed before the start are not there" \
	'echo NV$(ls /sys/block | grep -c "^vd")-$(ls /sys/class/net | grep -c "^eth")X' '^NV1-1X'
console_check "the user network answers DHCP" 'udhcpc -i eth0 -n -q -t 5 >/dev/null 2>&1; echo DHCP$?X' '^DHCP0X' 180
console_check "virtio-rng is the guest's hwrng" 'echo RNG$(cat /sys/class/misc/hw_random/rng_current)X' '^RNGvirtio_rng'
WHY="port $p1"
python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 10).close()' "$p1" 2>/dev/null; result "the host forward of the first port listens (released by the failed start, taken again)"

code=$(api "$S" GET /vm/config)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] &&
	[ "$(jq_ '(d["engine"], d["vcpus"], d["memory_mib"], d["kernel"], d["rng"], d["console"], d["disks"], d["nics"])')" = \
		"('emu', 2, 256, '$IMG/vmlinuz', True, 'serial', [{'id': 'scratch', 'path': '$tmp/disk.img', 'read_only': False}], [{'id': 'eth0', 'backend': 'user', 'tap': None, 'mac': '52:54:00:12:34:56', 'hostfwd': ['tcp:127.0.0.1:$p1-:8080', 'tcp:127.0.0.1:$p3-:8081']}])" ]; result "GET /vm/config: engine, vCPUs, memory, kernel, rng, console, the disk, the NIC with its MAC and forwards"
code=$(api "$S" GET /vm)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] && [ "$(jq_ '(d["state"], d["engine"], d["uptime_ms"] > 0)')" = "('running', 'emu', True)" ]; result "GET /vm: running on emu"
put "start again: 409" 409 "already started" "$S" /vm/actions '{"action": "start"}'
for r in machine-config:'{"vcpus": 1}' machine-config:'{"irqchip": "user"}' boot-source:"{\"kernel\": \"$IMG/vmlinuz\"}" \
	drives/x:"{\"path\": \"$tmp/disk.img\"}" network-interfaces/x:'{"backend": "user"}' \
	rng:'{"enabled": false}' console:'{"kind": "virtio"}'; do
	put "PUT /vm/${r%%:*} after the start: 409" 409 "has started" "$S" "/vm/${r%%:*}" "${r#*:}"
done
del "DELETE /vm/drives/scratch after the start: 409" 409 "has started: .* can only be removed before the start" "$S" /vm/drives/scratch
del "DELETE /vm/network-interfaces/eth0 after the start: 409" 409 "has started" "$S" /vm/network-interfaces/eth0
code=$(api "$S" GET /vm/config)
WHY="$code $(cat "$tmp/body")"
[ "$(jq_ '(d["vcpus"], d["rng"], d["console"], len(d["disks"]), len(d["nics"]))')" = "(2, True, 'serial', 1, 1)" ]; result "the refused PUTs changed nothing"

console_send 'poweroff -f'
console_finish 120
WHY="status $CONSOLE_STATUS"
[ "$CONSOLE_STATUS" = 0 ] && [ ! -e "$S" ]; result "poweroff in the guest ends the process with status 0, the socket removed"

tap_summary
