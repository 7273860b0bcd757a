#!/usr/bin/env bash
# The libFuzzer harnesses as a short smoke test: builds them (make fuzz),
# and for each tests/fuzz/NAME.c generates its seed corpus, replays the
# inputs of earlier crashes kept in tests/fuzz/regress/NAME/ (each must now
# run clean), and fuzzes FUZZ_RUNS inputs (default 10000; a harness whose
# inputs are slow says "smoke runs: N" in its source) with a fixed seed.
# A crash, a sanitizer report, a leak or a timeout of one input is a
# failure; the crashing input is kept in build/fuzz/artifacts/NAME/.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/lib/guest-tap.bash

test_tmp

if make -s -j2 fuzz >"$tmp/build.log" 2>&1; then
	tap_ok "build the harnesses (clang, libFuzzer, ASan, UBSan)"
else
	tap_not_ok "build the harnesses (clang, libFuzzer, ASan, UBSan)" \
		"$(tail -n 20 "$tmp/build.log" | sed 's/^/# /')"
	tap_summary
	exit 1
fi

# the last stats line libFuzzer printed, reduced to its figures
stats() {
	grep -E '^#[0-9]+' "$1" | tail -n 1 | grep -oE '(cov|ft|corp): [0-9/a-zA-Z]+' | tr '\n' ' '
}

for src in tests/fuzz/*.c; do
	name=$(basename "$src" .c)
	bin=build/fuzz/$name
	dir=$tmp/$name
	art=build/fuzz/artifacts/$name
	mkdir -p "$dir/corpus" "$art"
	RUNS=$(grep -oE 'smoke runs: [0-9]+' "$src" | grep -oE '[0-9]+$' || true)
	RUNS=${FUZZ_RUNS:-${RUNS:-10000}}

	if ACCORD_FUZZ_SEEDS=$dir/seeds "$bin" >"$dir/seeds.log" 2>&1 &&
		n=$(find "$dir/seeds" -type f | wc -l) && [ "$n" -gt 0 ]; then
		tap_ok "$name: $n seeds generated"
	else
		tap_not_ok "$name: seeds generated" "$(head -n 5 "$dir/seeds.log")"
		continue
	fi

	regress=(tests/fuzz/regress/"$name"/*)
	if [ -e "${regress[0]}" ]; then
		if "$bin" -close_fd_mask=3 "${regress[@]}" >"$dir/regress.log" 2>&1; then
			tap_ok "$name: ${#regress[@]} inputs of fixed crashes run clean"
		else
			tap_not_ok "$name: inputs of fixed crashes run clean" \
				"$(grep -E 'ERROR|SUMMARY|runtime error|Running:' "$dir/regress.log" | tail -n 8 | sed 's/^/# /')"
		fi
	fi

	if "$bin" -runs="$RUNS" -seed=1 -timeout=60 -rss_limit_mb=2560 -close_fd_mask=3 \
		-artifact_prefix="$art/" "$dir/corpus" "$dir/seeds" >"$dir/fuzz.log" 2>&1; then
		tap_ok "$name: $RUNS fuzzed inputs run clean ($(stats "$dir/fuzz.log"))"
	else
		tap_not_ok "$name: $RUNS fuzzed inputs run clean" \
			"$(grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$dir/fuzz.log" | tail -n 8 | sed 's/^/# /')"
	fi
done
tap_summary
