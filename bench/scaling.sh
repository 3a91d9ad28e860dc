#!/usr/bin/env bash
# 4. scaling: an I/O-bound consumer (the "test" consumer sleeping SLEEP_MS per
# batch, like a network sink) with 1, 2, 4, 8 replicas on PostgreSQL and on
# SQLite: events/s, scaling efficiency against N x the 1-replica rate, and
# duplicate dispatches (events claimed again while another replica held
# them = events claimed - events completed, after every replica drained).
# Side by side: the same runs with the naive two-step claim (select, then
# update in a separate transaction: the bug sluice exists to prevent), run by
# the test binary sluice-testkit (the shipped binary has no such claim).
#
#   bench/scaling.sh [BUILD_DIR]        SIZE=smoke|default|full (env)
#
# Replicas are `sluice bench process` in-process replicas: each has its own
# Store (own connection pool) and Watcher (2 claim loops) and replica id.
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

SLEEP_MS=${SLEEP_MS:-100}
BATCH=${BATCH:-100}
LOOPS=2
DURATION=$(pick 1 8 15)
REPLICAS=$(pick "1 2" "1 2 4 8" "1 2 4 8")
STRATEGIES=${STRATEGIES:-atomic naive}
STORES=${STORES:-postgres sqlite}
ROWS=$WORK/rows.jsonl
: >"$ROWS"

# Events the runs of one store consume at most (ideal rate x duration), x 1.3.
need=$(node -e '
  const [reps,strats,loops,batch,sleep,dur]=process.argv.slice(1);
  const r=reps.split(" ").map(Number).reduce((a,b)=>a+b,0);
  const s=strats.split(" ").length;
  console.log(Math.ceil(r*s*loops*batch*1000/sleep*dur*1.3))' \
  "$REPLICAS" "$STRATEGIES" "$LOOPS" "$BATCH" "$SLEEP_MS" "$DURATION")

for store in $STORES; do
  case $store in
    sqlite) mkdir -p "$WORK/sqlite"; url="sqlite:$WORK/sqlite/sluice.db" ;;
    postgres) [[ -n "${PG_URL:-}" ]] || start_pg; url=$(pg_new_db sluice_scaling) ;;
  esac
  log "scaling $store: preloading $need events"
  "$SLUICE" bench claim --store "$url" --sync false --preload "$need" --preload-batch 10000 \
    --claims 0 --json >/dev/null
  for strategy in $STRATEGIES; do
    for r in $REPLICAS; do
      log "scaling $store $strategy: $r replica(s) x $LOOPS loops, ${SLEEP_MS} ms per $BATCH-event batch, ${DURATION} s"
      load=$(load1)
      if [[ $strategy == naive ]]; then
        bin=("$SLUICE_TESTKIT" bench process --test-only store.claim_strategy=naive)
      else
        bin=("$SLUICE" bench process)
      fi
      "${bin[@]}" --store "$url" --use-existing-events --consumers test \
        --consumer-opt "sleep_ms=$SLEEP_MS" --replicas "$r" --loops "$LOOPS" --batch "$BATCH" \
        --lease-ttl-ms 30000 --duration "$DURATION" --json >"$WORK/out.json"
      ideal=$(node -e 'console.log(process.argv[1]*process.argv[2]*process.argv[3]*1000/process.argv[4])' \
        "$r" "$LOOPS" "$BATCH" "$SLEEP_MS")
      jmerge "$(cat "$WORK/out.json")" "{\"load1\":$load,\"store_kind\":\"$store\",\"sleep_ms\":$SLEEP_MS,\"ideal_events_per_s\":$ideal}" >>"$ROWS"
    done
  done
done

# Efficiency: events/s at N replicas / (N x events/s at 1 replica), per store and strategy.
node -e '
  const fs=require("fs"); const f=process.argv[1];
  const rows=fs.readFileSync(f,"utf8").split("\n").filter(Boolean).map(JSON.parse);
  const base={};
  for (const r of rows) if (r.replicas===1) base[r.store+r.claim_strategy]=r.events_per_s;
  for (const r of rows) { const b=base[r.store+r.claim_strategy];
    r.efficiency = b ? r.events_per_s/(r.replicas*b) : null;
    r.of_ideal = r.events_per_s/r.ideal_events_per_s; }
  fs.writeFileSync(f, rows.map(r=>JSON.stringify(r)).join("\n")+"\n");' "$ROWS"

finish scaling "$ROWS"
table "$RESULTS/scaling.json" '[["store","store"],["claim","claim_strategy"],["replicas","replicas"],
  ["events/s","events_per_s"],["x N x 1-replica","efficiency"],["of ideal","of_ideal"],
  ["completed","completed"],["deliveries","deliveries"],["duplicate dispatches","duplicate_dispatches"],
  ["lease-lost","lease_lost"],["claim p99 ms","claim.p99_ms"],["load avg","load1"]]'
