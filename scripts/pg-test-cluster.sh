#!/usr/bin/env bash
# The CTest fixture of the PostgreSQL tests (tests/CMakeLists.txt): one
# throwaway cluster for the whole test run.
#
#   scripts/pg-test-cluster.sh start STATE_DIR   starts it; URL in STATE_DIR/url
#   scripts/pg-test-cluster.sh stop STATE_DIR    stops it and removes its data
#
# Tests find the URL through SLUICE_TEST_PG_URL_FILE=STATE_DIR/url. The data
# directory lives under $TMPDIR (the server runs as `postgres` when we are
# root, and must be able to reach it); STATE_DIR/dir remembers where.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: pg-test-cluster.sh start|stop STATE_DIR}
state=${2:?usage: pg-test-cluster.sh start|stop STATE_DIR}

stop() {
  if [[ -f "$state/dir" ]]; then bash "$here/pg-stop.sh" "$(cat "$state/dir")"; fi
  rm -rf "$state"
}

case "$cmd" in
  start)
    stop  # a cluster left over by an interrupted run
    mkdir -p "$state"
    data=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX")
    echo "$data" >"$state/dir"
    url=$(bash "$here/pg-start.sh" "$data")
    echo "$url" >"$state/url.tmp"
    mv "$state/url.tmp" "$state/url"
    echo "PostgreSQL test cluster: $url (data $data)"
    ;;
  stop)
    stop
    ;;
  *)
    echo "usage: pg-test-cluster.sh start|stop STATE_DIR" >&2
    exit 2
    ;;
esac
