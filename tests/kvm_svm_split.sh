#!/usr/bin/env bash
# The split irqchip on a host whose KVM lacks KVM_CAP_X86_APIC_BUS_CYCLES_NS
# (before Linux 6.11: KVM's LAPIC timer counts at 1 GHz): the AMD-V host of
# tests/lib/svm-host.bash, the stock Debian 6.1 kernel with kvm_amd.
#  (a) --irqchip auto there chooses split, and ACCORD_VERBOSE=1 says the
#      LAPIC timer counts at KVM's 1 GHz;
#  (b) the timers test kernel is told a 1 GHz crystal (CPUID 0x15 ECX) and
#      a TSC rate, and its LAPIC timer checks pass at that rate;
#  (c) a split VM saved there (accord snapshot --stop) records the 1 GHz
#      crystal in its header, and restores there;
#  (d) restored on this machine, whose KVM has the capability, the guest
#      keeps its 1 GHz (KVM set to a 1 ns bus cycle, said with
#      ACCORD_VERBOSE=1).
# Without qemu-system-x86_64, a host image or a host with the capability:
# one skip with the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash
. tests/lib/api.bash
. tests/lib/svm-host.bash

ACCORD=${ACCORD:-build/accord}
api_test_tmp
svm_host_image "the split irqchip on AMD-V without KVM_CAP_X86_APIC_BUS_CYCLES_NS"
timers=$PWD/build/guest/timers.elf
loop=$PWD/build/guest/loop.elf

cat >"$tmp/run.sh" <<EOF
A=$SVM_ACCORD
mkdir -p /run
\$A run --kernel /nonexistent --accel kvm --irqchip split </dev/null 2>&1 | grep '^accord: --irqchip split: ' >/out/split.why
ACCORD_VERBOSE=1 timeout 300 \$A run --debug-exit --kernel $timers --accel kvm --irqchip auto </dev/null \\
	>/out/timers.out 2>/out/timers.err
echo \$? >/out/timers.status
# a long loop, saved as it runs
\$A run --debug-exit --kernel $loop --cmdline loop.iters=100000000000 --accel kvm --irqchip split --name sp \\
	</dev/null >/out/loop.out 2>/out/loop.err &
pid=\$!
n=0
until \$A snapshot sp /out/sp.snap --stop >/out/snap.log 2>&1; do
	n=\$((n + 1))
	[ \$n -gt 60 ] && break
	sleep 1
done
wait \$pid
echo \$? >/out/loop.status
ACCORD_VERBOSE=1 \$A restore /out/sp.snap --name sp2 --state paused </dev/null >/out/restore.out 2>/out/restore.err &
pid=\$!
n=0
until \$A stop sp2 >/dev/null 2>&1; do
	n=\$((n + 1))
	[ \$n -gt 60 ] && kill \$pid && break
	sleep 1
done
wait \$pid
echo \$? >/out/restore.status
EOF
svm_host_run "$tmp/svm.log" "$tmp/out" "$tmp/run.sh" "$timers" "$loop"
svm_host_required "the split irqchip on AMD-V without KVM_CAP_X86_APIC_BUS_CYCLES_NS"
if ! grep -q '^svm-host: done' "$tmp/svm.log"; then
	tap_not_ok "the AMD-V host runs the script to its end" "QEMU status $SVM_STATUS; $(tail -n 3 "$tmp/svm.log" | tr '\r\n' '  ')"
	tap_summary
	exit 1
fi
if [ -s "$tmp/out/split.why" ]; then
	tap_not_ok "--irqchip split on the AMD-V host" "$(cat "$tmp/out/split.why")"
	tap_summary
	exit 1
fi

# ---- (a) auto chooses split; the verbose line ----
err=$(tr -d '\r' <"$tmp/out/timers.err" 2>/dev/null)
grep -q "^accord: kvm: irqchip split: the LAPICs are KVM's" <<<"$err"
result $? "--irqchip auto on the AMD-V host (Linux 6.1's KVM) chooses split" "$(grep -m2 'irqchip' <<<"$err")"
grep -q "^accord: kvm: the LAPIC timer counts at KVM's 1 GHz (the host's KVM lacks KVM_CAP_X86_APIC_BUS_CYCLES_NS, Linux 6.11); CPUID 0x15 tells the guest a 1 GHz crystal$" <<<"$err"
result $? "ACCORD_VERBOSE=1 says the LAPIC timer counts at KVM's 1 GHz" "$(grep -m3 '^accord' <<<"$err" | tr '\n' ' ')"

