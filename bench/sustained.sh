#!/usr/bin/env bash
# 6. sustained: ingest and processing at once. Open-loop load (`sluice bench
# ingest --rate`) at increasing rates against a real `sluice serve` whose
# watcher runs the default consumers (users + counters), then the same with an
# `archive` consumer added (to s3rver on loopback), on SQLite and PostgreSQL.
# Reports per store and consumer set the highest rate at which, over a run of
# SUSTAIN_S seconds, the backlog stays bounded and ack p99 <= 50 ms; ack
# p50/p99 at half that rate; server CPU per event (/proc/PID/stat, over load
# and drain); peak RSS (VmHWM). Then the ceiling (`sluice bench ceiling`,
# src/bench/ceiling.h): the rows one event costs the store, written in large
# transactions through the stores' own connection classes (no HTTP, no JSON,
# no lease bookkeeping), and sustained / ceiling.
#
#   bench/sustained.sh [BUILD_DIR]        SIZE=smoke|default|full (env)
#   STORES="sqlite postgres"  MODES="default archive"  (env, subsets)
#   WATCHER_BATCH=N WATCHER_LOOPS=N  (env: the server's [watcher] batch/loops;
#   default: sluice's defaults, 500 and 2)
#   SLUICE_CLIENT=PATH  (env: the load generator binary, default the build's sluice)
#   RANDOM_IDS=1  (env: insert_ids spread like SDK UUIDs, `bench ingest --random-ids`;
#   default: counter order, which appends to the old schema's dedup B-trees)
#
# "Backlog bounded": the queue (pending + leased, sampled once a second from
# /metrics) holds at most max(BOUND_S x rate, 2,000) events when the load
# ends, i.e. processing trails ingest by at most BOUND_S seconds of input.
# A step is "bounded" when the backlog is and no request failed and the
# client sent at >= 95 % of the rate; it passes when it is bounded with ack
# p99 <= 50 ms. Rates go up by FACTOR from the store's START while steps are
# bounded, then BISECT rounds halve the gaps (last bounded / first unbounded,
# last pass / first failure). The sustained rate is the highest that passed;
# the bounded rate (processing keeping up, whatever the latency) is given too.
# When no ramp step passed, the rate is halved from START up to DESCEND times.
# Every step's JSON (bench/results/sustained-steps.jsonl) carries its
# backlog samples as [seconds, backlog, claims, empty claims, claimed events]
# (the watcher's counters); the server log of a step whose backlog grew is
# kept in bench/results/sustained-logs/.
BUILD_DIR=${1:-${BUILD_DIR:-}}
source "$(dirname "$0")/lib/common.sh"

SUSTAIN_S=${SUSTAIN_S:-$(pick 2 30 30)}
HALF_S=${HALF_S:-$(pick 2 30 60)}
FACTOR=${FACTOR:-1.5}
MAX_STEPS=${MAX_STEPS:-$(pick 1 8 10)}
BISECT=${BISECT:-$(pick 0 1 2)}
DESCEND=${DESCEND:-$(pick 0 2 2)}
BOUND_S=${BOUND_S:-2}
P99_LIMIT_MS=50
DRAIN_MAX_S=${DRAIN_MAX_S:-$(pick 30 90 120)}
CEIL_EVENTS=${CEIL_EVENTS:-$(pick 2000 200000 1000000)}
CEIL_TXN=${CEIL_TXN:-$(pick 1000 50000 50000)}
CLAIM_BATCH=${WATCHER_BATCH:-500}  # the watcher's claim size: aggregates are written per batch
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
  if [[ -n ${WATCHER_BATCH:-}${WATCHER_LOOPS:-} ]]; then
    {
      echo "[watcher]"
      [[ -n ${WATCHER_BATCH:-} ]] && echo "batch = $WATCHER_BATCH"
      [[ -n ${WATCHER_LOOPS:-} ]] && echo "loops = $WATCHER_LOOPS"
    } >>"$1"
  fi
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

