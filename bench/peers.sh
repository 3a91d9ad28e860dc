#!/usr/bin/env bash
# 5. peers: on the same PostgreSQL (fsync on), N units of work through
# pg-boss 10 and graphile-worker 0.17 (installed from npm by this script with
# the committed lockfile), with their default settings and with their batch
# options, a no-op handler, each twice: as shipped (synchronous_commit on) and
# with PGOPTIONS='-c synchronous_commit=off' for their connections (then their
# completions, like sluice's, do not wait for the WAL flush); versus N events through sluice with a no-op
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

# Each peer twice: as it ships (every commit waits for the WAL flush) and with
# synchronous_commit = off for its connections, so that its completions do
# not wait for the flush either, as sluice's complete does not.
for sync in on off; do
  for peer in pgboss graphile; do
    for mode in default batch; do
      db=$(pg_new_db "peer_${peer}_${mode}_$sync")
      log "peers: $peer $mode, synchronous_commit $sync, $JOBS jobs (window ${WINDOW} s)"
      opts=$PGOPTIONS
      [[ $sync == off ]] && opts="$PGOPTIONS -c synchronous_commit=off"
      PGOPTIONS=$opts node "$BENCH_DIR/peers/bench.js" "$peer" --url "$db" --jobs "$JOBS" \
        --mode "$mode" --batch-size 500 --max-seconds "$WINDOW" >>"$ROWS"
    done
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
      durability:"claim flushed; complete, extend, fail not",
      jobs:s.pending_before, finished:s.completed, seconds:s.seconds, units_per_s:s.events_per_s,
      enqueue_seconds:s.preload.seconds, enqueue_per_s:s.preload.events_per_s, complete:!s.timed_out,
      settings:`1 replica, ${loops} claim loops, 500-event claims, test consumer sleep_ms=0`, sluice:s}))' \
    "$WORK/sluice.json" "$loops" >>"$ROWS"
done

# Ratios. The headline: sluice (default watcher; its claim still waits for
# the flush) / the faster peer's batch configuration with synchronous_commit
# off, i.e. peers at equal or lower durability than sluice. Then the same
# against the peers as shipped, and against their defaults (which measure
# polling intervals more than queues: not a headline).
node -e '
  const fs=require("fs"); const f=process.argv[1];
  const rows=fs.readFileSync(f,"utf8").split("\n").filter(Boolean).map(JSON.parse);
  const s=rows.find(r=>r.peer==="sluice"&&r.mode==="default").units_per_s;
  const s8=rows.find(r=>r.peer==="sluice"&&r.mode==="8 loops").units_per_s;
  const peers=rows.filter(r=>r.peer!=="sluice");
  const best=(m,d)=>{const c=peers.filter(r=>r.mode===m&&r.durability===d);
    const b=c.reduce((x,r)=>r.units_per_s>x.units_per_s?r:x,c[0]); return b;};
  for (const r of rows) r.sluice_ratio = r.peer==="sluice" ? null : s/r.units_per_s;
  const add=(label,num,b,headline)=>rows.push({peer:"ratio", mode:label+` (${b.peer} ${b.mode})`,
    durability:b.durability, units_per_s:num/b.units_per_s, headline});
  add("sluice (default) / faster peer, batch options, synchronous_commit off", s, best("batch","off"), true);
  add("sluice (8 loops) / faster peer, batch options, synchronous_commit off", s8, best("batch","off"), false);
  add("sluice (default) / faster peer, batch options, as shipped", s, best("batch","on"), false);
  add("sluice (default) / faster peer, defaults, as shipped", s, best("default","on"), false);
  add("sluice (default) / faster peer, defaults, synchronous_commit off", s, best("default","off"), false);
  fs.writeFileSync(f, rows.map(r=>JSON.stringify(r)).join("\n")+"\n");' "$ROWS"

finish peers "$ROWS"
table "$RESULTS/peers.json" '[["system","peer"],["version","version"],["mode","mode"],
  ["synchronous_commit","durability"],["settings","settings"],
  ["units","finished"],["seconds","seconds"],["units/s","units_per_s"],["sluice ×","sluice_ratio"],
  ["enqueue units/s","enqueue_per_s"]]'
