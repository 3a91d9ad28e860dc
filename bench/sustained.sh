#!/usr/bin/env bash
# 6. sustained: ingest and processing at once. Open-loop load (`sluice bench
# ingest --rate`) at increasing rates against a real `sluice serve` whose
# watcher runs the default consumers (users + counters), then the same with an
# `archive` consumer added (to s3rver on loopback), on SQLite and PostgreSQL.
# Reports per store and consumer set the highest rate at which, over a run of
# SUSTAIN_S seconds, the backlog stays bounded and ack p99 <= 50 ms; ack
# p50/p99 at half that rate; server CPU per event (/proc/PID/stat, over load
# and drain); peak RSS (VmHWM). Then the ceiling: the rows one event costs the
# store, written by set-based SQL in large transactions (no HTTP, no JSON, no
# client round trip per row), and sustained / ceiling.
#
#   bench/sustained.sh [BUILD_DIR]        SIZE=smoke|default|full (env)
#   STORES="sqlite postgres"  MODES="default archive"  (env, subsets)
#
# "Backlog bounded": the queue (pending + leased, sampled once a second from
# /metrics) holds at most max(BOUND_S x rate, 2,000) events when the load
# ends, i.e. processing trails ingest by at most BOUND_S seconds of input.
# A step passes when the backlog is bounded, ack p99 <= 50 ms, no request
# failed and the client sent at >= 95 % of the rate. Rates go up by FACTOR
# from the store's START until a step fails, then BISECT halvings between the
# last pass and the first failure.
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

SUSTAIN_S=${SUSTAIN_S:-$(pick 2 30 30)}
HALF_S=${HALF_S:-$(pick 2 30 60)}
FACTOR=${FACTOR:-1.5}
MAX_STEPS=${MAX_STEPS:-$(pick 1 8 10)}
BISECT=${BISECT:-$(pick 0 1 2)}
BOUND_S=${BOUND_S:-2}
P99_LIMIT_MS=50
DRAIN_MAX_S=${DRAIN_MAX_S:-$(pick 30 90 120)}
CEIL_EVENTS=${CEIL_EVENTS:-$(pick 2000 200000 1000000)}
CEIL_TXN=${CEIL_TXN:-$(pick 1000 50000 50000)}
CLAIM_BATCH=500  # the watcher's default claim size: aggregates are written per batch
BATCH=100
CONNS=64
EVENT_BYTES=300
STORES=${STORES:-sqlite postgres}
MODES=${MODES:-default archive}
ROWS=$WORK/rows.jsonl
STEPS=$WORK/steps.jsonl
: >"$ROWS"
: >"$STEPS"

start_rate() {  # STORE: the first rate of the ramp
  case $1 in
    sqlite) pick 500 "${SQLITE_START:-12000}" "${SQLITE_START:-12000}" ;;
    postgres) pick 500 "${PG_START:-6000}" "${PG_START:-6000}" ;;
  esac
}

S3_ENDPOINT=
start_s3() {
  local port out
  port=$(free_port)
  out=$(S3_PORT=$port S3_DIR="$WORK/s3" S3_BUCKETS=bench bash "$REPO_DIR/scripts/s3rver-start.sh")
  eval "$out"
  BENCH_PIDS+=("$S3_PID")
  log "s3rver at $S3_ENDPOINT"
}

new_store_url() {  # STORE TAG
  case $1 in
    sqlite)
      mkdir -p "$WORK/$2"
      rm -f "$WORK/$2/sluice.db"*
      echo "sqlite:$WORK/$2/sluice.db"
      ;;
    postgres) pg_new_db "sluice_$2" ;;
  esac
}

write_config() {  # FILE PORT STORE_URL MODE
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
TOML
  if [[ $4 == archive ]]; then
    cat >>"$1" <<TOML
[[consumer]]
type = "users"
[[consumer]]
type = "counters"
[[consumer]]
type = "archive"
bit = 2
endpoint = "$S3_ENDPOINT"
bucket = "bench"
region = "us-east-1"
access_key = "test-access-key"
secret_key = "test-secret-key"
TOML
  fi
}

# pending + leased from the server's /metrics; empty when the scrape failed.
backlog() {
  curl -sf --max-time 5 "$1/metrics" |
    awk '/^sluice_queue_events\{state="(pending|leased)"\}/ {s += $2; n++} END {if (n) print s}'
}

