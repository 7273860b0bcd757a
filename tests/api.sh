#!/usr/bin/env bash
# The control API (src/api/): two VMs running guest/api/ticker.c at once,
# each with its own name, console and socket; accord ls; pause and resume
# through `accord pause|resume NAME` (the tick lines stop and go on from
# where they stopped) while the other VM keeps ticking; GET /vm,
# /vm/config and /vm/counters; bad requests (malformed JSON, unknown action,
# unknown path, wrong method, oversized body, chunked body, garbage) get
# their 4xx with a JSON error and the VM keeps running; stop ends the
# process with status 0; stale sockets of killed VMs; docs/api.yaml against
# the server's routes; and one Linux boot: the ACPI power button through
# PUT /vm/actions shuts the stock kernel down (button and evdev modules,
# busybox acpid).
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/api.bash

TICKER=build/api-guest/ticker.elf
BOOT_TIMEOUT=${BOOT_TIMEOUT:-400}
api_test_tmp

is_json_error() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if isinstance(d.get("error"), str) and d["error"] else 1)' \
		"$tmp/body" 2>/dev/null
}

ticks() { grep -c '^tick ' "$1"; }
last_tick() { grep '^tick ' "$1" | tail -n 1 | tr -dc '0-9'; }

more_ticks_than() { [ "$(ticks "$1")" -gt "$2" ]; }

if [ ! -f "$TICKER" ]; then
	tap_not_ok "ticker guest" "$TICKER missing (make tests)"
	tap_summary
	exit 1
fi

# ---- command line errors need no VM ----
"$ACCORD" run --kernel "$TICKER" --name 'bad/name' </dev/null >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(head -c 200 "$tmp/err")"
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]; result "--name with a slash: one line, status 1"
"$ACCORD" pause nosuchvm >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(head -c 200 "$tmp/err")"
[ $rc -eq 6 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "nosuchvm" "$tmp/err"; result "pause of an unknown VM: one line naming it, status 6"
"$ACCORD" pause >"$tmp/err" 2>&1
rc=$?
WHY="status $rc"
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]; result "pause without a name: status 1"
"$ACCORD" ls >"$tmp/ls" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/ls")"
[ $rc -eq 0 ] && [ "$(wc -l <"$tmp/ls")" -eq 1 ]; result "accord ls with no VM: the header only, status 0"
"$ACCORD" run --kernel "$TICKER" --accel emu --api-socket /nonexistent/dir/x.sock </dev/null >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(head -c 200 "$tmp/err")"
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]; result "--api-socket in a missing directory: one line, status 1"

# ---- two VMs at once ----
"$ACCORD" run --kernel "$TICKER" --accel emu --name vm-a --cpus 2 </dev/null >"$tmp/a.log" 2>&1 &
pid_a=$!
pids+=("$pid_a")
truncate -s 1M "$tmp/b.img"
"$ACCORD" run --kernel "$TICKER" --accel emu --name vm-b --memory 64M --cmdline "ticker.b" \
	--disk path="$tmp/b.img",ro </dev/null >"$tmp/b.log" 2>&1 &
pid_b=$!
pids+=("$pid_b")
SA=$SOCKDIR/vm-a.sock
SB=$SOCKDIR/vm-b.sock
WHY="a: $(tail -n 3 "$tmp/a.log" | tr '\n' ' ') b: $(tail -n 3 "$tmp/b.log" | tr '\n' ' ')"
wait_for 120 more_ticks_than "$tmp/a.log" 2 &&
	wait_for 120 more_ticks_than "$tmp/b.log" 2; result "both VMs tick on their own consoles"

"$ACCORD" ls >"$tmp/ls" 2>&1
WHY=$(tr '\n' '|' <"$tmp/ls")
grep -qE "^vm-a +$pid_a +running +emu +$SA\$" "$tmp/ls" &&
	grep -qE "^vm-b +$pid_b +running +emu +$SB\$" "$tmp/ls" && [ "$(wc -l <"$tmp/ls")" -eq 3 ]; result "accord ls lists both, with their pids, running"

"$ACCORD" run --kernel "$TICKER" --accel emu --name vm-a </dev/null >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(head -c 200 "$tmp/err")"
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "running VM" "$tmp/err"; result "a second VM named vm-a is refused: one line, status 1"

code=$(api "$SA" GET /vm)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] &&
	[ "$(jq_ '(d["name"], d["pid"], d["state"], d["engine"], d["vcpus"], d["memory_mib"])')" = \
		"('vm-a', $pid_a, 'running', 'emu', 2, 512)" ] && [ "$(jq_ 'd["uptime_ms"] > 0')" = True ]; result "GET /vm: name, pid, state, engine, vCPUs, memory"
