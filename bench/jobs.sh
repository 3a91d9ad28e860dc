#!/usr/bin/env bash
# jobs: job runs/s of one replica's JobRunner (`sluice bench jobs`): KEYS
# runs of one job scheduled up front (due now), then run against a local
# receiver answering 200 (node, bench/lib/job_receiver.js); SQLite and
# PostgreSQL, sync on. The receiver shares the machine's cores.
#
#   bench/jobs.sh [BUILD_DIR]        SIZE=smoke|default|full (env); LOOPS (default 4)
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

KEYS=$(pick 500 20000 100000)
LOOPS=${LOOPS:-4}
STORES=${STORES:-sqlite postgres}
ROWS=$WORK/rows.jsonl
: >"$ROWS"

port=$(free_port)
node "$BENCH_DIR/lib/job_receiver.js" "$port" >"$WORK/receiver.log" 2>&1 &
BENCH_PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/receiver.log" && break; sleep 0.1; done

for store in $STORES; do
  case $store in
    sqlite) mkdir -p "$WORK/sqlite-$store"; url="sqlite:$WORK/sqlite-$store/sluice.db" ;;
    postgres) [[ -n "${PG_URL:-}" ]] || start_pg; url=$(pg_new_db sluice_jobs) ;;
  esac
  log "jobs $store: $KEYS runs, $LOOPS loops"
  load=$(load1)
  "$SLUICE" bench jobs --store "$url" --sync true --keys "$KEYS" --loops "$LOOPS" \
    --url "http://127.0.0.1:$port/run" --json >"$WORK/out.json"
  jmerge "$(cat "$WORK/out.json")" "{\"load1\":$load}" >>"$ROWS"
done

finish jobs "$ROWS"
table "$RESULTS/jobs.json" '[["store","store_kind"],["runs","runs"],["runs/s","runs_per_s"],
  ["seconds","seconds"],["loops","loops"],["runs per claim","batch"],["sluice CPU s","cpu_s"],
  ["load avg","load1"]]'