# run_step STORE MODE RATE SECONDS KIND: one fresh store and server, RATE
# events/s for SECONDS, then drained; appends a JSON line to $STEPS and prints
# "pass" or "fail".
run_step() {
  local store=$1 mode=$2 rate=$3 secs=$4 kind=$5
  local tag="$store-$mode-$kind-$rate" port url events cpu0 cpu1 load t0 t1 rss drained
  port=$(free_port)
  url=$(new_store_url "$store" "${tag//[^a-z0-9]/_}")
  write_config "$WORK/$tag.toml" "$port" "$url" "$mode"
  start_serve "$WORK/$tag.toml" "$WORK/$tag-serve.log"
  events=$(node -e 'console.log(Math.max(200, Math.round(process.argv[1]*process.argv[2])))' "$rate" "$secs")
  (
    while :; do
      echo "$(date +%s.%N) $(backlog "$SERVE_URL")"
      sleep 1
    done
  ) >"$WORK/$tag.samples" 2>/dev/null &
  local poller=$!
  BENCH_PIDS+=("$poller")
  load=$(load1)
  cpu0=$(cpu_s "$SERVE_PID")
  t0=$(date +%s.%N)
  log "sustained $store/$mode: $rate events/s for $secs s ($kind)"
  "$SLUICE" bench ingest --url "$SERVE_URL/v1/events" --events "$events" --batch "$BATCH" \
    --connections "$CONNS" --event-bytes "$EVENT_BYTES" --rate "$rate" --window 5 \
    --json >"$WORK/$tag.json" || true
  t1=$(date +%s.%N)
  local end_backlog
  end_backlog=$(backlog "$SERVE_URL")
  # Drain (the CPU per event covers processing every event sent).
  drained=false
  for _ in $(seq $((DRAIN_MAX_S * 5))); do
    [[ "$(backlog "$SERVE_URL")" == 0 ]] && { drained=true; break; }
    sleep 0.2
  done
  local t2
  t2=$(date +%s.%N)
  cpu1=$(cpu_s "$SERVE_PID")
  rss=$(peak_rss_mb "$SERVE_PID")
  kill "$poller" 2>/dev/null || true
  wait "$poller" 2>/dev/null || true
  stop_pid "$SERVE_PID"
  node -e '
    const fs=require("fs"); const a=process.argv;
    const r=JSON.parse(fs.readFileSync(a[1],"utf8"));
    const [store,mode,kind]=[a[2],a[3],a[4]];
    const rate=Number(a[5]), t0=Number(a[6]), t1=Number(a[7]), t2=Number(a[8]);
    const samples=fs.readFileSync(a[9],"utf8").split("\n").filter(l=>/^\S+ \d+$/.test(l))
      .map(l=>l.split(" ").map(Number)).filter(([t])=>t>=t0&&t<=t1);
    const endBacklog=a[10]===""?null:Number(a[10]);
    const bound=Math.max(Number(a[11])*rate, 2000);
    const maxBacklog=Math.max(0,...samples.map(s=>s[1]));
    const bounded=endBacklog!==null&&endBacklog<=bound;
    const p99=r.latency.p99_ms, failed=r.requests_failed;
    const sent=r.events_ok/r.seconds;
    const pass=bounded&&p99<=Number(a[12])&&failed===0&&sent>=0.95*rate;
    const cpu=Number(a[14])-Number(a[13]);
    const worst=Math.max(0,...(r.windows||[]).map(w=>w.latency.p99_ms));
    console.log(JSON.stringify({store,mode,kind,rate,seconds:r.seconds,events_ok:r.events_ok,
      sent_per_s:sent,failed,p50_ms:r.latency.p50_ms,p99_ms:p99,max_ms:r.latency.max_ms,
      worst_window_p99_ms:worst,end_backlog:endBacklog,max_backlog:maxBacklog,backlog_bound:bound,
      bounded,pass,drained:a[15]==="true",drain_s:t2-t1,server_cpu_s:cpu,
      server_cpu_us_per_event:cpu/r.events_ok*1e6,peak_rss_mb:Number(a[16]),
      load1_before:Number(a[17]),backlog_samples:samples.map(([t,b])=>[Math.round((t-t0)*10)/10,b]),
      ingest:r}));' \
    "$WORK/$tag.json" "$store" "$mode" "$kind" "$rate" "$t0" "$t1" "$t2" "$WORK/$tag.samples" \
    "$end_backlog" "$BOUND_S" "$P99_LIMIT_MS" "$cpu0" "$cpu1" "$drained" "$rss" "$load" \
    >>"$STEPS"
  if tail -1 "$STEPS" | grep -q '"pass":true'; then echo pass; else echo fail; fi
}