code=$(api "$SB" GET /vm/config)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] &&
	[ "$(jq_ '(d["name"], d["kernel"], d["cmdline"], d["memory_mib"], d["vcpus"], d["accel"], d["personality"], d["initrd"], d["disks"])')" = \
		"('vm-b', '$TICKER', 'ticker.b', 64, 1, 'emu', 'kvm', None, [{'id': 'disk0', 'path': '$tmp/b.img', 'read_only': True}])" ]; result "GET /vm/config: the command line's configuration"
code=$(api "$SB" GET /vm/counters)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] &&
	[ "$(jq_ "d['vcpus'][0]['instructions'] > 1000 and d['serial']['tx_bytes'] >= 21 and d['serial']['rx_bytes'] == 0 and d['disks'] == [{'id': 'disk0', 'path': '$tmp/b.img', 'bus': 'virtio', 'reads': 0, 'writes': 0, 'flushes': 0, 'io_errors': 0, 'read_bytes': 0, 'write_bytes': 0}]")" = True ]; result "GET /vm/counters: instructions retired, serial bytes, the idle disk"

# ---- pause and resume ----
"$ACCORD" pause vm-a >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 0 ] && [ ! -s "$tmp/err" ]; result "accord pause vm-a: status 0, nothing printed"
n1=$(ticks "$tmp/a.log")
last1=$(last_tick "$tmp/a.log")
api "$SA" GET /vm/counters >/dev/null
i1=$(jq_ 'sum(c["instructions"] for c in d["vcpus"])')
b1=$(ticks "$tmp/b.log")
code=$(api "$SA" GET /vm)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] && [ "$(jq_ 'd["state"]')" = paused ]; result "GET /vm says paused"
# vm-b goes on meanwhile, which also gives vm-a time to tick if it could
WHY="vm-b has $(ticks "$tmp/b.log") ticks"
wait_for 60 more_ticks_than "$tmp/b.log" $((b1 + 5)); result "the other VM keeps ticking while vm-a is paused"
n2=$(ticks "$tmp/a.log")
api "$SA" GET /vm/counters >/dev/null
i2=$(jq_ 'sum(c["instructions"] for c in d["vcpus"])')
WHY="ticks $n1 then $n2, instructions $i1 then $i2"
[ "$n1" = "$n2" ] && [ -n "$i1" ] && [ "$i1" = "$i2" ]; result "paused: no new tick line, no instruction retired"
"$ACCORD" pause vm-a >/dev/null 2>&1
rc=$?
[ $rc -eq 0 ]; result "pausing a paused VM is not an error"

"$ACCORD" resume vm-a >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 0 ]; result "accord resume vm-a: status 0"
WHY="still $(ticks "$tmp/a.log") ticks"
wait_for 60 more_ticks_than "$tmp/a.log" $((n2 + 2)); result "resumed: the ticks go on"
next=$(grep '^tick ' "$tmp/a.log" | sed -n "$((n2 + 1))p" | tr -dc '0-9')
WHY="last before the pause $last1, first after $next"
[ "$next" = $((last1 + 1)) ]; result $? "resumed where it stopped: tick $((last1 + 1)) follows tick $last1"
code=$(api "$SA" GET /vm)
[ "$code" = 200 ] && [ "$(jq_ 'd["state"]')" = running ]; result "GET /vm says running again"

