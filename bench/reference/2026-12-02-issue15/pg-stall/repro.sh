#!/usr/bin/env bash
# pgstall repro: BIN TAG. Fresh database; 9,000 events/s for 10 s, then 3,000
# events/s for 40 s; 3 s into that a VACUUM of the queue (what autovacuum does
# under load: a small backlog spread over many pages, so reltuples/relpages says
# "nearly empty"), at 6 s a burst of 30,000 events flat out.
# Samples "t backlog claims claimed_events claim_errors" each second.
set -u
BIN=$1 TAG=$2
U=${PG:?PG=postgresql://postgres@127.0.0.1:PORT, a throwaway cluster}
OUT=${OUT:-/tmp/pgstall-repro}; mkdir -p $OUT
psql -X -q $U/postgres -c "DROP DATABASE IF EXISTS $TAG" -c "CREATE DATABASE $TAG" 2>/dev/null
PORT=$((21000 + RANDOM % 9000))
cat > $OUT/$TAG.toml <<TOML
[server]
listen = "127.0.0.1:$PORT"
threads = 2
[store]
url = "$U/$TAG"
sync = true
[ingest]
high_water = 1000000000
slow_down = 1000000000
TOML
$BIN serve --config $OUT/$TAG.toml > $OUT/$TAG-serve.log 2>&1 &
SP=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.1; done
sample() { curl -sf --max-time 5 http://127.0.0.1:$PORT/metrics | awk '
    /^sluice_queue_events\{state="(pending|leased)"\}/ {s += $2}
    /^sluice_claims_total/ {c = $2} /^sluice_claimed_events_total/ {v = $2}
    /^sluice_claim_errors_total/ {e = $2}
    END {print s + 0, c + 0, v + 0, e + 0}'; }
# A fresh database as in the bench steps: queue_head never analyzed; keep
# autovacuum off the two tables so that the statistics stay what VACUUM left.
psql -X -q $U/$TAG -c "ALTER TABLE queue SET (autovacuum_enabled = false)" -c "ALTER TABLE queue_head SET (autovacuum_enabled = false)"
T0=$(date +%s.%N)
( while :; do echo "$(awk -v a=$(date +%s.%N) -v b=$T0 'BEGIN{printf "%.0f", a-b}') $(sample)"; sleep 1; done ) > $OUT/$TAG.samples &
PP=$!
ev() { echo "$(awk -v a=$(date +%s.%N) -v b=$T0 'BEGIN{printf "%.1f", a-b}') $*" >> $OUT/$TAG.events; }
ev "ingest 9000/s for 10 s"
$BIN bench ingest --url http://127.0.0.1:$PORT/v1/events --events 90000 --batch 100 --connections 16 --rate 9000 --json > $OUT/$TAG-9000.json
ev "ingest 3000/s for 40 s"
$BIN bench ingest --url http://127.0.0.1:$PORT/v1/events --events 120000 --batch 100 --connections 16 --rate 3000 --json > $OUT/$TAG-3000.json &
IP=$!
sleep 3
ev "VACUUM queue: $(psql -X -q -At $U/$TAG -c "VACUUM queue" -c "SELECT relpages || ' pages, reltuples ' || reltuples FROM pg_class WHERE relname = 'queue'")"
sleep 3
ev "burst of 30000 events"
$BIN bench ingest --url http://127.0.0.1:$PORT/v1/events --events 30000 --batch 100 --connections 16 --json > $OUT/$TAG-burst.json
ev "burst done"
wait $IP
ev "ingest done"
for _ in $(seq 300); do [[ "$(sample | cut -d' ' -f1)" == 0 ]] && break; sleep 0.2; done
ev "end (backlog $(sample | cut -d' ' -f1))"
kill $PP; kill $SP; wait $SP
