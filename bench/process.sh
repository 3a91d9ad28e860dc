#!/usr/bin/env bash
# 2. process: end-to-end events/s of one replica (default watcher: 2 claim
# loops, 500-event claims) applying `users` + `counters`, on a queue
# pre-loaded through Store::Enqueue; SQLite and PostgreSQL, sync on.
# The replica is `sluice bench process`: the same Store + Watcher + consumers
# `sluice serve` builds, in process, timed from start to the last Complete.
#
#   bench/process.sh [BUILD_DIR]        SIZE=smoke|default|full (env)
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

EVENTS=$(pick 2000 200000 1000000)
STORES=${STORES:-sqlite postgres}
ROWS=$WORK/rows.jsonl
: >"$ROWS"

for store in $STORES; do
  case $store in
    sqlite) mkdir -p "$WORK/sqlite"; url="sqlite:$WORK/sqlite/sluice.db" ;;
    postgres) [[ -n "${PG_URL:-}" ]] || start_pg; url=$(pg_new_db sluice_process) ;;
  esac
  log "process $store: $EVENTS events, users+counters, 1 replica"
  load=$(load1)
  "$SLUICE" bench process --store "$url" --sync true --preload "$EVENTS" \
    --consumers users,counters --replicas 1 --json >"$WORK/out.json"
  jmerge "$(cat "$WORK/out.json")" "{\"load1\":$load,\"store_kind\":\"$store\"}" >>"$ROWS"
done

finish process "$ROWS"
table "$RESULTS/process.json" '[["store","store"],["events","completed"],["events/s","events_per_s"],
  ["seconds","seconds"],["claim p50 ms","claim.p50_ms"],["claim p99 ms","claim.p99_ms"],
  ["complete p50 ms","complete.p50_ms"],["complete p99 ms","complete.p99_ms"],
  ["duplicate dispatches","duplicate_dispatches"],["preload events/s","preload.events_per_s"],
  ["sluice CPU s","cpu_s"],["load avg","load1"]]'
