#!/usr/bin/env bash
# Paired `sluice bench process` runs without and with a job consumer
# (users,counters vs users,counters,job), back to back, alternating which
# goes first; SQLite and PostgreSQL. One JSON line per run on stdout.
#
#   bench/jobs-process-pairs.sh [BUILD_DIR]     PAIRS (default 3), EVENTS (default 200000)
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"
PAIRS=${PAIRS:-3}
EVENTS=${EVENTS:-200000}
start_pg
run() {  # STORE VARIANT
  local store=$1 variant=$2 url dir load out consumers=users,counters
  case $store in
    sqlite) dir=$(mktemp -d "$WORK/s.XXXX"); url="sqlite:$dir/sluice.db" ;;
    postgres) url=$(pg_new_db sluice_pair) ;;
  esac
  [[ $variant == job ]] && consumers=users,counters,job
  load=$(load1)
  out=$("$SLUICE" bench process --store "$url" --sync true --preload "$EVENTS" \
    --consumers "$consumers" --replicas 1 --json)
  echo "{\"store\":\"$store\",\"variant\":\"$variant\",\"load1\":$load,\"out\":$out}"
}
for store in sqlite postgres; do
  for p in $(seq "$PAIRS"); do
    if (( p % 2 == 1 )); then run "$store" base; run "$store" job; else run "$store" job; run "$store" base; fi
  done
done
