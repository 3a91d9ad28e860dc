#!/usr/bin/env bash
# 5. peers: on the same PostgreSQL (sync on for all), N units of work through
# pg-boss 10 and graphile-worker 0.17 (installed from npm by this script with
# the committed lockfile), with their default settings and with their batch
# options, a no-op handler; versus N events through sluice with a no-op
# consumer (the "test" consumer, sleep 0) on one replica with default watcher
# settings, and again with 8 claim loops. Each side enqueues with its bulk API in 1,000-unit calls (timed
# apart), then processing is timed from worker start to the last unit done.
# Units/s and sluice's ratio to the faster peer, per settings class.
#
#   bench/peers.sh [BUILD_DIR]        SIZE=smoke|default|full (env)
#
# A run whose worker is slower than the window (pg-boss's default worker
# fetches one job per 2 s poll) is cut after PEER_WINDOW seconds and its rate
# is the units finished by then.
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

JOBS=$(pick 2000 100000 100000)
WINDOW=${PEER_WINDOW:-$(pick 5 30 60)}
ROWS=$WORK/rows.jsonl
: >"$ROWS"

if [[ ! -d "$BENCH_DIR/peers/node_modules/pg-boss" || ! -d "$BENCH_DIR/peers/node_modules/graphile-worker" ]]; then
  log "peers: npm ci"
  (cd "$BENCH_DIR/peers" && npm ci --no-audit --no-fund >/dev/null)
fi
start_pg

for peer in pgboss graphile; do
  for mode in default batch; do
    db=$(pg_new_db "peer_${peer}_$mode")
    log "peers: $peer $mode, $JOBS jobs (window ${WINDOW} s)"
    node "$BENCH_DIR/peers/bench.js" "$peer" --url "$db" --jobs "$JOBS" --mode "$mode" \
      --batch-size 500 --max-seconds "$WINDOW" >>"$ROWS"
  done
done

# sluice with the default watcher (2 claim loops), then with 8 loops: claims
# never wait for each other (SKIP LOCKED), so more loops overlap the commits.
for loops in 2 8; do
  db=$(pg_new_db "peer_sluice_$loops")
  log "peers: sluice, $JOBS events, $loops claim loops"
  "$SLUICE" bench process --store "$db" --sync true --preload "$JOBS" --preload-batch 1000 \
    --preload-threads 1 --consumers test --consumer-opt sleep_ms=0 --replicas 1 --loops "$loops" \
    --json >"$WORK/sluice.json"
  node -e '
    const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); const loops=Number(process.argv[2]);
    console.log(JSON.stringify({peer:"sluice", version:"", mode:loops===2?"default":"8 loops",
      jobs:s.pending_before, finished:s.completed, seconds:s.seconds, units_per_s:s.events_per_s,
      enqueue_seconds:s.preload.seconds, enqueue_per_s:s.preload.events_per_s, complete:!s.timed_out,
      settings:`1 replica, ${loops} claim loops, 500-event claims, test consumer sleep_ms=0`, sluice:s}))' \
    "$WORK/sluice.json" "$loops" >>"$ROWS"
done

# Ratios: sluice / the faster peer with default settings, and with batch options.
node -e '
  const fs=require("fs"); const f=process.argv[1];
  const rows=fs.readFileSync(f,"utf8").split("\n").filter(Boolean).map(JSON.parse);
  const s=rows.find(r=>r.peer==="sluice"&&r.mode==="default").units_per_s;
  const s8=rows.find(r=>r.peer==="sluice"&&r.mode==="8 loops").units_per_s;
  const best=(m)=>Math.max(...rows.filter(r=>r.peer!=="sluice"&&r.mode===m).map(r=>r.units_per_s));
  for (const r of rows) r.sluice_ratio = r.peer==="sluice" ? null : s/r.units_per_s;
  rows.push({peer:"ratio", mode:"sluice (default) / faster peer, defaults", units_per_s:s/best("default")});
  rows.push({peer:"ratio", mode:"sluice (default) / faster peer, batch options", units_per_s:s/best("batch")});
  rows.push({peer:"ratio", mode:"sluice (8 loops) / faster peer, batch options", units_per_s:s8/best("batch")});
  fs.writeFileSync(f, rows.map(r=>JSON.stringify(r)).join("\n")+"\n");' "$ROWS"

finish peers "$ROWS"
table "$RESULTS/peers.json" '[["system","peer"],["version","version"],["mode","mode"],["settings","settings"],
  ["units","finished"],["seconds","seconds"],["units/s","units_per_s"],["sluice ×","sluice_ratio"],
  ["enqueue units/s","enqueue_per_s"]]'
