#!/usr/bin/env bash
# The dedup window (BENCHMARKS.md §6 "Dedup window storage"): bytes per
# event of the dedup buckets on SQLite (dbstat, every dedup_<id> page) and
# PostgreSQL (pg_total_relation_size of every dedup_<id> after VACUUM),
# filled by `sluice bench ingest` (29-character insert_ids, project
# `default`) through an ingest-only `sluice serve`; then, on SQLite, the
# ingest rate with dedup_buckets = 1, 4, 16 and a window short enough that
# buckets + 1 of them are live (every event probes each older one); then
# (PARTS=pairs, OLD_SLUICE=the binary of the build before) flat-out ingest
# of the old and the new binary back to back, sync on, on both stores.
#
#   bench/dedup.sh [BUILD_DIR]     SQLITE_EVENTS=400000 PG_EVENTS=160000
#                                  PROBE_EVENTS=300000 PROBE_WINDOW=8s
#                                  PAIR_EVENTS=200000 PAIRS=2 OLD_SLUICE=
#                                  PARTS="storage probes" (env)
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

SQLITE_EVENTS=${SQLITE_EVENTS:-400000}
PG_EVENTS=${PG_EVENTS:-160000}
PROBE_EVENTS=${PROBE_EVENTS:-300000}
PROBE_WINDOW=${PROBE_WINDOW:-8s}
PARTS=${PARTS:-storage probes}
PAIR_EVENTS=${PAIR_EVENTS:-200000}
PAIRS=${PAIRS:-2}
OLD_SLUICE=${OLD_SLUICE:-}
SYNC=false

write_config() {  # FILE PORT STORE_URL WINDOW BUCKETS
  cat >"$1" <<TOML
[server]
listen = "127.0.0.1:$2"
threads = 2
[store]
url = "$3"
sync = $SYNC
dedup_window = "$4"
dedup_buckets = $5
[ingest]
high_water = 1000000000
slow_down = 1000000000
[watcher]
loops = 0
dedup_prune_interval = "100ms"
TOML
}

fill() {  # STORE_URL EVENTS WINDOW BUCKETS -> bench ingest JSON on stdout
  local port
  port=$(free_port)
  write_config "$WORK/dedup.toml" "$port" "$1" "$3" "$4"
  start_serve "$WORK/dedup.toml" "$WORK/dedup-serve.log"
  "$SLUICE" bench ingest --url "$SERVE_URL/v1/events" --events "$2" --batch 500 \
    --connections 16 --json
  stop_pid "$SERVE_PID"
}

if [[ " $PARTS " == *" storage "* ]]; then
  db=$WORK/storage.db
  fill "sqlite:$db" "$SQLITE_EVENTS" 24h 4 >"$WORK/fill.json"
  sqlite3 "$db" "SELECT 'sqlite', (SELECT count(*) FROM dedup_1),
      (SELECT sum(pgsize) FROM dbstat WHERE name GLOB 'dedup_[0-9]*'),
      (SELECT count(*) FROM dbstat WHERE name GLOB 'dedup_[0-9]*'),
      (SELECT avg(unused) FROM dbstat WHERE name GLOB 'dedup_[0-9]*' AND pagetype = 'leaf')" |
    awk -F'|' '{printf "%s entries=%d bytes=%d pages=%d avg_unused_per_leaf=%.0f bytes_per_event=%.2f\n",
      $1, $2, $3, $4, $5, $3 / $2}'
  start_pg
  url=$(pg_new_db sluice_dedup)
  fill "$url" "$PG_EVENTS" 24h 4 >"$WORK/fill.json"
  psql -X -q "$url" -c "VACUUM" >/dev/null
  psql -X -At "$url" -c "SELECT 'postgres', (SELECT count(*) FROM dedup_1),
      sum(pg_total_relation_size(c.oid)), sum(pg_relation_size(c.oid)),
      sum(pg_indexes_size(c.oid))
    FROM pg_class c WHERE c.relkind = 'r' AND c.relname ~ '^dedup_[0-9]+$'" |
    awk -F'|' '{printf "%s entries=%d total=%d heap=%d index=%d bytes_per_event=%.2f\n",
      $1, $2, $3, $4, $5, $3 / $2}'
fi

if [[ " $PARTS " == *" probes "* ]]; then
  for buckets in 1 4 16; do
    db=$WORK/probes-$buckets.db
    rm -f "$db"*
    fill "sqlite:$db" "$PROBE_EVENTS" "$PROBE_WINDOW" "$buckets" >"$WORK/probe.json"
    live=$(sqlite3 "$db" "SELECT count(*) FROM dedup_buckets")
    echo "probes buckets=$buckets live_at_end=$live events_per_s=$(jget "$WORK/probe.json" j.events_per_s)" \
      "p99_ms=$(jget "$WORK/probe.json" j.latency.p99_ms) load1=$(load1)"
  done
fi

if [[ " $PARTS " == *" pairs "* ]]; then
  [[ -x "$OLD_SLUICE" ]] || { echo "bench: PARTS=pairs needs OLD_SLUICE" >&2; exit 1; }
  NEW_SLUICE=$SLUICE
  SYNC=true
  [[ -n "${PG_URL:-}" ]] || start_pg
  for store in sqlite postgres; do
    for pair in $(seq "$PAIRS"); do
      for build in old new; do
        if [[ $build == old ]]; then SLUICE=$OLD_SLUICE; else SLUICE=$NEW_SLUICE; fi
        case $store in
          sqlite) rm -rf "$WORK/pair"; mkdir -p "$WORK/pair"; url="sqlite:$WORK/pair/sluice.db" ;;
          postgres) url=$(pg_new_db sluice_pair) ;;
        esac
        port=$(free_port)
        write_config "$WORK/pair.toml" "$port" "$url" 24h 4
        # The old build does not know dedup_buckets.
        [[ $build == old ]] && sed -i '/^dedup_buckets/d' "$WORK/pair.toml"
        start_serve "$WORK/pair.toml" "$WORK/pair-serve.log"
        load=$(load1)
        cpu0=$(cpu_s "$SERVE_PID")
        "$SLUICE" bench ingest --url "$SERVE_URL/v1/events" --events "$PAIR_EVENTS" --batch 100 \
          --connections 64 --event-bytes 300 --json >"$WORK/pair.json"
        cpu=$(node -e 'console.log((process.argv[2]-process.argv[1]).toFixed(2))' "$cpu0" "$(cpu_s "$SERVE_PID")")
        stop_pid "$SERVE_PID"
        echo "pair store=$store pair=$pair build=$build events_per_s=$(jget "$WORK/pair.json" j.events_per_s)" \
          "p99_ms=$(jget "$WORK/pair.json" j.latency.p99_ms) server_cpu_s=$cpu load1=$load"
      done
    done
  done
  SLUICE=$NEW_SLUICE
fi
