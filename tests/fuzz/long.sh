#!/usr/bin/env bash
# A long fuzzing run of one harness: tests/fuzz/long.sh NAME [SECONDS [JOBS]]
# (default 600 s, 1 job). The corpus grows in build/fuzz/corpus/NAME (seeded
# from the harness's own seeds), crashes land in build/fuzz/artifacts/NAME/,
# libFuzzer's log in build/fuzz/NAME.log; the last line printed is the
# final stats line (executions, cov, ft).
set -euo pipefail
cd "$(dirname "$0")/../.."

name=${1:?usage: tests/fuzz/long.sh NAME [SECONDS [JOBS]]}
secs=${2:-600}
make -s -j2 "build/fuzz/$name"
corpus=build/fuzz/corpus/$name
art=build/fuzz/artifacts/$name
mkdir -p "$corpus" "$art"
ACCORD_FUZZ_SEEDS=$corpus "build/fuzz/$name" >/dev/null
"build/fuzz/$name" -max_total_time="$secs" -timeout=60 -rss_limit_mb=2560 -close_fd_mask=3 \
	-print_final_stats=1 -artifact_prefix="$art/" "$corpus" >"build/fuzz/$name.log" 2>&1 || true
grep -E '^#[0-9]+' "build/fuzz/$name.log" | tail -n 1
grep -E '^stat::' "build/fuzz/$name.log" || true
ls "$art"
