#!/usr/bin/env bash
# 1. ingest: durable events/s into SQLite and PostgreSQL (sync on: fsync /
# synchronous_commit), 100-event batches of ~300 B over 64 keep-alive
# connections from `sluice bench ingest` on the same machine; ack latency
# p50/p90/p99/max; the server's peak RSS (VmHWM). Then the same load at half
# of the measured peak rate (open loop) for the p99 target. Ceilings measured
# in the same run on the same rows: the sqlite3 CLI inserting them into the
# same schema in one transaction, and PostgreSQL COPY of them.
#
#   bench/ingest.sh [BUILD_DIR]        SIZE=smoke|default|full (env)
#
# The server is an ingest-only replica ([watcher] loops = 0), so no claim
# loop competes with ingest: this measures the write path alone (the process
# bench measures the read side, bench/sustained.sh both at once).
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

EVENTS=$(pick 3000 300000 1000000)
CONNS=$(pick 4 64 64)
BATCH=100
EVENT_BYTES=300
HALF_SECONDS=$(pick 1 10 20)
STORES=${STORES:-sqlite postgres}
ROWS=$WORK/rows.jsonl
: >"$ROWS"

write_config() {  # FILE PORT STORE_URL
  cat >"$1" <<TOML
[server]
listen = "127.0.0.1:$2"
threads = 2
[store]
url = "$3"
sync = true
[ingest]
high_water = 1000000000
slow_down = 1000000000
[watcher]
loops = 0
TOML
}

sqlite_ceiling() {  # DB: re-insert its queue+dedup rows into a fresh copy of the schema
  local src=$1 dst=$WORK/ceiling.db
  rm -f "$dst"*
  sqlite3 "$src" .schema | grep -v '^CREATE TABLE sqlite_' >"$WORK/schema.sql"
  sqlite3 "$dst" <"$WORK/schema.sql"
  {
    echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; BEGIN;"
    sqlite3 -cmd ".mode insert queue" "$src" "SELECT * FROM queue"
    for t in $(sqlite3 "$src" "SELECT 'dedup_' || id FROM dedup_buckets"); do
      sqlite3 -cmd ".mode insert $t" "$src" "SELECT * FROM $t"
    done
    echo "COMMIT;"
  } >"$WORK/rows.sql"
  local n times
  n=$(sqlite3 "$src" "SELECT count(*) FROM queue")
  # The store's own connection settings (queue/sqlite), so only the client differs.
  sed -i '1s/^/PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY; /' "$WORK/rows.sql"
  times=$( { TIMEFORMAT='%R %U %S'; time sqlite3 "$dst" <"$WORK/rows.sql" >/dev/null; } 2>&1 )
  node -e 'const n=Number(process.argv[1]); const [r,u,s]=process.argv[2].split(" ").map(Number);
    console.log(JSON.stringify({ceiling_rows:n,ceiling_seconds:r,ceiling_events_per_s:n/r,
    ceiling_cpu_s:u+s,ceiling_events_per_cpu_s:n/(u+s),
    ceiling_method:"sqlite3 CLI: INSERT statements of the same queue+dedup rows, one transaction, WAL, synchronous=FULL"}))' \
    "$n" "$times"
}

pg_ceiling() {  # DB_URL: COPY its queue+dedup rows into a fresh database with the same schema
  local src=$1 dst
  dst=$(pg_new_db sluice_ceiling)
  local buckets
  buckets=$(psql -X -At "$src" -c "SELECT 'dedup_' || id FROM dedup_buckets")
  "$PG_BIN/pg_dump" -s -t queue -t 'dedup_[0-9]*' "$src" | grep -v '^SET transaction_timeout' |
    psql -X -q -v ON_ERROR_STOP=1 "$dst" >/dev/null
  psql -X -q "$src" -c "\\copy queue TO '$WORK/queue.copy'"
  for t in $buckets; do psql -X -q "$src" -c "\\copy $t TO '$WORK/$t.copy'"; done
  local n t0 t1
  n=$(psql -X -At "$src" -c "SELECT count(*) FROM queue")
  t0=$(date +%s.%N)
  psql -X -q -v ON_ERROR_STOP=1 "$dst" >/dev/null <<SQL
BEGIN;
\\copy queue FROM '$WORK/queue.copy'
$(for t in $buckets; do echo "\\copy $t FROM '$WORK/$t.copy'"; done)
COMMIT;
SQL
  t1=$(date +%s.%N)
  node -e 'const [n,a,b]=process.argv.slice(1).map(Number);
    console.log(JSON.stringify({ceiling_rows:n,ceiling_seconds:b-a,ceiling_events_per_s:n/(b-a),
    ceiling_method:"psql \\copy (COPY FROM STDIN) of the same queue+dedup rows, one transaction, synchronous_commit=on"}))' \
    "$n" "$t0" "$t1"
}