# ---- bad requests: a 4xx with a JSON error; the VM keeps going ----
bad() {
	local name=$1 want=$2
	shift 2
	local code
	code=$(api "$SB" "$@")
	WHY="got $code: $(head -c 200 "$tmp/body")"
	[ "$code" = "$want" ] && is_json_error; result "$name: $want with a JSON error"
}
bad "malformed JSON" 400 PUT /vm/actions -H 'Content-Type: application/json' -d '{"action": "pause"'
bad "unknown action" 400 PUT /vm/actions -d '{"action": "explode"}'
bad "unknown field" 400 PUT /vm/actions -d '{"action": "pause", "now": true}'
bad "not an object" 400 PUT /vm/actions -d '["pause"]'
bad "empty body" 400 PUT /vm/actions
bad "unknown path" 404 GET /vm/nothing
bad "unknown top-level path" 404 GET /
bad "wrong method on /vm" 405 DELETE /vm
bad "GET on /vm/actions" 405 GET /vm/actions
head -c 20000 /dev/zero | tr '\0' ' ' >"$tmp/big"
bad "a 20000-byte body" 413 PUT /vm/actions --data-binary @"$tmp/big"
bad "a chunked body" 501 PUT /vm/actions -H 'Transfer-Encoding: chunked' -d '{"action":"pause"}'
code=$(api "$SB" DELETE /vm -D "$tmp/head")
WHY=$(tr -d '\r' <"$tmp/head" | tr '\n' '|')
grep -qi '^Allow: GET' "$tmp/head"; result "405 names the allowed method"
printf 'HELLO\r\n\r\n' | socat -t 5 - UNIX-CONNECT:"$SB" >"$tmp/raw" 2>&1
WHY=$(head -c 200 "$tmp/raw")
grep -q '^HTTP/1.1 400 ' "$tmp/raw" && grep -qi '^Connection: close' "$tmp/raw"; result "a garbage request line: 400, then the connection closes"
# the server answers before the client finished sending and closes; a
# client that reads after a failed write still gets the answer
python3 - "$SB" >"$tmp/raw" 2>&1 <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b"GET /vm HTTP/1.1\r\nX: " + b"x" * 9000 + b"\r\n\r\n")
except OSError:
    pass
sys.stdout.write(s.recv(4096).decode(errors="replace"))
PY
WHY=$(head -c 200 "$tmp/raw")
grep -q '^HTTP/1.1 431 ' "$tmp/raw"; result "a head over 8 KiB: 431"
printf 'GET /vm HTTP/1.1\r\n\r\nGET /vm/config HTTP/1.1\r\nConnection: close\r\n\r\n' |
	socat -t 5 - UNIX-CONNECT:"$SB" >"$tmp/raw" 2>&1
WHY=$(head -c 300 "$tmp/raw")
[ "$(grep -c '^HTTP/1.1 200 ' "$tmp/raw")" -eq 2 ] && grep -q '"cmdline":"ticker.b"' "$tmp/raw"; result "two requests on one kept-alive connection: two answers"
# a client that sends half a request and goes away
printf 'PUT /vm/actions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"ac' | socat -t 1 - UNIX-CONNECT:"$SB" \
	>/dev/null 2>&1
"$ACCORD" shutdown vm-b >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 7 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "409.*power button" "$tmp/err"; result "shutdown of a guest without an ACPI button driver: 409 said in one line, status 7"
b2=$(ticks "$tmp/b.log")
code=$(api "$SB" GET /vm/counters)
WHY="$code $(cat "$tmp/body"); ticks $b2 then $(ticks "$tmp/b.log")"
[ "$code" = 200 ] && [ "$(jq_ 'd["api"]["errors"] >= 12')" = True ] &&
	wait_for 60 more_ticks_than "$tmp/b.log" $((b2 + 2)); result "after all that, vm-b still answers and ticks; its error counter counted them"

# ---- stop ----
"$ACCORD" stop vm-a >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 0 ]; result "accord stop vm-a: status 0"
if wait_for 60 gone "$pid_a"; then
	wait "$pid_a"
	rc=$?
	WHY="status $rc: $(grep -v '^tick' "$tmp/a.log" | tail -n 3)"
	[ $rc -eq 0 ] && ! grep -q '^accord:' "$tmp/a.log"; result "stop ends vm-a's process with status 0, silently"
else
	tap_not_ok "stop ends vm-a's process with status 0" "still running"
fi
WHY=$(ls "$SOCKDIR")
[ ! -e "$SA" ]; result "vm-a's socket is gone"
"$ACCORD" ls >"$tmp/ls" 2>&1
WHY=$(tr '\n' '|' <"$tmp/ls")
[ "$(wc -l <"$tmp/ls")" -eq 2 ] && grep -q '^vm-b ' "$tmp/ls"; result "accord ls lists vm-b only"

# ---- a VM killed without cleaning up ----
disown "$pid_b"
kill -9 "$pid_b"
wait_for 30 gone "$pid_b"
"$ACCORD" pause vm-b >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 6 ] && [ -e "$SB" ]; result "pause of a killed VM (its socket left behind): no running VM, status 6"
"$ACCORD" ls >"$tmp/ls" 2>&1
WHY=$(tr '\n' '|' <"$tmp/ls")
[ "$(wc -l <"$tmp/ls")" -eq 1 ] && [ ! -e "$SB" ]; result "accord ls skips the dead VM and removes its socket"
# a stale socket under a name does not keep a new VM from taking it
"$ACCORD" run --kernel "$TICKER" --accel emu --name vm-c </dev/null >"$tmp/c.log" 2>&1 &
pid_c=$!
pids+=("$pid_c")
wait_for 60 more_ticks_than "$tmp/c.log" 0
disown "$pid_c"
kill -9 "$pid_c"
wait_for 30 gone "$pid_c"
# (a log of its own: the old one has ticks before the new VM truncated it)
"$ACCORD" run --kernel "$TICKER" --accel emu --name vm-c </dev/null >"$tmp/c2.log" 2>&1 &
pid_c=$!
pids+=("$pid_c")
WHY=$(tail -n 2 "$tmp/c2.log")
wait_for 60 more_ticks_than "$tmp/c2.log" 0 &&
	[ "$(api "$SOCKDIR/vm-c.sock" GET /vm)" = 200 ] && [ "$(jq_ 'd["pid"]')" = "$pid_c" ]; result "a new VM replaces a dead VM's socket of the same name"

