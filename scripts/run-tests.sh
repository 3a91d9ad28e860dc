#!/usr/bin/env bash
# Runs CTest on a test build with the given label regex; the summary line
# ("100% tests passed, 0 tests failed out of N") is printed last.
set -euo pipefail
build=${1:-build-test}
labels=${2:-unit|store|system}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
log=$(mktemp)
set +e
ctest --test-dir "$build" -L "$labels" --output-on-failure --timeout 900 -j "${CTEST_JOBS:-2}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo
grep -E 'tests passed|tests failed' "$log" | tail -1
rm -f "$log"
exit "$rc"