for store in $STORES; do
  port=$(free_port)
  case $store in
    sqlite)
      mkdir -p "$WORK/sqlite"
      url="sqlite:$WORK/sqlite/sluice.db"
      ;;
    postgres)
      [[ -n "${PG_URL:-}" ]] || start_pg
      url=$(pg_new_db sluice_ingest)
      ;;
  esac
  write_config "$WORK/$store.toml" "$port" "$url"
  start_serve "$WORK/$store.toml" "$WORK/$store-serve.log"
  log "ingest $store: $EVENTS events, $CONNS connections, batch $BATCH"
  cpu0=$(cpu_s "$SERVE_PID")
  load=$(load1)
  "$SLUICE" bench ingest --url "$SERVE_URL/v1/events" --events "$EVENTS" --batch "$BATCH" \
    --connections "$CONNS" --event-bytes "$EVENT_BYTES" --json >"$WORK/peak.json"
  server_cpu=$(node -e 'console.log((process.argv[2]-process.argv[1]).toFixed(2))' "$cpu0" "$(cpu_s "$SERVE_PID")")
  peak=$(jget "$WORK/peak.json" j.events_per_s)
  half=$(node -e 'console.log(Math.max(100, Math.round(process.argv[1]/2)))' "$peak")
  half_events=$(node -e 'console.log(Math.max(200, Math.round(process.argv[1]*process.argv[2])))' \
    "$half" "$HALF_SECONDS")
  log "ingest $store: peak $peak events/s; now $half_events events at $half events/s"
  "$SLUICE" bench ingest --url "$SERVE_URL/v1/events" --events "$half_events" --batch "$BATCH" \
    --connections "$CONNS" --event-bytes "$EVENT_BYTES" --rate "$half" --json >"$WORK/half.json"
  rss=$(peak_rss_mb "$SERVE_PID")
  stop_pid "$SERVE_PID"
  case $store in
    sqlite) ceiling=$(sqlite_ceiling "$WORK/sqlite/sluice.db") ;;
    postgres) ceiling=$(pg_ceiling "$url") ;;
  esac
  row=$(node -e '
    const fs=require("fs"); const p=JSON.parse(fs.readFileSync(process.argv[1]));
    const h=JSON.parse(fs.readFileSync(process.argv[2])); const c=JSON.parse(process.argv[3]);
    console.log(JSON.stringify({store:process.argv[4], events:p.events_ok, connections:p.options.connections,
      batch:p.options.batch, body_bytes:p.body_bytes, events_per_s:p.events_per_s,
      requests_per_s:p.requests_per_s, failed:p.requests_failed, p50_ms:p.latency.p50_ms,
      p90_ms:p.latency.p90_ms, p99_ms:p.latency.p99_ms, max_ms:p.latency.max_ms,
      half_rate:h.options.rate, half_events_per_s:h.events_per_s, half_p50_ms:h.latency.p50_ms,
      half_p99_ms:h.latency.p99_ms, half_max_ms:h.latency.max_ms, half_failed:h.requests_failed,
      peak_rss_mb:Number(process.argv[5]), server_cpu_s:Number(process.argv[6]),
      client_cpu_s:p.client_cpu_s, load1_before:Number(process.argv[7]),
      events_per_server_cpu_s:p.events_ok/Number(process.argv[6]), ...c, ratio_to_ceiling:p.events_per_s/c.ceiling_events_per_s,
      peak_run:p, half_run:h}));' "$WORK/peak.json" "$WORK/half.json" "$ceiling" "$store" "$rss" \
      "$server_cpu" "$load")
  echo "$row" >>"$ROWS"
done

finish ingest "$ROWS"
table "$RESULTS/ingest.json" '[["store","store"],["events/s","events_per_s"],["requests/s","requests_per_s"],
  ["p50 ms","p50_ms"],["p99 ms","p99_ms"],["max ms","max_ms"],["half-load rate","half_rate"],
  ["p99 ms at half","half_p99_ms"],["peak RSS MB","peak_rss_mb"],["ceiling events/s","ceiling_events_per_s"],
  ["ratio to ceiling","ratio_to_ceiling"],["server CPU s","server_cpu_s"],
  ["events per server CPU-s","events_per_server_cpu_s"],["load avg","load1_before"],["failed req","failed"]]'
