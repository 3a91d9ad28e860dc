#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cc) with clang + ASan/UBSan in
# build-fuzz and runs each for N seconds on its seed corpus (the long runs by
# hand; `make test` runs each for SLUICE_FUZZ_SECONDS as CTest label fuzz-short).
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET=20] [TARGET...]   (default: every target)
# New inputs go to build-fuzz/tests/fuzz/corpus/<target>/; crashes to build-fuzz/crashes/.
# Needs clang + libclang-rt-14-dev (scripts/setup.sh --test).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECS="${1:-20}"
shift || true
BUILD="$ROOT/build-fuzz"
CC="${CC:-clang}" CXX="${CXX:-clang++}" cmake -S "$ROOT" -B "$BUILD" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER="${CC:-clang}" \
  -DCMAKE_CXX_COMPILER="${CXX:-clang++}" -DSLUICE_BUILD_TESTS=ON -DSLUICE_FUZZ=ON \
  -DSLUICE_ASAN=ON -DSLUICE_UBSAN=ON -DCMAKE_CXX_FLAGS="" \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" >/dev/null
if [[ $# -gt 0 ]]; then
  TARGETS=("$@")
else
  TARGETS=()
  for src in "$ROOT"/tests/fuzz/*_fuzz.cc; do TARGETS+=("$(basename "$src" .cc)"); done
fi
ninja -C "$BUILD" -j"${JOBS:-2}" "${TARGETS[@]}"
mkdir -p "$BUILD/crashes"
status=0
for t in "${TARGETS[@]}"; do
  work="$BUILD/tests/fuzz/corpus/$t"
  mkdir -p "$work"
  echo "== $t: ${SECS}s"
  if ! "$BUILD/tests/fuzz/$t" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 \
      -timeout=20 -print_final_stats=1 \
      -artifact_prefix="$BUILD/crashes/$t-" "$work" "$ROOT/tests/fuzz/corpus/$t"; then
    echo "!! $t found a crash: $BUILD/crashes/$t-*" >&2
    status=1
  fi
done
exit $status