# ---- the ceiling: set-based SQL writing what one event costs the store ----

# ceiling_sql STORE A B PREV: the statements of one transaction writing events A..B:
# queue rows, dedup rows, per 500-event batch the aggregate rows (users,
# user_events, counters x 3 granularities, counter_users x 3), and the delete
# of the previous transaction's queue rows (a later transaction, as in sluice).
ceiling_sql() {
  local store=$1 a=$2 b=$3 prev=$4 body
  body=$(printf 'x%.0s' $(seq 290))
  local src now least greatest ignore
  case $store in
    sqlite)
      now="CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
      least=min greatest=max ignore="INSERT OR IGNORE INTO"
      echo "BEGIN IMMEDIATE;"
      ;;
    postgres)
      now="now()"
      least=LEAST greatest=GREATEST ignore="INSERT INTO"
      echo "BEGIN;"
      ;;
  esac
  gen() {  # FROM-list for events $1..$2 with columns value (event number)
    case $store in
      sqlite) echo "generate_series($1, $2) AS s" ;;
      postgres) echo "generate_series($1::bigint, $2::bigint) AS s(value)" ;;
    esac
  }
  if [[ $store == sqlite ]]; then
    echo "INSERT INTO queue(project, insert_id, body, visible_at, enqueued_at)
      SELECT 'default', 'ceil-' || value, '$body', $now, $now FROM $(gen "$a" "$b");"
  else
    echo "INSERT INTO queue(project, insert_id, body) SELECT 'default', 'ceil-' || value, '$body' FROM $(gen "$a" "$b");"
  fi
  echo "INSERT INTO dedup(project, insert_id, seen_at) SELECT 'default', 'ceil-' || value, $now FROM $(gen "$a" "$b");"
  # Event i: user (i * 7919) % 10000, event name i % 8, time spread over one day.
  local e="SELECT value, 'u' || ((value * 7919) % 10000) AS uid, (value * 7919) % 10000 AS un,
      'ev' || (value % 8) AS ev, value % 8 AS en,
      1764547200000 - ((value * 2654435761) % 86400000) AS t"
  local g0
  for ((g0 = a; g0 <= b; g0 += CLAIM_BATCH)); do
    local g1=$((g0 + CLAIM_BATCH - 1))
    ((g1 <= b)) || g1=$b
    echo "INSERT INTO users(project, user_id, first_seen, last_seen, events)
      SELECT 'default', uid, min(t), max(t), count(*) FROM ($e FROM $(gen $g0 $g1)) e WHERE true GROUP BY uid
      ON CONFLICT(project, user_id) DO UPDATE SET first_seen = $least(users.first_seen, excluded.first_seen),
      last_seen = $greatest(users.last_seen, excluded.last_seen), events = users.events + excluded.events;"
    echo "INSERT INTO user_events(project, user_id, event, count)
      SELECT 'default', uid, ev, count(*) FROM ($e FROM $(gen $g0 $g1)) e WHERE true GROUP BY uid, ev
      ON CONFLICT(project, user_id, event) DO UPDATE SET count = user_events.count + excluded.count;"
    echo "INSERT INTO counters(project, event, granularity, bucket, count, users)
      SELECT 'default', ev, gr, b, count(*), count(DISTINCT uid) FROM (
        SELECT ev, uid, 'minute' AS gr, t - t % 60000 AS b FROM ($e FROM $(gen $g0 $g1)) e1
        UNION ALL SELECT ev, uid, 'hour', t - t % 3600000 FROM ($e FROM $(gen $g0 $g1)) e2
        UNION ALL SELECT ev, uid, 'day', t - t % 86400000 FROM ($e FROM $(gen $g0 $g1)) e3) x
      WHERE true GROUP BY ev, gr, b
      ON CONFLICT(project, event, granularity, bucket) DO UPDATE SET
      count = counters.count + excluded.count, users = counters.users + excluded.users;"
    # Integer keys as sluice's hashes are: series = event x granularity, user
    # hash spread over 2^52 so inserts land at random places in the B-tree.
    echo "$ignore counter_users(bucket, series, user_hash)
      SELECT DISTINCT b, se, (un * 2654435761) % 4294967291 * 1048573 FROM (
        SELECT un, en * 3 AS se, t - t % 60000 AS b FROM ($e FROM $(gen $g0 $g1)) e1
        UNION ALL SELECT un, en * 3 + 1, t - t % 3600000 FROM ($e FROM $(gen $g0 $g1)) e2
        UNION ALL SELECT un, en * 3 + 2, t - t % 86400000 FROM ($e FROM $(gen $g0 $g1)) e3) x
      WHERE true $([[ $store == postgres ]] && echo 'ON CONFLICT DO NOTHING');"
  done
  # A fresh store numbers the rows from 1, so event i is seq i.
  if ((prev < a)); then echo "DELETE FROM queue WHERE seq >= $prev AND seq < $a;"; fi
  echo "COMMIT;"
}

