#!/usr/bin/env bash
# 3. claim: latency of 500-event claims (each followed by the Complete that
# deletes the batch) with N pending rows on PostgreSQL, then again while a
# concurrent REPEATABLE READ transaction holds its snapshot (so vacuum cannot
# remove the rows the claims delete: the failure mode of DELETE-based queues).
#
#   bench/claim.sh [BUILD_DIR]        SIZE=smoke|default|full (env)
#
# Rows are enqueued through Store::Enqueue (several threads, 10,000-event
# transactions) with synchronous_commit off for the fill only.
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

PENDING=$(pick 5000 1000000 10000000)
CLAIMS=$(pick 5 400 2000)
ROWS=$WORK/rows.jsonl
: >"$ROWS"

start_pg
url=$(pg_new_db sluice_claim)
log "claim: filling $PENDING pending rows"
"$SLUICE" bench claim --store "$url" --sync false --preload "$PENDING" --preload-batch 10000 \
  --preload-threads 2 --claims 0 --json >"$WORK/fill.json"
psql -X -q "$url" -c "VACUUM ANALYZE queue"

log "claim: $CLAIMS claims, no concurrent transaction"
load=$(load1)
"$SLUICE" bench claim --store "$url" --use-existing-events --claims "$CLAIMS" --json >"$WORK/plain.json"
jmerge "$(cat "$WORK/plain.json")" '{"case":"plain","load1":'"$load"',"fill":'"$(cat "$WORK/fill.json")"'}' >>"$ROWS"

log "claim: $CLAIMS claims while a REPEATABLE READ transaction holds its snapshot"
# The holder takes a snapshot and an xid, then sleeps; killed when done.
psql -X -q "$url" >/dev/null 2>&1 <<SQL &
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT txid_current();
SELECT count(*) FROM queue WHERE seq < 0;
SELECT pg_sleep(3600);
SQL
HOLDER=$!
BENCH_PIDS+=("$HOLDER")
for _ in $(seq 100); do
  n=$(psql -X -At "$url" -c "SELECT count(*) FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND query LIKE '%pg_sleep%'")
  [[ "$n" -ge 1 ]] && break
  sleep 0.1
done
load=$(load1)
"$SLUICE" bench claim --store "$url" --use-existing-events --claims "$CLAIMS" --json >"$WORK/held.json"
# Rows the claims deleted that vacuum could not remove while the snapshot was
# held (their index entries are what a claim from the start of the index steps over).
dead=$(psql -X -At "$url" -c "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'queue'")
kill "$HOLDER" 2>/dev/null || true
psql -X -q "$url" -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()" >/dev/null
jmerge "$(cat "$WORK/held.json")" '{"case":"long transaction held","load1":'"$load"',"dead_rows_after":'"${dead:-0}"'}' >>"$ROWS"

finish claim "$ROWS"
table "$RESULTS/claim.json" '[["case","case"],["pending rows","pending_before"],["claims","rounds"],
  ["claim p50 ms","claim.p50_ms"],["claim p90 ms","claim.p90_ms"],["claim p99 ms","claim.p99_ms"],
  ["claim max ms","claim.max_ms"],["first 10% p50","claim_first_10pct.p50_ms"],
  ["last 10% p50","claim_last_10pct.p50_ms"],["complete p50 ms","complete.p50_ms"],
  ["complete p99 ms","complete.p99_ms"],["load avg","load1"]]'