# "BACKLOG CLAIMS EMPTY_CLAIMS CLAIMED_EVENTS" from /metrics (the watcher's
# counters show whether a growing backlog is slow processing or none).
backlog_sample() {
  curl -sf --max-time 5 "$1/metrics" | awk '
    /^sluice_queue_events\{state="(pending|leased)"\}/ {s += $2; n++}
    /^sluice_claims_total/ {c = $2} /^sluice_claims_empty_total/ {e = $2}
    /^sluice_claimed_events_total/ {v = $2}
    END {if (n) print s, c + 0, e + 0, v + 0}'
}

# run_step STORE MODE RATE SECONDS KIND: one fresh store and server, RATE
# events/s for SECONDS, then drained; appends a JSON line to $STEPS and sets
# STEP_BOUNDED and STEP_PASS (true/false).
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
      echo "$(date +%s.%N) $(backlog_sample "$SERVE_URL")"
      sleep 1
    done
  ) >"$WORK/$tag.samples" 2>/dev/null &
  local poller=$!
  BENCH_PIDS+=("$poller")
  load=$(load1)
  cpu0=$(cpu_s "$SERVE_PID")
  t0=$(date +%s.%N)
  log "sustained $store/$mode: $rate events/s for $secs s ($kind)"
  "${SLUICE_CLIENT:-$SLUICE}" bench ingest --url "$SERVE_URL/v1/events" --events "$events" --batch "$BATCH" \
    --connections "$CONNS" --event-bytes "$EVENT_BYTES" --rate "$rate" --window 5 ${RANDOM_IDS:+--random-ids} \
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
  # The server's log of a step whose backlog grew, for a look afterwards.
  if [[ -n "$end_backlog" ]] && ((end_backlog > 2 * rate)); then
    mkdir -p "$RESULTS/sustained-logs"
    cp "$WORK/$tag-serve.log" "$WORK/$tag.samples" "$RESULTS/sustained-logs/" 2>/dev/null || true
  fi
  node -e '
    const fs=require("fs"); const a=process.argv;
    const r=JSON.parse(fs.readFileSync(a[1],"utf8"));
    const [store,mode,kind]=[a[2],a[3],a[4]];
    const rate=Number(a[5]), t0=Number(a[6]), t1=Number(a[7]), t2=Number(a[8]);
    const samples=fs.readFileSync(a[9],"utf8").split("\n").filter(l=>/^\S+ \d+ \d+ \d+ \d+$/.test(l))
      .map(l=>l.split(" ").map(Number)).filter(([t])=>t>=t0&&t<=t1);
    const endBacklog=a[10]===""?null:Number(a[10]);
    const bound=Math.max(Number(a[11])*rate, 2000);
    const maxBacklog=Math.max(0,...samples.map(s=>s[1]));
    const bounded=endBacklog!==null&&endBacklog<=bound;
    const p99=r.latency.p99_ms, failed=r.requests_failed;
    const sent=r.events_ok/r.seconds;
    const keptUp=failed===0&&sent>=0.95*rate;
    const pass=bounded&&keptUp&&p99<=Number(a[12]);
    const cpu=Number(a[14])-Number(a[13]);
    const worst=Math.max(0,...(r.windows||[]).map(w=>w.latency.p99_ms));
    console.log(JSON.stringify({store,mode,kind,rate,seconds:r.seconds,events_ok:r.events_ok,
      sent_per_s:sent,failed,p50_ms:r.latency.p50_ms,p99_ms:p99,max_ms:r.latency.max_ms,
      worst_window_p99_ms:worst,end_backlog:endBacklog,max_backlog:maxBacklog,backlog_bound:bound,
      bounded:bounded&&keptUp,pass,drained:a[15]==="true",drain_s:t2-t1,server_cpu_s:cpu,
      server_cpu_us_per_event:cpu/r.events_ok*1e6,peak_rss_mb:Number(a[16]),
      load1_before:Number(a[17]),
      backlog_samples:samples.map(([t,b,c,e,v])=>[Math.round((t-t0)*10)/10,b,c,e,v]),
      ingest:r}));' \
    "$WORK/$tag.json" "$store" "$mode" "$kind" "$rate" "$t0" "$t1" "$t2" "$WORK/$tag.samples" \
    "$end_backlog" "$BOUND_S" "$P99_LIMIT_MS" "$cpu0" "$cpu1" "$drained" "$rss" "$load" \
    >>"$STEPS"
  STEP_BOUNDED=false STEP_PASS=false
  if tail -1 "$STEPS" | grep -q '"bounded":true'; then STEP_BOUNDED=true; fi
  if tail -1 "$STEPS" | grep -q '"pass":true'; then STEP_PASS=true; fi
}

