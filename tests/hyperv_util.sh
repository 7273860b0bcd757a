#!/usr/bin/env bash
# The Hyper-V integration services in the stock kernel on accord:
# --personality hyperv, a guest image with hv_vmbus and hv_utils and the
# host's hv_kvp_daemon and phc_ctl (tools/mkguest, GUEST_TOOLS, its own output
# directory), no disks.
#
# Boot 1: hv_utils binds shutdown, heartbeat, time sync and KVP; time sync
# negotiates 4.0 and registers the PTP clock "hyperv"; a guest clock set to
# 2001 is put right by the SYNC the host sends when the channel opens (the
# driver unbound and bound again); the 5-second SAMPLEs keep coming and the
# PTP clock reads the host's time from them; the guest's hv_kvp_daemon answers the host's
# enumeration: GET /vm/kvp shows the guest's host name, OS name and version
# and a pair a guest program wrote to the guest pool; a pair the host sets
# through PUT /vm/kvp/external reaches the daemon's pool file; `accord kvp`
# prints the pairs; then `accord shutdown`
# powers the guest off through the shutdown service (said in its reply)
# and accord ends with status 0.
#
# Boot 2, on a terminal (script(1)): the first SIGTERM asks the guest to
# shut down (the busybox shell as PID 1 ignores poweroff's signal, so the
# guest stays up), the second ends accord with status 0 and the terminal
# back in canonical mode.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/linux-guest.bash
. tests/lib/vmbus-classes.bash

BOOT_TIMEOUT=${BOOT_TIMEOUT:-400}
IMG=build/guest-image-hvutil
# a generous bound for "the guest's clock agrees with the host's": the
# point is 2001 against now, not precision
CLOCK_SLACK=120
test_tmp

guest_image "integration services in the guest" "hv_vmbus hv_utils" "hv_kvp_daemon phc_ctl"

