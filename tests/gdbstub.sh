#!/usr/bin/env bash
# The GDB stub (`accord run --gdb`) driven by Debian's gdb in batch mode, and
# the lockstep divergence finder (tools/lockstep) against QEMU TCG, on the
# smoke guest test kernel (build/guest/smoke.elf, symbols from smoke.elf64).
#
# Ports: accord is started with --gdb tcp::0, which listens on a free port and
# names it on stderr ("accord: gdb: waiting for a connection on HOST:PORT");
# no port is guessed, so parallel runs do not collide.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash

ACCORD=${ACCORD:-build/accord}
QEMU=${QEMU:-qemu-system-x86_64}
KERNEL=build/guest/smoke.elf
SYMS=build/guest/smoke.elf64
tmp=$(mktemp -d)
apid=""
cleanup() {
	[ -z "$apid" ] || kill "$apid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

for f in "$ACCORD" "$KERNEL" "$SYMS"; do
	if [ ! -e "$f" ]; then
		tap_not_ok "gdbstub: $f exists" "missing (make all guests)"
		tap_summary
		exit 1
	fi
done
if ! command -v gdb >/dev/null; then
	tap_skip "gdbstub" "gdb is not installed (tests/setup.sh installs it)"
	tap_summary
	exit 0
fi

sym() { nm "$SYMS" | awk -v s="$1" '$3 == s { print "0x" $1 }'; }

# start_accord NAME [ARGS...]: accord on the smoke kernel, waiting for gdb;
# sets PORT and apid
start_accord() {
	local name=$1
	shift
	PORT=""
	timeout 120 "$ACCORD" run --kernel "$KERNEL" --debug-exit --accel emu --memory 128M \
		--gdb tcp::0 "$@" </dev/null >"$tmp/$name.out" 2>"$tmp/$name.err" &
	apid=$!
	for _ in $(seq 100); do
		PORT=$(sed -n 's/^accord: gdb: waiting for a connection on .*:\([0-9]*\)$/\1/p' \
			"$tmp/$name.err")
		[ -n "$PORT" ] && return 0
		kill -0 "$apid" 2>/dev/null || break
		sleep 0.1
	done
	return 1
}

# wait_accord: accord's exit status
wait_accord() {
	local rc=0
	wait "$apid" || rc=$?
	apid=""
	return $rc
}

# run_gdb NAME COMMAND...: gdb in batch mode, connected; output in $tmp/NAME.gdb
run_gdb() {
	local name=$1
	shift
	local args=(-q -batch -nx -ex "set pagination off" -ex "set confirm off"
		-ex "set remotetimeout 30" -ex "file $SYMS" -ex "target remote 127.0.0.1:$PORT")
	local c
	for c in "$@"; do
		args+=(-ex "$c")
	done
	timeout 60 gdb "${args[@]}" </dev/null >"$tmp/$name.gdb" 2>&1
}

# field NAME KEY: the value gdb printed as "KEY=value"
field() { sed -n "s/^$2=//p" "$tmp/$1.gdb" | head -n 1; }

check() { # check NAME CONDITION-STATUS DETAIL
	if [ "$2" -eq 0 ]; then tap_ok "$1"; else tap_not_ok "$1" "$3"; fi
}

entry=$(readelf -h "$KERNEL" | awk '/Entry point address/ { print $4 }')
main=$(sym test_main)

# ---- session 1: registers, breakpoint, step, memory, continue to the end ----
if ! start_accord s1; then
	tap_not_ok "gdbstub: accord waits for gdb" "$(cat "$tmp/s1.err")"
else
	tap_ok "gdbstub: accord waits for gdb (port $PORT)"
	run_gdb s1 \
		'printf "entry=%#lx\n", $pc' \
		'printf "eflags=%#x cs=%#x\n", $eflags, $cs' \
		'break test_main' \
		'continue' \
		'printf "bp=%#lx\n", $pc' \
		'stepi' \
		'printf "step=%#lx\n", $pc' \
		"dump binary memory $tmp/live.bin test_main test_main+48" \
		'x/xb 0x100000000000' \
		'info threads' \
		'delete' \
		'continue'
	status=0
	wait_accord || status=$?

	got=$(field s1 entry)
	check "gdbstub: rip at the ELF entry point ($entry)" $([ "$((got))" = "$((entry))" ]; echo $?) \
		"rip $got; gdb said: $(head -n 20 "$tmp/s1.gdb")"
	check "gdbstub: eflags and cs as the loader set them" \
		$(grep -qx "eflags=0x2 cs=0x10" "$tmp/s1.gdb"; echo $?) "$(grep ^eflags= "$tmp/s1.gdb")"
	got=$(field s1 bp)
	check "gdbstub: breakpoint at test_main ($main)" \
		$([ "$((got))" = "$((main))" ] && grep -q "^Breakpoint 1, test_main" "$tmp/s1.gdb"; echo $?) \
		"stopped at '$got'"
	got2=$(field s1 step)
	check "gdbstub: stepi moves rip" $([ -n "$got2" ] && [ "$((got2))" -ne "$((main))" ]; echo $?) \
		"rip after stepi: '$got2'"
	# the bytes at test_main in the ELF file: its file offset via .text
	read -r vma off < <(objdump -h "$SYMS" | awk '$2 == ".text" { print "0x" $4, "0x" $6 }')
	dd if="$SYMS" of="$tmp/elf.bin" bs=1 skip=$((off + main - vma)) count=48 2>/dev/null
	check "gdbstub: memory at test_main equals the ELF's bytes" \
		$(cmp -s "$tmp/live.bin" "$tmp/elf.bin"; echo $?) \
		"live: $(od -An -tx1 "$tmp/live.bin" 2>&1 | head -c 100) elf: $(od -An -tx1 "$tmp/elf.bin" | head -c 100)"
	check "gdbstub: an unmapped address cannot be read" \
		$(grep -q "Cannot access memory at address 0x100000000000" "$tmp/s1.gdb"; echo $?) \
		"$(grep -A1 "x/xb" "$tmp/s1.gdb")"
	check "gdbstub: one thread per vCPU" $(grep -q "Thread 1 (vCPU 0)" "$tmp/s1.gdb"; echo $?) \
		"$(grep -A3 "Id " "$tmp/s1.gdb")"
	check "gdbstub: the guest runs to its end under gdb" \
		$(grep -q "exited with code 01" "$tmp/s1.gdb" && grep -q "^DONE passed=" "$tmp/s1.out"; echo $?) \
		"$(tail -n 5 "$tmp/s1.gdb")"
	check "gdbstub: accord's status is the guest's debug-exit status (1)" \
		$([ "$status" -eq 1 ]; echo $?) "status $status; stderr: $(cat "$tmp/s1.err")"
fi

# ---- session 2: Ctrl-C stops a spinning guest, kill ends accord ----
# A protocol client (tools/lockstep's) sends the 0x03 byte itself: gdb in
# batch mode decides by its own timing whether a SIGINT interrupts the
# target or gives up on it, which made such a check flaky on a busy host.
if start_accord s2; then
	timeout 60 python3 - "$PORT" "$main" >"$tmp/s2.py" 2>&1 <<'PY'
import importlib.machinery, importlib.util, sys, time
loader = importlib.machinery.SourceFileLoader("lockstep", "tools/lockstep")
lockstep = importlib.util.module_from_spec(importlib.util.spec_from_loader("lockstep", loader))
loader.exec_module(lockstep)
port, main = int(sys.argv[1]), int(sys.argv[2], 0)
r = lockstep.Remote("accord", port, None)
r.break_at(main)
r.cont()
r.break_at(main, insert=False)
print("write=" + r.cmd("M%x,2:ebfe" % main))  # jmp .
r.send("vCont;c")
time.sleep(0.5)
r.sock.sendall(b"\x03")
print("stop=" + r.recv())
print("stopped=%#x" % r.regs()["rip"])
r.send("k")
PY
	status=0
	wait_accord || status=$?
	got=$(sed -n 's/^stopped=//p' "$tmp/s2.py")
	check "gdbstub: Ctrl-C (0x03) stops the running guest where it spins" \
		$(grep -qx "stop=T02thread:1;" "$tmp/s2.py" && [ "$((got))" = "$((main))" ]; echo $?) \
		"$(cat "$tmp/s2.py")"
	check "gdbstub: kill ends accord (status 0)" \
		$([ "$status" -eq 0 ] && grep -q "killed by the debugger" "$tmp/s2.err"; echo $?) \
		"status $status; stderr: $(cat "$tmp/s2.err")"
else
	tap_not_ok "gdbstub: accord waits for gdb (session 2)" "$(cat "$tmp/s2.err")"
fi

# ---- session 3: two vCPUs as two threads, detach lets the guest finish ----
if start_accord s3 --cpus 2; then
	run_gdb s3 \
		'break test_main' \
		'continue' \
		'info threads' \
		'thread 2' \
		'printf "ap_rip=%#lx\n", $pc' \
		'thread 1' \
		'delete' \
		'detach'
	status=0
	wait_accord || status=$?
	check "gdbstub: --cpus 2 shows two threads; the AP waits in reset state" \
		$(grep -q "Thread 2 (vCPU 1)" "$tmp/s3.gdb" && [ "$(field s3 ap_rip)" = "0xfff0" ]; echo $?) \
		"$(grep -A3 "Id " "$tmp/s3.gdb"); ap_rip=$(field s3 ap_rip)"
	check "gdbstub: after detach the guest runs to its end (status 1)" \
		$([ "$status" -eq 1 ] && grep -q "^DONE passed=" "$tmp/s3.out"; echo $?) \
		"status $status; $(tail -n 3 "$tmp/s3.gdb")"
else
	tap_not_ok "gdbstub: accord waits for gdb (session 3)" "$(cat "$tmp/s3.err")"
fi

# ---- the lockstep divergence finder against QEMU ----
# From the first call of check() (after the boot-protocol test, whose data
# differ by VMM), with the registers the two boot paths leave differently
# copied from accord into QEMU.
if ! command -v "$QEMU" >/dev/null; then
	tap_skip "lockstep" "$QEMU is not installed"
else
	# (TMPDIR: the logs the finder keeps after a divergence go with $tmp)
	lock=(env TMPDIR="$tmp" tools/lockstep --kernel "$KERNEL" --symbols "$SYMS" --from check
		--sync-start)
	timeout 600 "${lock[@]}" --steps 3000 >"$tmp/l1.out" 2>&1
	rc=$?
	check "lockstep: accord and QEMU agree for 3000 steps from check()" \
		$([ "$rc" -eq 0 ] && grep -q "no divergence in 3000 steps" "$tmp/l1.out"; echo $?) \
		"status $rc: $(head -n 40 "$tmp/l1.out")"

	# Further on, the first divergence is QEMU's (tests/qemu_guest.sh lists
	# it): its #PF for a reserved PDE bit reports RSVD without P (error code
	# 8), where SDM vol. 3A 4.7 has both (9), as accord does. The finder sees
	# it when trap_dispatch() loads the error code from the trap frame.
	timeout 900 "${lock[@]}" --steps 40000 >"$tmp/l2.out" 2>&1
	rc=$?
	at=$(sed -n 's/^  executed \(0x[0-9a-f]*\):.*/\1/p' "$tmp/l2.out")
	fn=$([ -n "$at" ] && addr2line -f -e "$SYMS" "$at" | head -n 1)
	if [ "$rc" -eq 0 ] && grep -q "no divergence in 40000 steps" "$tmp/l2.out"; then
		tap_ok "lockstep: no divergence in 40000 steps (QEMU's RSVD error code fixed?)"
	elif [ "$rc" -eq 1 ] && [ "$fn" = trap_dispatch ] &&
		grep -Eq "^  r[a-z0-9]+ +0x0+9 +0x0+8 +<-- differs" "$tmp/l2.out"; then
		tap_ok "lockstep: the first divergence in 40000 steps is QEMU's #PF error code (RSVD without P)"
	else
		tap_not_ok "lockstep: 40000 steps from check()" "status $rc, at $at ($fn): $(head -n 40 "$tmp/l2.out")"
	fi
fi

tap_summary