# ---- the ceiling: `sluice bench ceiling` on a fresh store ----

# ceiling STORE: writes $WORK/ceiling-STORE.json (the rows one event costs,
# in CEIL_TXN-event transactions, sync on; see src/bench/ceiling.h).
ceiling() {
  local store=$1 url
  url=$(new_store_url "$store" "ceiling_$store")
  log "ceiling $store: $CEIL_EVENTS events in $CEIL_TXN-event transactions"
  "$SLUICE" bench ceiling --store "$url" --sync true --events "$CEIL_EVENTS" --txn-events "$CEIL_TXN" \
    --batch "$CLAIM_BATCH" --event-bytes "$EVENT_BYTES" --template-events $((CONNS * BATCH)) \
    --json >"$WORK/ceiling-$store.raw.json"
  node -e '
    const c=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
    console.log(JSON.stringify({ceiling_events_per_s:c.events_per_s, ceiling_rows_per_event:c.rows_per_event,
      ceiling_cpu_s:c.cpu_s, ceiling_seconds:c.seconds, ceiling_load1:Number(process.argv[2]), ceiling:c}));' \
    "$WORK/ceiling-$store.raw.json" "$(load1)" >"$WORK/ceiling-$store.json"
}

# ---- the runs ----

# next_rate RATE: RATE x FACTOR, rounded to 100.
next_rate() { node -e 'console.log(Math.round(process.argv[1]*process.argv[2]/100)*100)' "$1" "$FACTOR"; }
mid_rate() { node -e 'console.log(Math.round((Number(process.argv[1])+Number(process.argv[2]))/200)*100)' "$1" "$2"; }

for store in $STORES; do
  if [[ $store == postgres && -z "${PG_URL:-}" ]]; then start_pg; fi
  ceiling "$store"
  for mode in $MODES; do
    if [[ $mode == archive && -z "$S3_ENDPOINT" ]]; then start_s3; fi
    # Ramp while the backlog stays bounded; `bounded` is the highest such
    # rate, `best` the highest that also kept ack p99 <= 50 ms.
    rate=$(start_rate "$store")
    bounded=0 unbounded=0 best=0 over=0
    for ((step = 0; step < MAX_STEPS; step++)); do
      run_step "$store" "$mode" "$rate" "$SUSTAIN_S" ramp
      if $STEP_PASS; then best=$rate; elif ((over == 0)); then over=$rate; fi
      if ! $STEP_BOUNDED; then unbounded=$rate; break; fi
      bounded=$rate
      rate=$(next_rate "$rate")
    done
    for ((k = 0; k < BISECT; k++)); do
      if ((unbounded > 0 && bounded > 0)); then
        mid=$(mid_rate "$bounded" "$unbounded")
        if ((mid > bounded && mid < unbounded)); then
          run_step "$store" "$mode" "$mid" "$SUSTAIN_S" bisect
          if $STEP_PASS && ((mid > best)); then best=$mid; fi
          if $STEP_BOUNDED; then bounded=$mid; else unbounded=$mid; fi
        fi
      fi
      if ((over > 0 && best > 0 && over > best)); then
        mid=$(mid_rate "$best" "$over")
        if ((mid > best && mid < over)); then
          run_step "$store" "$mode" "$mid" "$SUSTAIN_S" bisect
          if $STEP_PASS; then best=$mid; else over=$mid; fi
          if $STEP_BOUNDED && ((mid > bounded)); then bounded=$mid; fi
        fi
      fi
    done
    # Nothing passed the latency limit (the tail is load-sensitive on a
    # shared machine): halve from the lowest rate tried, up to DESCEND times.
    low=$(start_rate "$store")
    for ((k = 0; k < DESCEND && best == 0; k++)); do
      low=$((low / 2 / 100 * 100))
      ((low >= 100)) || break
      run_step "$store" "$mode" "$low" "$SUSTAIN_S" descend
      if $STEP_PASS; then best=$low; fi
    done
    half=0
    if ((best > 0)); then
      half=$(node -e 'console.log(Math.max(100, Math.round(process.argv[1]/2)))' "$best")
      run_step "$store" "$mode" "$half" "$HALF_S" half
    fi
    node -e '
      const fs=require("fs"); const a=process.argv;
      const steps=fs.readFileSync(a[1],"utf8").split("\n").filter(Boolean).map(JSON.parse)
        .filter(s=>s.store===a[2]&&s.mode===a[3]);
      const best=Number(a[4]), bounded=Number(a[5]), unbounded=Number(a[6]), half=Number(a[7]);
      const c=JSON.parse(fs.readFileSync(a[8],"utf8"));
      const at=steps.find(s=>s.rate===best&&s.kind!=="half")||{};
      const h=steps.find(s=>s.kind==="half")||{};
      console.log(JSON.stringify({store:a[2], mode:a[3]==="default"?"users+counters":"users+counters+archive",
        sustained_rate:best||null, bounded_rate:bounded||null, first_unbounded_rate:unbounded||null,
        at_best:{p50_ms:at.p50_ms,p99_ms:at.p99_ms,end_backlog:at.end_backlog,
          cpu_us_per_event:at.server_cpu_us_per_event,peak_rss_mb:at.peak_rss_mb,load1:at.load1_before},
        half_rate:half||null, half_p50_ms:h.p50_ms, half_p99_ms:h.p99_ms, half_max_ms:h.max_ms,
        half_cpu_us_per_event:h.server_cpu_us_per_event,
        peak_rss_mb:Math.max(0,...steps.map(s=>s.peak_rss_mb)),
        load1:Math.max(...steps.map(s=>s.load1_before)), ...c,
        sustained_over_ceiling:best?best/c.ceiling_events_per_s:null,
        bounded_over_ceiling:bounded?bounded/c.ceiling_events_per_s:null,
        steps:steps.map(s=>({kind:s.kind,rate:s.rate,pass:s.pass,bounded:s.bounded,p99_ms:s.p99_ms,
          end_backlog:s.end_backlog,load1:s.load1_before}))}));' \
      "$STEPS" "$store" "$mode" "$best" "$bounded" "$unbounded" "$half" "$WORK/ceiling-$store.json" >>"$ROWS"
  done