sock=$tmp/api.sock
kvp() {
	curl -s --max-time 10 --unix-socket "$sock" http://localhost/vm/kvp
}
# kvp_put BODY: PUT /vm/kvp/external, the HTTP status
kvp_put() {
	curl -s -o /dev/null -w '%{http_code}' --max-time 10 --unix-socket "$sock" -X PUT \
		-H 'Content-Type: application/json' -d "$1" http://localhost/vm/kvp/external
}
# kvp_get FILE EXPR: a python expression on the parsed reply j
kvp_get() {
	python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
# the guest's clock against the host's: within CLOCK_SLACK seconds
clock_close() {
	local g=$1 h
	h=$(date +%s)
	[ -n "$g" ] && [ $((g > h ? g - h : h - g)) -le $CLOCK_SLACK ]
}

log=$tmp/guest.log
console_start "$log" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
	--cmdline "console=ttyS0 panic=-1" --memory 256M --accel "$ACCEL" --personality hyperv \
	--name "hvutil-$$" --api-socket "$sock"
guest_booted "Hyper-V guest with hv_utils boots to init"
sleep 1
console_check "/sys/bus/vmbus/devices: shutdown, heartbeat, time sync and KVP channels" \
	'echo V$((1+1)) $(cat /sys/bus/vmbus/devices/*/class_id | sort | tr -d "{}" | tr "\n" " ") V$((2+1))' \
	"V2 $SHUTDOWN_CLASS $HEARTBEAT_CLASS $TIMESYNC_CLASS $KVP_CLASS V3"
if grep -aq "hv_utils: TimeSync IC version 4.0" "$log"; then
	tap_ok "hv_utils negotiates time sync at IC version 4.0 (samples with reference time)"
else
	tap_not_ok "hv_utils negotiates time sync at 4.0" "$(grep -a "IC version" "$log" | head -n 4)"
fi
console_check "the time sync driver registers the PTP clock 'hyperv'" \
	'echo P$((1+1)) $(cat /sys/class/ptp/ptp*/clock_name) P$((2+1))' "P2 hyperv P3"
console_send 'echo D$((1+1)) $(date +%s)'
if console_wait "^D2 [0-9]+" 60 && clock_close "$(console_match 'D2 ([0-9]+)')"; then
	tap_ok "the guest starts with the host's time (within ${CLOCK_SLACK}s)"
else
	tap_not_ok "the guest starts with the host's time" "$(console_match '(D2 [0-9]*)') vs $(date +%s)"
fi

# SYNC: the host sends one when the channel opens; bind the driver again
# with the clock in 2001
console_send 'for d in /sys/bus/vmbus/devices/*; do grep -q 9527e630 $d/class_id && TS=${d##*/}; done; echo $TS >/sys/bus/vmbus/drivers/hv_utils/unbind; date -s "2001-01-01 00:00:00" >/dev/null; echo Y$((1+1)) $(date +%Y); echo $TS >/sys/bus/vmbus/drivers/hv_utils/bind; sleep 3; echo T$((1+1)) $(date +%s)'
if console_wait "^T2 [0-9]+" 90 && grep -aq "^Y2 2001" <(tr -d '\r' <"$log") && clock_close "$(console_match 'T2 ([0-9]+)')"; then
	tap_ok "a clock set to 2001 is put right by the SYNC sent when the time sync channel opens"
else
	tap_not_ok "SYNC at channel open corrects the guest clock" "$(console_match '(Y2 [0-9]*)'), $(console_match '(T2 [0-9]*)') vs host $(date +%s)"
	console_tail
fi
# SAMPLEs: every 5 s; the driver keeps the last one for its PTP clock,
# which reads the host's time whatever the guest's clock says
console_send 'for d in /sys/bus/vmbus/devices/*; do grep -q 9527e630 $d/class_id && TS=$d; done; A=$(cat $TS/channels/*/interrupts); sleep 11; echo I$((1+1)) $(( $(cat $TS/channels/*/interrupts) - A ))'
if console_wait "^I2 [0-9]+" 90 && [ "$(console_match 'I2 ([0-9]+)')" -ge 1 ]; then
	tap_ok "the time sync channel keeps receiving samples ($(console_match 'I2 ([0-9]+)') in 11 s)"
else
	tap_not_ok "the time sync channel keeps receiving samples" "$(console_match '(I2 [0-9]*)')"
fi
console_send 'date -s "2001-01-01 00:00:00" >/dev/null; sleep 6; echo U$((1+1)) $(date +%Y) $(phc_ctl /dev/ptp0 get 2>&1 | sed -n "s/.*clock time is \([0-9]*\).*/\1/p")'
if console_wait "^U2 [0-9]+" 90 && [ "$(console_match 'U2 ([0-9]+) ')" = 2001 ] && clock_close "$(console_match 'U2 [0-9]+ ([0-9]+)')"; then
	tap_ok "with the guest's clock in 2001, its PTP clock 'hyperv' reads the host's time from the samples"
else
	tap_not_ok "the PTP clock reads the host's time" "$(console_match '(U2 [0-9 ]*)') vs host $(date +%s)"
	console_tail
fi

# KVP: before the daemon, the host has nothing to show
kvp >"$tmp/kvp0.json"
if [ "$(kvp_get "$tmp/kvp0.json" 'j["available"], j["connected"], len(j["pools"]["auto"])')" = "(True, False, 0)" ]; then
	tap_ok "GET /vm/kvp before the guest's KVP daemon runs: available, not connected, no pairs"
else
	tap_not_ok "GET /vm/kvp before the daemon" "$(head -c 300 "$tmp/kvp0.json")"
fi
st=$(kvp_put '{"key":"HostKey","value":"v"}')
[ "$st" = 409 ] && tap_ok "PUT /vm/kvp/external before the daemon: 409" || tap_not_ok "PUT /vm/kvp/external before the daemon: 409" "got $st"
"$ACCORD" kvp "$sock" >"$tmp/kvp0.out" 2>&1
rc=$?
if [ $rc -eq 7 ] && [ "$(wc -l <"$tmp/kvp0.out")" -eq 1 ] && grep -q "not connected" "$tmp/kvp0.out"; then
	tap_ok "accord kvp before the daemon: 'not connected' in one line, status 7"
else
	tap_not_ok "accord kvp before the daemon" "status $rc: $(head -c 200 "$tmp/kvp0.out")"
fi
# what the daemon reports: the host name, /etc/os-release; the name is
# resolved through /etc/hosts; a guest program adds a pair to pool 1 (the
# pool file's records: a 512-byte key and a 2048-byte value)
console_send 'mkdir -p /var/lib /etc; hostname kvp-guest; printf "NAME=\"Accord Test Linux\"\nVERSION_ID=\"7\"\n" >/etc/os-release; echo "127.0.0.1 kvp-guest" >/etc/hosts; echo "hosts: files" >/etc/nsswitch.conf; hv_kvp_daemon -n & sleep 2; { printf GuestKey; head -c 504 /dev/zero; printf guest-value; head -c 2037 /dev/zero; } >>/var/lib/hyperv/.kvp_pool_1; echo K$((1+1))'
console_wait "^K2" 60
for _ in $(seq 1 60); do
	kvp >"$tmp/kvp.json"
	[ "$(kvp_get "$tmp/kvp.json" 'j["pools"]["guest"].get("GuestKey")')" = guest-value ] && break
	sleep 2
done
if [ "$(kvp_get "$tmp/kvp.json" 'j["connected"], j["version"], j["enumerations"] > 0')" = "(True, '4.0', True)" ] &&
	grep -aq "hv_utils: KVP IC version 4.0" "$log"; then
	tap_ok "with hv_kvp_daemon running, KVP connects at 4.0 and the host enumerates the pools"
else
	tap_not_ok "KVP connects at 4.0 and enumerates" "$(head -c 300 "$tmp/kvp.json")"
fi
a='j["pools"]["auto"]'
if [ "$(kvp_get "$tmp/kvp.json" "$a[\"FullyQualifiedDomainName\"], $a[\"OSName\"], $a[\"OSMajorVersion\"]")" = \
	"('kvp-guest', 'Accord Test Linux', '7')" ]; then
	tap_ok "GET /vm/kvp: the guest's host name and OS name and version from the auto pool"
else
	tap_not_ok "GET /vm/kvp: host name and OS" "$(head -c 600 "$tmp/kvp.json")"
fi
release=$(cat "$IMG/kernel.release")
if [ "$(kvp_get "$tmp/kvp.json" "$a[\"OSBuildNumber\"], $a[\"ProcessorArchitecture\"], $a[\"IntegrationServicesVersion\"]")" = \
	"('$release', 'x86_64', '3.1')" ]; then
	tap_ok "GET /vm/kvp: kernel release, architecture and the driver's version, as the guest reports them"
else
	tap_not_ok "GET /vm/kvp: kernel release, architecture" "$(head -c 600 "$tmp/kvp.json")"
fi
if [ "$(kvp_get "$tmp/kvp.json" 'j["pools"]["guest"]')" = "{'GuestKey': 'guest-value'}" ]; then
	tap_ok "GET /vm/kvp: the pair a guest program wrote to the guest pool"
else
	tap_not_ok "GET /vm/kvp: the guest pool" "$(head -c 600 "$tmp/kvp.json")"
fi

# a SET from the host into the guest's external pool: the guest's daemon
# keeps it in .kvp_pool_0, and the next enumeration shows it
st=$(kvp_put '{"key":"HostKey","value":"from the host \u00e9"}')
bad=$(kvp_put '{"key":"HostKey"}')$(kvp_put '{"key":"","value":"v"}')
for _ in $(seq 1 60); do
	kvp >"$tmp/kvp2.json"
	[ "$(kvp_get "$tmp/kvp2.json" 'j["pools"]["external"].get("HostKey")')" = "from the host é" ] && break
	sleep 2
done
if [ "$st" = 204 ] && [ "$(kvp_get "$tmp/kvp2.json" 'j["pools"]["external"], j["sets"]')" = \
	"({'HostKey': 'from the host é'}, {'done': 1, 'failed': 0, 'pending': 0})" ]; then
	tap_ok "PUT /vm/kvp/external: 204, the guest stores the pair, GET /vm/kvp shows it in the external pool"
else
	tap_not_ok "PUT /vm/kvp/external" "status $st: $(head -c 600 "$tmp/kvp2.json")"
fi
[ "$bad" = 400400 ] && tap_ok "PUT /vm/kvp/external without a value, or with an empty key: 400" ||
	tap_not_ok "PUT /vm/kvp/external with bad bodies: 400" "got $bad"
"$ACCORD" kvp "$sock" >"$tmp/kvp.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -qx "auto FullyQualifiedDomainName=kvp-guest" "$tmp/kvp.out" &&
	grep -qx "auto OSName=Accord Test Linux" "$tmp/kvp.out" && grep -qx "guest GuestKey=guest-value" "$tmp/kvp.out" &&
	grep -qx "external HostKey=from the host é" "$tmp/kvp.out"; then
	tap_ok "accord kvp: one 'POOL KEY=VALUE' line per pair of the three pools, status 0"
else
	tap_not_ok "accord kvp" "status $rc: $(head -c 400 "$tmp/kvp.out")"
fi
# (records of a 512-byte key and a 2048-byte value, NUL-terminated; the
# daemon leaves whatever its buffer held after the NUL)
console_check "the guest's daemon wrote it to /var/lib/hyperv/.kvp_pool_0" \
	'P0=/var/lib/hyperv/.kvp_pool_0; echo E$((1+1)) $(tr "\000" "\n" <$P0 | grep -xc HostKey) $(tr "\000" "\n" <$P0 | grep -c "^from the host")' "^E2 1 1"

# shutdown through the API: the shutdown service, not the power button
# (this guest has no button driver)
console_send 'echo "/sbin/poweroff -f" >/proc/sys/kernel/poweroff_cmd; echo S$((1+1))'
console_wait "^S2" 30
"$ACCORD" shutdown "$sock" >"$tmp/shutdown.out" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "shutdown requested (hyperv-shutdown-service)" "$tmp/shutdown.out"; then
	tap_ok "accord shutdown: status 0, the reply says the Hyper-V shutdown service was used"
else
	tap_not_ok "accord shutdown through the shutdown service" "status $rc: $(head -c 200 "$tmp/shutdown.out")"
fi
console_finish 120
if [ "$CONSOLE_STATUS" = 0 ] && grep -aq "Shutdown request received - graceful" "$log"; then
	tap_ok "the guest powers off through hv_utils and accord ends with status 0"
else
	tap_not_ok "the guest powers off after accord shutdown" "accord exit status $CONSOLE_STATUS"
	console_tail
fi
bad='hv_utils.*(invalid|error|fail|too small)|hv_vmbus.*(fail|error|refused)|accord: vmbus'
if grep -aqiE "$bad" "$log"; then
	tap_not_ok "no VMBus or hv_utils errors" "$(grep -aiE "$bad" "$log" | head -n 3)"
else
	tap_ok "no VMBus or hv_utils errors"
fi

# boot 2: two SIGTERMs on a terminal
log2=$tmp/guest2.log
sock2=$tmp/api2.sock
console_start "$log2" script -qfec "$ACCORD run --kernel $IMG/vmlinuz --initrd $IMG/initrd.cpio.gz --cmdline 'console=ttyS0 panic=-1' --memory 256M --accel $ACCEL --personality hyperv --name hvutil2-$$ --api-socket $sock2; echo ACCORD-STATUS=\$?; stty -a" /dev/null
if ! console_wait "hv_utils: Shutdown IC version" "$BOOT_TIMEOUT"; then
	tap_not_ok "second boot: hv_utils negotiates the shutdown service" "not within ${BOOT_TIMEOUT}s"
	console_tail 25
	console_finish 1
	tap_summary
	exit 0
fi
pid=$(curl -s --max-time 10 --unix-socket "$sock2" http://localhost/vm | python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])' 2>/dev/null)
kill -TERM "$pid"
if console_wait "Shutdown request received" 60 && grep -aq "SIGTERM: asked the guest to shut down" "$log2" &&
	sleep 2 && kill -0 "$pid" 2>/dev/null; then
	tap_ok "first SIGTERM: the guest is asked to shut down (and, ignoring poweroff's signal, stays up)"
else
	tap_not_ok "first SIGTERM asks the guest" "$(tail -n 3 "$log2" | tr -d '\r')"
fi
kill -TERM "$pid"
console_finish 60
status=$(tr -d '\r' <"$log2" | sed -n 's/^ACCORD-STATUS=//p')
if [ "$status" = 0 ] && grep -aq "SIGTERM again: ending" "$log2"; then
	tap_ok "second SIGTERM: accord ends with status 0"
else
	tap_not_ok "second SIGTERM ends accord" "status '$status' ($CONSOLE_STATUS)"
	console_tail
fi
tr -d '\r' <"$log2" | sed -n '/^ACCORD-STATUS=/,$p' >"$tmp/stty"
if grep -aqE '(^| )icanon( |;|$)' "$tmp/stty" && grep -aqE '(^| )echo( |;|$)' "$tmp/stty"; then
	tap_ok "after the second SIGTERM the terminal is back in canonical mode with echo"
else
	tap_not_ok "the terminal is restored after the second SIGTERM" "$(grep -aoE -- '-?icanon|-?echo ' "$tmp/stty" | tr '\n' ' ')"
fi
tap_summary
