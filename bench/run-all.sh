#!/usr/bin/env bash
# Runs every benchmark (what `make bench` calls), each printing its table and
# writing bench/results/NAME.json.
#
#   bench/run-all.sh BUILD_DIR [NAME...]     SIZE=smoke|default|full (env)
#
# default fits a few minutes on 2 cores; SIZE=full uses the sizes of issue 7
# (1 M events for process, 10 M pending rows for claim); SIZE=smoke is the CI
# size (seconds). A failing bench is reported and the others still run.
set -uo pipefail
BUILD_DIR=${1:?usage: bench/run-all.sh BUILD_DIR [ingest process claim scaling peers sustained]}
shift
here=$(cd "$(dirname "$0")" && pwd)
names=("$@")
((${#names[@]})) || names=(ingest process claim scaling peers sustained)
failed=()
for name in "${names[@]}"; do
  echo "## $name (SIZE=${SIZE:-default})"
  if ! bash "$here/$name.sh" "$BUILD_DIR"; then
    failed+=("$name")
    echo "bench $name FAILED" >&2
  fi
  echo
done
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
echo "results in ${RESULTS:-$here/results}/"