# ---- docs/api.yaml and the server agree ----
python3 - "$tmp/routes" <<'PY' >"$tmp/doc.out" 2>&1
import re, sys, yaml
doc = yaml.safe_load(open("docs/api.yaml"))
documented = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
src = open("src/api/server.c").read()
table = re.search(r"routes\[\] = \{(.*?)\};", src, re.S).group(1)
implemented = set(re.findall(r'\{ "(/[^"]*)", "([A-Z]+)" \}', table))
acts_src = set(re.findall(r'"(\w+)"', re.search(r"actions\[\] = \{(.*?)\};", src, re.S).group(1)))
acts_doc = set(doc["components"]["schemas"]["VmAction"]["properties"]["action"]["enum"])
ok = documented == implemented and acts_src == acts_doc and implemented
print("documented only:", sorted(documented - implemented), "implemented only:", sorted(implemented - documented),
      "actions:", sorted(acts_src ^ acts_doc))
with open(sys.argv[1], "w") as f:
    for p, m in sorted(documented):
        f.write(f"{m} {p}\n")
sys.exit(0 if ok else 1)
PY
rc=$?
WHY=$(cat "$tmp/doc.out")
[ $rc -eq 0 ]; result "docs/api.yaml documents exactly the server's routes and actions"
# and the running server answers each documented route, and no other method
SC=$SOCKDIR/vm-c.sock
live_ok=1
while read -r method path; do
	# the actions are exercised above, PUT and DELETE on the pre-boot
	# routes in tests/api_config.sh
	[ "$method" = PUT ] || [ "$method" = DELETE ] && continue
	[ "$(api "$SC" "$method" "$path")" = 200 ] || { live_ok=0; WHY="$method $path"; }
	[ "$(api "$SC" POST "$path")" = 405 ] || { live_ok=0; WHY="POST $path"; }
done <"$tmp/routes"
[ $live_ok -eq 1 ]; result "the running server answers every documented GET, and 405 to other methods"
"$ACCORD" reset vm-c >"$tmp/err" 2>&1
rc=$?
wait_for 60 gone "$pid_c"
wait "$pid_c"
rc_c=$?
WHY="client $rc, VM $rc_c: $(grep -v '^tick' "$tmp/c2.log" | tail -n 2)"
[ $rc -eq 0 ] && [ $rc_c -eq 0 ] &&
	grep -q "reset through the control API" "$tmp/c2.log"; result "accord reset ends the VM as a guest reset does (status 0, said why)"

# ---- pause and resume on the kvm engine, where this host has KVM ----
"$ACCORD" run --kernel "$TICKER" --accel kvm --name vm-k --cpus 2 </dev/null >"$tmp/k.log" 2>&1 &
pid_k=$!
pids+=("$pid_k")
if ! wait_for 120 more_ticks_than "$tmp/k.log" 2; then
	if gone "$pid_k"; then
		wait "$pid_k"
		tap_skip "pause and resume on kvm" "no kvm engine here (status $?: $(grep '^accord:' "$tmp/k.log" | head -n 1))"
	else
		tap_not_ok "the ticker on kvm ticks" "$(tail -n 2 "$tmp/k.log")"
		kill -9 "$pid_k"
	fi
