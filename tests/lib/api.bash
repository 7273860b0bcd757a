# Sourced by the tests that drive accord through its control API (after
# guest-tap.bash). They use the caller's $tmp; the body of the last request
# is $tmp/body.
#
#   COND; result NAME [WHY]      a TAP line for the status of COND (WHY,
#                                or else $WHY, says why it failed)
#   COND; result $? NAME WHY     the same, when NAME or WHY has a command
#                                substitution: bash sets $? to its status
#                                before result runs, so pass COND's first
#   wait_for SECONDS COMMAND...  until COMMAND succeeds (polling)
#   gone PID                     true once process PID has ended
#   api_request SOCKET METHOD PATH [curl args...]
#                                the HTTP status on stdout, the body in
#                                $tmp/body; at most API_MAX_TIME seconds
#   api SOCKET METHOD PATH ...   the same (a test may define api again
#                                with its own socket)
#   jq_ EXPR                     a python expression on the JSON in
#                                $tmp/body (d)
#   api_runtime_dir              every socket of the test under $tmp/run
#   api_kill_pids                kill -9 the processes in $pids
#   api_test_tmp [FUNCTION...]   test_tmp and api_runtime_dir, the
#                                processes in $pids killed at exit before
#                                the FUNCTIONs run

API_MAX_TIME=20

result() {
	local rc=$?
	if [[ $1 =~ ^[0-9]+$ ]]; then
		rc=$1
		shift
	fi
	if [ "$rc" -eq 0 ]; then tap_ok "$1"; else tap_not_ok "$1" "${2:-${WHY:-}}"; fi
	WHY=
}

wait_for() {
	local limit=$(($1 * 10)) i=0
	shift
	while [ $i -lt $limit ]; do
		"$@" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

gone() { ! kill -0 "$1" 2>/dev/null; }

api_request() {
	local sock=$1 method=$2 path=$3
	shift 3
	curl -s -o "$tmp/body" -w '%{http_code}' --max-time "$API_MAX_TIME" --unix-socket "$sock" -X "$method" "$@" \
		"http://localhost$path"
}

api() { api_request "$@"; }

jq_() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$tmp/body" "$1" \
		2>/dev/null
}

# api_runtime_dir: every socket of this test lives in $tmp/run (exported as
# XDG_RUNTIME_DIR), so accord ls sees only its VMs; SOCKDIR is the folder
# accord puts them in
api_runtime_dir() {
	export XDG_RUNTIME_DIR=$tmp/run
	mkdir -p "$XDG_RUNTIME_DIR"
	SOCKDIR=$XDG_RUNTIME_DIR/accord
}

# pids: the processes a test started; api_test_tmp kills them at exit
pids=()
api_kill_pids() {
	local p
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
}

api_test_tmp() {
	test_tmp api_kill_pids "$@"
	api_runtime_dir
}