done

finish sustained "$ROWS"
cp "$STEPS" "$RESULTS/sustained-steps.jsonl"
echo "steps (every run; bounded = backlog <= max(${BOUND_S} s x rate, 2000) at the end of the load, no failed request, >= 95 % of the rate sent; pass = bounded and ack p99 <= ${P99_LIMIT_MS} ms):"
node -e '
  const fs=require("fs"); const steps=fs.readFileSync(process.argv[1],"utf8").split("\n").filter(Boolean).map(JSON.parse);
  fs.writeFileSync(process.argv[2], JSON.stringify({rows:steps}));' "$STEPS" "$WORK/steps.json"
table "$WORK/steps.json" '[["store","store"],["consumers","mode"],["run","kind"],["rate","rate"],["sent/s","sent_per_s"],
  ["p50 ms","p50_ms"],["p99 ms","p99_ms"],["worst 5 s p99","worst_window_p99_ms"],["backlog at end","end_backlog"],
  ["max backlog","max_backlog"],["bounded","bounded"],["pass","pass"],["drain s","drain_s"],["CPU µs/event","server_cpu_us_per_event"],
  ["RSS MB","peak_rss_mb"],["load","load1_before"]]'
echo
table "$RESULTS/sustained.json" '[["store","store"],["consumers","mode"],["sustained events/s","sustained_rate"],
  ["backlog bounded up to","bounded_rate"],["first unbounded","first_unbounded_rate"],["p99 ms at sustained","at_best.p99_ms"],["half rate","half_rate"],
  ["p50 ms at half","half_p50_ms"],["p99 ms at half","half_p99_ms"],["CPU µs/event at sustained","at_best.cpu_us_per_event"],
  ["CPU µs/event at half","half_cpu_us_per_event"],["peak RSS MB","peak_rss_mb"],["ceiling events/s","ceiling_events_per_s"],
  ["sustained / ceiling","sustained_over_ceiling"],["bounded / ceiling","bounded_over_ceiling"],["max load","load1"]]'