else
	"$ACCORD" pause vm-k
	rc=$?
	n1=$(ticks "$tmp/k.log")
	api "$SOCKDIR/vm-k.sock" GET /vm >/dev/null
	state=$(jq_ 'd["state"]')
	# a ticker on emu runs meanwhile: time for vm-k to tick if it could
	"$ACCORD" run --kernel "$TICKER" --accel emu --cmdline ticker.count=10 --debug-exit </dev/null \
		>"$tmp/k2.log" 2>&1
	n2=$(ticks "$tmp/k.log")
	WHY="status $rc, state $state, ticks $n1 then $n2"
	[ $rc -eq 0 ] && [ "$state" = paused ] && [ "$n1" = "$n2" ] && [ "$(ticks "$tmp/k2.log")" -eq 10 ]
	result "kvm: paused, no new tick while another VM ticked 10 times"
	"$ACCORD" resume vm-k
	WHY="still $(ticks "$tmp/k.log") ticks"
	wait_for 60 more_ticks_than "$tmp/k.log" $((n2 + 2)); result "kvm: resumed, the ticks go on"
	"$ACCORD" stop vm-k
	wait_for 60 gone "$pid_k"
	wait "$pid_k"
	rc=$?
	WHY="status $rc"
	[ $rc -eq 0 ]; result "kvm: stop ends the process with status 0"
fi

# ---- under --gdb the debugger holds the vCPUs: pause is refused, stop works ----
"$ACCORD" run --kernel "$TICKER" --accel emu --name vm-g --gdb tcp::0 </dev/null >"$tmp/g.log" 2>&1 &
pid_g=$!
pids+=("$pid_g")
wait_for 60 grep -q "waiting for a connection" "$tmp/g.log"
"$ACCORD" pause vm-g >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 7 ] && grep -q "409.*gdb" "$tmp/err"; result "pause under --gdb: 409 naming gdb, status 7"
"$ACCORD" stop vm-g >/dev/null 2>&1
wait_for 60 gone "$pid_g"
wait "$pid_g"
rc=$?
WHY="status $rc: $(tail -n 2 "$tmp/g.log")"
[ $rc -eq 0 ]; result "stop under --gdb (no debugger attached) ends the VM with status 0"

# ---- the ACPI power button in the stock kernel (one Linux boot) ----
IMG=build/guest-image-api
guest_image "ACPI power button in Linux" "button evdev virtio_pci virtio_blk"
head -c 1M /dev/urandom >"$tmp/linux.img"
console_start "$tmp/linux.log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel emu --name linux --disk path="$tmp/linux.img"
pids+=("$CONSOLE_PID")
if ! console_wait "accord-guest: init ready" "$BOOT_TIMEOUT"; then
	tap_not_ok "Linux boots to init" "no 'init ready' within ${BOOT_TIMEOUT}s"
	console_tail 25
	console_finish 1
	tap_summary
	exit 0
fi
WHY=$(grep -a "Power Button" "$tmp/linux.log" | tr -d '\r' | head -n 2 | tr '\n' '|')
grep -aq "ACPI: button: Power Button" "$tmp/linux.log"; result "the kernel's button driver found the fixed power button"
# 64 KiB read by the guest show in the disk's counters (the kernel read
# the partition table before)
api "$SOCKDIR/linux.sock" GET /vm/counters >/dev/null
rb0=$(jq_ 'd["disks"][0]["read_bytes"]')
console_send 'dd if=/dev/vda of=/dev/null bs=4096 count=16 iflag=direct 2>/dev/null; echo R$((3+4))'
console_wait "^R7" 120
code=$(api "$SOCKDIR/linux.sock" GET /vm/counters)
WHY="$code $(cat "$tmp/body")"
[ "$code" = 200 ] && [ -n "$rb0" ] && [ "$(jq_ "d['disks'][0]['read_bytes'] - $rb0 >= 65536 and d['disks'][0]['writes'] == 0")" = True ]; result "the guest's disk reads show in GET /vm/counters"
# busybox acpid turns KEY_POWER into /etc/acpi/PWRF/00000080
console_send 'mkdir -p /etc/acpi/PWRF && printf "#!/bin/sh\necho accord-guest: power button P\$((6*7)) >/dev/console\npoweroff -f\n" >/etc/acpi/PWRF/00000080 && chmod 755 /etc/acpi/PWRF/00000080 && acpid -l /tmp/acpid.log && echo R$((1+1))'
console_wait "^R2" 120
"$ACCORD" shutdown linux >"$tmp/err" 2>&1
rc=$?
WHY="status $rc: $(cat "$tmp/err")"
[ $rc -eq 0 ]; result "accord shutdown linux: the guest enabled the button, status 0"
console_finish 300
WHY="status $CONSOLE_STATUS"
[ "$CONSOLE_STATUS" = 0 ] && grep -aq "accord-guest: power button P42" "$tmp/linux.log" &&
	grep -aq "reboot: Power down" "$tmp/linux.log"; result "the guest saw the button (acpid ran its action) and powered off: status 0"
[ "$CONSOLE_STATUS" = 0 ] || console_tail 15

tap_summary