# ceiling STORE: a fresh store (schema made by `sluice serve`), CEIL_EVENTS
# events in CEIL_TXN-event transactions, sync on; prints a JSON object.
ceiling() {
  local store=$1 url port a sqlf=$WORK/ceiling-$1.sql
  port=$(free_port)
  url=$(new_store_url "$store" "ceiling_$store")
  write_config "$WORK/ceiling-$store.toml" "$port" "$url" default
  # The watcher off: the server only creates the schema.
  sed -i 's/^\[ingest\]/[watcher]\nloops = 0\n[ingest]/' "$WORK/ceiling-$store.toml"
  start_serve "$WORK/ceiling-$store.toml" "$WORK/ceiling-$store-serve.log"
  stop_pid "$SERVE_PID"
  : >"$sqlf"
  local prev=1
  [[ $store == sqlite ]] && echo "PRAGMA synchronous=FULL; PRAGMA cache_size=-16384;" >>"$sqlf"
  for ((a = 1; a <= CEIL_EVENTS; a += CEIL_TXN)); do
    local b=$((a + CEIL_TXN - 1))
    ((b <= CEIL_EVENTS)) || b=$CEIL_EVENTS
    ceiling_sql "$store" "$a" "$b" "$prev" >>"$sqlf"
    prev=$a
  done
  echo "DELETE FROM queue;" >>"$sqlf"
  local t0 t1 rows
  log "ceiling $store: $CEIL_EVENTS events in $CEIL_TXN-event transactions"
  t0=$(date +%s.%N)
  case $store in
    sqlite) sqlite3 -bail "${url#sqlite:}" <"$sqlf" >/dev/null ;;
    postgres) psql -X -q -v ON_ERROR_STOP=1 "$url" <"$sqlf" >/dev/null ;;
  esac
  t1=$(date +%s.%N)
  local q="SELECT (SELECT count(*) FROM users) || ' ' || (SELECT count(*) FROM user_events) || ' ' ||
    (SELECT count(*) FROM counters) || ' ' || (SELECT count(*) FROM counter_users) || ' ' ||
    (SELECT count(*) FROM dedup) || ' ' || (SELECT count(*) FROM queue)"
  case $store in
    sqlite) rows=$(sqlite3 "${url#sqlite:}" "$q") ;;
    postgres) rows=$(psql -X -At "$url" -c "$q") ;;
  esac
  node -e '
    const [n,t0,t1]=process.argv.slice(1,4).map(Number); const [u,ue,c,cu,d,q]=process.argv[4].split(" ").map(Number);
    console.log(JSON.stringify({ceiling_events:n, ceiling_seconds:t1-t0, ceiling_events_per_s:n/(t1-t0),
      ceiling_txn_events:Number(process.argv[5]),
      ceiling_rows_left:{users:u,user_events:ue,counters:c,counter_users:cu,dedup:d,queue:q},
      ceiling_method:"set-based SQL (generate_series) in one client call: per event a queue row, a dedup row and the delete; per 500-event batch the users, user_events, counters and counter_users upserts; sync on"}));' \
    "$CEIL_EVENTS" "$t0" "$t1" "$rows" "$CEIL_TXN"
}

# ---- the runs ----