# ---- (b) what the guest is told, and its timer at that rate ----
out=$(tr -d '\r' <"$tmp/out/timers.out" 2>/dev/null)
grep -q '^# APIC timer 1000000000 Hz (CPUID 0x15 crystal)$' <<<"$out"
result $? "the timers kernel reads a 1 GHz crystal from CPUID 0x15" "$(grep -m2 '^# APIC timer\|^# TSC' <<<"$out" | tr '\n' ' ')"
tsc=$(sed -n 's/^# TSC \([0-9]*\) Hz (CPUID 0x15)$/\1/p' <<<"$out")
[ -n "$tsc" ] && [ "$tsc" -gt 0 ]
result $? "CPUID 0x15 gives it a TSC rate beside the 1 GHz crystal (${tsc:-none} Hz)" "$(grep -m1 '^# TSC' <<<"$out")"
failed=$(grep '^FAIL lapic\.timer\|^FAIL lapic\.tsc' <<<"$out")
if grep -q '^PASS lapic.timer_accuracy' <<<"$out" && grep -q '^PASS lapic.timer_periodic' <<<"$out" && [ -z "$failed" ]; then
	tap_ok "its LAPIC timer counts at the rate it was told: every lapic.timer check passes ($(grep -m1 '^DONE' <<<"$out"))"
else
	tap_not_ok "its LAPIC timer at the rate it was told" "${failed:-no PASS lines}; $(grep -m1 '^DONE' <<<"$out")"
fi

# ---- (c) the snapshot records the crystal, and restores there ----
snap=$tmp/out/sp.snap
hz=$(od -An -t u8 -j 48 -N 8 "$snap" 2>/dev/null | tr -d ' ')
ver=$(od -An -t u4 -j 8 -N 4 "$snap" 2>/dev/null | tr -d ' ')
[ "$(cat "$tmp/out/loop.status" 2>/dev/null)" = 0 ] && [ "$ver" = 3 ] && [ "$hz" = 1000000000 ]
result $? "a split VM saved on the AMD-V host (--stop, status 0) records its 1 GHz crystal (version ${ver:-none}, ${hz:-no} Hz)" \
	"status $(cat "$tmp/out/loop.status" 2>/dev/null); $(head -c 300 "$tmp/out/snap.log" 2>/dev/null) $(head -c 300 "$tmp/out/loop.err" 2>/dev/null)"
rerr=$(tr -d '\r' <"$tmp/out/restore.err" 2>/dev/null)
[ "$(cat "$tmp/out/restore.status" 2>/dev/null)" = 0 ] && grep -q "^accord: kvm: the LAPIC timer counts at KVM's 1 GHz (the host's KVM lacks" <<<"$rerr"
result $? "it restores there at 1 GHz (stopped: status 0)" "status $(cat "$tmp/out/restore.status" 2>/dev/null); $(head -n 3 <<<"$rerr" | tr '\n' ' ')"

# ---- (d) restored where KVM has the capability ----
here_why=$("$ACCORD" run --kernel /nonexistent --accel kvm --irqchip split </dev/null 2>&1 | grep '^accord: --')
if [ -n "$here_why" ]; then
	tap_skip "restored where KVM has KVM_CAP_X86_APIC_BUS_CYCLES_NS, the guest keeps its 1 GHz" "${here_why#accord: }"
elif [ ! -s "$snap" ]; then
	tap_not_ok "restored where KVM has KVM_CAP_X86_APIC_BUS_CYCLES_NS, the guest keeps its 1 GHz" "no snapshot came back"
else
	ACCORD_VERBOSE=1 "$ACCORD" restore "$snap" --name here --state paused </dev/null >"$tmp/here.out" 2>"$tmp/here.err" &
	pid=$!
	pids+=("$pid")
	for _ in $(seq 60); do
		"$ACCORD" stop here >/dev/null 2>&1 && break
		sleep 1
	done
	timeout 60 tail --pid="$pid" -f /dev/null
	kill "$pid" 2>/dev/null
	wait "$pid"
	status=$?
	[ "$status" = 0 ] && grep -q "^accord: kvm: the LAPIC timer counts at KVM's 1 GHz (the restored guest was told so)" "$tmp/here.err"
	result $? "restored where KVM has KVM_CAP_X86_APIC_BUS_CYCLES_NS, the guest keeps its 1 GHz (KVM at 1 ns; stopped: status 0)" \
		"status $status; $(grep -m3 '^accord' "$tmp/here.err" | tr '\n' ' ')"
fi
tap_summary
