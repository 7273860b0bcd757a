# Sourced by tests that drive a guest through its serial console: start a
# VMM with the console on a pipe, wait for output, type commands.
#
#   console_start LOG COMMAND...   start; output is appended to LOG
#   console_wait REGEX SECONDS     true once a line matching REGEX appeared
#                                  after the last console_wait (or start)
#   console_send TEXT              type TEXT and a newline
#   console_finish SECONDS         wait for the VMM to exit; sets CONSOLE_STATUS
#   console_poweroff NAME          poweroff -f, and accord must end with 0
#
# Commands typed are echoed by the guest's tty; a test that needs the output
# of a command writes a marker the echo cannot contain, e.g.
# `echo R$((1+1))` is echoed as typed but prints "R2".

CONSOLE_LOG=
CONSOLE_POS=0
CONSOLE_STATUS=
CONSOLE_PID=

console_start() {
	CONSOLE_LOG=$1
	shift
	: >"$CONSOLE_LOG"
	CONSOLE_POS=0
	local fifo
	fifo=$(mktemp -u)
	mkfifo "$fifo"
	"$@" <"$fifo" >>"$CONSOLE_LOG" 2>&1 &
	CONSOLE_PID=$!
	exec {CONSOLE_IN}>"$fifo"
	rm -f "$fifo"
}

console_wait() {
	local regex=$1 limit=$2 waited=0
	while [ "$waited" -lt $((limit * 10)) ]; do
		local size
		size=$(stat -c %s "$CONSOLE_LOG")
		# only the bytes up to size: a line that arrives after the stat
		# is left for the next wait, which starts at size
		if head -c "$size" "$CONSOLE_LOG" | tail -c +$((CONSOLE_POS + 1)) | tr -d '\r' | grep -qE -- "$regex"; then
			CONSOLE_POS=$size
			return 0
		fi
		kill -0 "$CONSOLE_PID" 2>/dev/null || {
			tail -c +$((CONSOLE_POS + 1)) "$CONSOLE_LOG" | tr -d '\r' | grep -qE -- "$regex" && return 0
			return 1
		}
		sleep 0.1
		waited=$((waited + 1))
	done
	return 1
}

# the first capture group of REGEX in the output since the last console_wait
console_match() {
	tail -c +1 "$CONSOLE_LOG" | tr -d '\r' | sed -nE "s/.*$1.*/\\1/p" | tail -n 1
}

console_send() {
	printf '%s\n' "$1" >&"$CONSOLE_IN"
}

console_finish() {
	local limit=$1 waited=0
	while kill -0 "$CONSOLE_PID" 2>/dev/null && [ "$waited" -lt $((limit * 10)) ]; do
		sleep 0.1
		waited=$((waited + 1))
	done
	if kill -0 "$CONSOLE_PID" 2>/dev/null; then
		kill -9 "$CONSOLE_PID" 2>/dev/null
		wait "$CONSOLE_PID" 2>/dev/null
		CONSOLE_STATUS=timeout
	else
		wait "$CONSOLE_PID"
		CONSOLE_STATUS=$?
	fi
	exec {CONSOLE_IN}>&-
}

# console_check NAME CMD REGEX [LIMIT]: type CMD, and NAME passes when a
# line matching REGEX arrives within LIMIT seconds (default 120). CMD's
# echo must not match REGEX: compute the marker in the guest ($((1+1))).
console_check() {
	local name=$1 cmd=$2 regex=$3 limit=${4:-120}
	console_send "$cmd"
	if console_wait "$regex" "$limit"; then
		tap_ok "$name"
		return 0
	fi
	tap_not_ok "$name" "no line matching '$regex'"
	console_tail
	return 1
}

# the last lines of the console log, as TAP comments
console_tail() {
	tail -n "${1:-15}" "$CONSOLE_LOG" | tr -d '\r' | sed 's/^/#   /'
}

# console_poweroff NAME: type `poweroff -f`; "NAME ends accord with status
# 0" passes when the VMM exits with 0 within 60 seconds
console_poweroff() {
	console_send 'poweroff -f'
	console_finish 60
	if [ "$CONSOLE_STATUS" = 0 ]; then
		tap_ok "$1 ends accord with status 0"
	else
		tap_not_ok "$1" "accord exit status $CONSOLE_STATUS"
		console_tail
	fi
}
