#!/usr/bin/env bash
# The long chaos round (`make chaos`): every chaos test (labels chaos-short) with
# CHAOS_SECONDS of workload and faults per round (default 300), then the fuzz
# targets for FUZZ_SECONDS each (default 120; 0 = skip).
# Usage: scripts/chaos.sh [BUILD_DIR=build-test]
# Each round prints its figures ("=== chaos ... ===") and writes its summary
# (tests/chaos/run_summary.h) to CHAOS_RESULTS_DIR, by default
# tests/chaos/results/<UTC date>/; the tables of RELIABILITY.md are rendered
# from those files by scripts/chaos-table.py, printed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build-test}
export CHAOS_SECONDS=${CHAOS_SECONDS:-300}
export CHAOS_RESULTS_DIR=${CHAOS_RESULTS_DIR:-$root/tests/chaos/results/$(date -u +%Y-%m-%dT%H%MZ)}
export CHAOS_COMMAND=${CHAOS_COMMAND:-"make chaos (CHAOS_SECONDS=$CHAOS_SECONDS${CHAOS_FAULTS:+ CHAOS_FAULTS=$CHAOS_FAULTS})"}
mkdir -p "$CHAOS_RESULTS_DIR"
# A round is CHAOS_SECONDS plus drain and checks; CTest's per-test timeout must cover it.
timeout=$((CHAOS_SECONDS * 2 + 300))
set +e
ctest --test-dir "$build" -L chaos --output-on-failure --timeout "$timeout" -j 1 -V 2>&1 |
  grep -E '^[0-9]+: (===|run:|faults:|checker:|dispatch:|receiver:|summary:|  VIOLATION|  FAULT)|tests passed|tests failed|Failed|Passed'
rc=${PIPESTATUS[0]}
set -e
python3 "$here/chaos-table.py" "$CHAOS_RESULTS_DIR" || rc=1
if [[ "${FUZZ_SECONDS:-120}" != 0 ]]; then
  bash "$here/fuzz.sh" "${FUZZ_SECONDS:-120}" || rc=1
fi
exit "$rc"
