# Sourced by the snapshot tests (after linux-guest.bash and api.bash). They
# use the caller's $tmp and $pids.
#
#   ticks_at_least WORD FILE N   FILE has at least N lines "WORD <n>"
#   ticks_continue WORD ORIG RESTORED LAST MUST...
#                                the ticks of a restored run go on one by
#                                one from the one after ORIG's to LAST and
#                                RESTORED holds every MUST; prints the first
#   snap_round_trip ACCEL NAME WORD LAST WHAT RUN-ARGS...
#                                accord run RUN-ARGS (a test kernel printing
#                                "WORD <n>" up to LAST, then what the array
#                                SNAP_MUST holds) as VM NAME, snapshot it
#                                while it ticks, SIGKILL, restore it twice;
#                                WHAT names it in the TAP lines; status 1
#                                when it did not tick (a SKIP when kvm is
#                                not there)
#   loop_snapshot WHAT           on the console of VM lin (log $log), a loop
#                                counting to $N and printing its sum $SUM;
#                                snapshot it mid-loop to $tmp/lin.snap,
#                                SIGKILL it; WHAT names the guest
#   loop_continues RESTORED      the restored loop's counter goes on one by
#                                one from where the snapshot was to N - 1
#   net_guest_start NAME LOG     the stock kernel in $IMG with virtio-net on
#                                user-mode networking, hostfwd from the
#                                host's $port to the guest's 8080, booted
#                                to init under the console

ticks_at_least() {
	[ -f "$2" ] && [ "$(grep -c "^$1 " "$2")" -ge "$3" ]
}

ticks_continue() {
	python3 - "$@" <<'EOF'
import re, sys
word, last, must = sys.argv[1], int(sys.argv[4]), sys.argv[5:]
pat = r'^' + re.escape(word) + r' (\d+)\r?$'
orig = [int(m) for m in re.findall(pat, open(sys.argv[2]).read(), re.M)]
text = open(sys.argv[3]).read()
rest = [int(m) for m in re.findall(pat, text, re.M)]
ok = (len(rest) > 0 and rest[0] >= 2 and rest[0] - 1 in orig and rest == list(range(rest[0], last + 1))
      and all(m in text for m in must))
print(rest[0] if rest else 0)
sys.exit(0 if ok else 1)
EOF
}

snap_round_trip() {
	local accel=$1 name=$2 word=$3 last=$4 what=$5
	shift 5
	"$ACCORD" run "$@" --accel "$accel" --name "$name" --debug-exit </dev/null >"$tmp/$name.log" 2>&1 &
	local pid=$!
	pids+=("$pid")
	if ! wait_for 60 ticks_at_least "$word" "$tmp/$name.log" 20; then
		if [ "$accel" = kvm ] && ! kill -0 "$pid" 2>/dev/null; then
			tap_skip "$accel: snapshot and restore of $what" \
				"no kvm engine here ($(grep '^accord:' "$tmp/$name.log" | head -n 1))"
			return 1
		fi
		tap_not_ok "$accel: $what ticks" "$(tail -n 3 "$tmp/$name.log")"
		return 1
	fi
	"$ACCORD" snapshot "$name" "$tmp/$name.snap" >"$tmp/$name.snap.log" 2>&1
	result $? "$accel: accord snapshot of $what while it ticks" "$(cat "$tmp/$name.snap.log")"
	kill -9 "$pid"
	wait "$pid" 2>/dev/null
	local first1 first2 rc
	timeout 120 "$ACCORD" restore "$tmp/$name.snap" --name "$name-r1" </dev/null >"$tmp/$name.r1.log" 2>&1
	rc=$?
	first1=$(ticks_continue "$word" "$tmp/$name.log" "$tmp/$name.r1.log" "$last" "${SNAP_MUST[@]}")
	result $? "$accel: restored after SIGKILL, the ticks go on from $first1 to $last" \
		"$(head -n 3 "$tmp/$name.r1.log"; tail -n 3 "$tmp/$name.r1.log")"
	[ "$rc" -eq 1 ]
	result "$accel: the restored guest ends through debug-exit (status 1)" "status $rc"
	timeout 120 "$ACCORD" restore "$tmp/$name.snap" --name "$name-r2" </dev/null >"$tmp/$name.r2.log" 2>&1
	first2=$(ticks_continue "$word" "$tmp/$name.log" "$tmp/$name.r2.log" "$last" "${SNAP_MUST[@]}")
	[ $? -eq 0 ] && [ "$first1" = "$first2" ]
	result "$accel: a second restore of the same file starts at the same tick ($first2)"
}

loop_snapshot() {
	console_send "i=0; s=0; while [ \$i -lt $N ]; do echo count \$i; s=\$((s+i)); i=\$((i+1)); sleep 0.02; done; echo done \$((s+0)) L\$((1+1))"
	if console_wait "^count 40" 120; then
		tap_ok "the loop counts"
	else
		tap_not_ok "the loop counts" "$(tail -n 3 "$log")"
	fi
	"$ACCORD" snapshot lin "$tmp/lin.snap" >"$tmp/lin.snap.log" 2>&1
	result $? "accord snapshot of $1 in the middle of the loop" "$(cat "$tmp/lin.snap.log")"
	kill -9 "$CONSOLE_PID"
	console_finish 5
	! grep -q "^done" "$log"
	result $? "the loop had not finished when the VM was killed" "$(tail -n 2 "$log")"
}

loop_continues() {
	python3 - "$log" "$1" "$N" <<'EOF'
import re, sys
orig = [int(m) for m in re.findall(r'^count (\d+)\r?$', open(sys.argv[1]).read(), re.M)]
rest = [int(m) for m in re.findall(r'^count (\d+)\r?$', open(sys.argv[2]).read(), re.M)]
n = int(sys.argv[3])
sys.exit(0 if rest and rest[0] >= 40 and rest[0] - 1 in orig and rest == list(range(rest[0], n)) else 1)
EOF
}

net_guest_start() {
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	console_start "$2" "$ACCORD" run --kernel "$IMG/vmlinuz" --initrd "$IMG/initrd.cpio.gz" \
		--cmdline "console=ttyS0 panic=-1" --memory 256M --accel emu --name "$1" \
		--net "user,hostfwd=tcp:127.0.0.1:$port-:8080"
	pids+=("$CONSOLE_PID")
	guest_booted "Linux with virtio-net boots to init"
	sleep 1
}