for store in $STORES; do
  if [[ $store == postgres && -z "${PG_URL:-}" ]]; then start_pg; fi
  ceil=$(ceiling "$store")
  for mode in $MODES; do
    if [[ $mode == archive && -z "$S3_ENDPOINT" ]]; then start_s3; fi
    rate=$(start_rate "$store")
    best=0 fail=0
    for ((step = 0; step < MAX_STEPS; step++)); do
      if [[ $(run_step "$store" "$mode" "$rate" "$SUSTAIN_S" ramp) == pass ]]; then
        best=$rate
        rate=$(node -e 'console.log(Math.round(process.argv[1]*process.argv[2]/100)*100)' "$rate" "$FACTOR")
      else
        fail=$rate
        break
      fi
    done
    for ((k = 0; k < BISECT && fail > 0 && best > 0; k++)); do
      mid=$(node -e 'console.log(Math.round((Number(process.argv[1])+Number(process.argv[2]))/200)*100)' "$best" "$fail")
      ((mid > best && mid < fail)) || break
      if [[ $(run_step "$store" "$mode" "$mid" "$SUSTAIN_S" bisect) == pass ]]; then best=$mid; else fail=$mid; fi
    done
    half=0
    if ((best > 0)); then
      half=$(node -e 'console.log(Math.max(100, Math.round(process.argv[1]/2)))' "$best")
      run_step "$store" "$mode" "$half" "$HALF_S" half >/dev/null
    fi
    node -e '
      const fs=require("fs"); const a=process.argv;
      const steps=fs.readFileSync(a[1],"utf8").split("\n").filter(Boolean).map(JSON.parse)
        .filter(s=>s.store===a[2]&&s.mode===a[3]);
      const best=Number(a[4]), fail=Number(a[5]), half=Number(a[6]); const c=JSON.parse(a[7]);
      const at=steps.find(s=>s.rate===best&&s.kind!=="half")||{};
      const h=steps.find(s=>s.kind==="half")||{};
      console.log(JSON.stringify({store:a[2], mode:a[3]==="default"?"users+counters":"users+counters+archive",
        sustained_rate:best||null, first_failing_rate:fail||null,
        at_best:{p50_ms:at.p50_ms,p99_ms:at.p99_ms,end_backlog:at.end_backlog,
          cpu_us_per_event:at.server_cpu_us_per_event,peak_rss_mb:at.peak_rss_mb,load1:at.load1_before},
        half_rate:half||null, half_p50_ms:h.p50_ms, half_p99_ms:h.p99_ms, half_max_ms:h.max_ms,
        half_cpu_us_per_event:h.server_cpu_us_per_event,
        peak_rss_mb:Math.max(0,...steps.filter(s=>s.pass).map(s=>s.peak_rss_mb)),
        load1:Math.max(...steps.map(s=>s.load1_before)), ...c,
        sustained_over_ceiling:best?best/c.ceiling_events_per_s:null,
        steps:steps.map(s=>({kind:s.kind,rate:s.rate,pass:s.pass,p99_ms:s.p99_ms,end_backlog:s.end_backlog,load1:s.load1_before}))}));' \
      "$STEPS" "$store" "$mode" "$best" "$fail" "$half" "$ceil" >>"$ROWS"
  done
done

finish sustained "$ROWS"
cp "$STEPS" "$RESULTS/sustained-steps.jsonl"
echo "steps (every run; pass = backlog <= max(${BOUND_S} s x rate, 2000) at the end, p99 <= ${P99_LIMIT_MS} ms, no failures):"
node -e '
  const fs=require("fs"); const steps=fs.readFileSync(process.argv[1],"utf8").split("\n").filter(Boolean).map(JSON.parse);
  fs.writeFileSync(process.argv[2], JSON.stringify({rows:steps}));' "$STEPS" "$WORK/steps.json"
table "$WORK/steps.json" '[["store","store"],["consumers","mode"],["run","kind"],["rate","rate"],["sent/s","sent_per_s"],
  ["p50 ms","p50_ms"],["p99 ms","p99_ms"],["worst 5 s p99","worst_window_p99_ms"],["backlog at end","end_backlog"],
  ["max backlog","max_backlog"],["pass","pass"],["drain s","drain_s"],["CPU µs/event","server_cpu_us_per_event"],
  ["RSS MB","peak_rss_mb"],["load","load1_before"]]'
echo
table "$RESULTS/sustained.json" '[["store","store"],["consumers","mode"],["sustained events/s","sustained_rate"],
  ["first failing","first_failing_rate"],["p99 ms at sustained","at_best.p99_ms"],["half rate","half_rate"],
  ["p50 ms at half","half_p50_ms"],["p99 ms at half","half_p99_ms"],["CPU µs/event at sustained","at_best.cpu_us_per_event"],
  ["CPU µs/event at half","half_cpu_us_per_event"],["peak RSS MB","peak_rss_mb"],["ceiling events/s","ceiling_events_per_s"],
  ["sustained / ceiling","sustained_over_ceiling"],["max load","load1"]]'
