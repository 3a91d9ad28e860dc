# Shared helpers of the bench/ scripts. Source it; needs BUILD_DIR set or passed.
#   SIZE=smoke|default|full   smoke: seconds (CI); default: a few minutes for
#                             all benches; full: the sizes of issue 7.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$REPO_DIR/build}
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
SLUICE=${SLUICE:-$BUILD_DIR/sluice}
# The test binary (the shipped commands plus the test hooks, e.g. the naive
# claim of the scaling comparison); built by the test and bench builds.
SLUICE_TESTKIT=${SLUICE_TESTKIT:-$BUILD_DIR/sluice-testkit}
SIZE=${SIZE:-default}
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
RESULTS=${RESULTS:-$BENCH_DIR/results}
mkdir -p "$RESULTS"
[[ -x "$SLUICE" ]] || { echo "bench: no sluice binary at $SLUICE (build first)" >&2; exit 1; }

# Work directory removed on exit, with every process we started stopped.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
BENCH_PIDS=()
PG_DIRS=()
bench_cleanup() {
  local pid d
  for pid in "${BENCH_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]:-}"; do
    [[ -n "$pid" ]] && wait "$pid" 2>/dev/null || true
  done
  for d in "${PG_DIRS[@]:-}"; do
    [[ -n "$d" ]] && bash "$REPO_DIR/scripts/pg-stop.sh" "$d" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap bench_cleanup EXIT

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# pick SMOKE DEFAULT FULL: the value for the current SIZE.
pick() {
  case "$SIZE" in
    smoke) echo "$1" ;;
    full) echo "$3" ;;
    *) echo "$2" ;;
  esac
}

# Below the kernel's ephemeral range (32768+), where client sockets of other
# processes could hold the port.
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "bench: no free port" >&2
  return 1
}

# Starts a throwaway PostgreSQL (scripts/pg-start.sh) and sets PG_URL, PG_DIR.
start_pg() {
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-pg.XXXXXX")
  PG_DIRS+=("$PG_DIR")
  PG_URL=$(bash "$REPO_DIR/scripts/pg-start.sh" "$PG_DIR")
  PG_BIN=$(cat "$PG_DIR/pgbin")
  log "postgres at $PG_URL"
}

# psql against PG_URL (or $1 when it starts with postgres).
pg() { psql -X -q -v ON_ERROR_STOP=1 "$PG_URL" "$@"; }

# A fresh database on the running cluster; prints its URL.
pg_new_db() {
  local name=$1
  pg -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
  echo "${PG_URL%/*}/$name"
}

# start_serve CONFIG_FILE LOG_FILE: starts `sluice serve`, waits for /healthz,
# sets SERVE_PID and SERVE_URL (from the config's listen line).
start_serve() {
  local config=$1 logf=$2
  local listen
  listen=$(sed -n 's/^listen *= *"\(.*\)"/\1/p' "$config" | head -1)
  "$SLUICE" serve --config "$config" >"$logf" 2>&1 &
  SERVE_PID=$!
  BENCH_PIDS+=("$SERVE_PID")
  SERVE_URL="http://$listen"
  for _ in $(seq 300); do
    if curl -sf "$SERVE_URL/healthz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
      echo "bench: sluice serve exited; log:" >&2
      tail -20 "$logf" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "bench: sluice serve did not become healthy" >&2
  tail -20 "$logf" >&2
  return 1
}

# 1-minute load average now (other processes on the machine compete for the 2 cores).
load1() { cut -d' ' -f1 /proc/loadavg; }

# CPU seconds (user + system) a live process has used so far.
cpu_s() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }

# Peak resident set of a live process, in MB (VmHWM).
peak_rss_mb() {
  awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}

# stop_pid PID: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# jget FILE EXPR: evaluates a JS expression over the JSON object `j` in FILE.
jget() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
  const v=eval(process.argv[2]); console.log(typeof v==="number"?String(Math.round(v*100)/100):v)' "$1" "$2"; }

# table RESULT_JSON_FILE COLUMNS_JS: prints a Markdown table of the array of
# row objects in the file; COLUMNS_JS is a JS array of [title, key] pairs.
table() { node "$BENCH_DIR/lib/table.js" "$@"; }

# machine_json: cores, memory, disk, kernel, date, git commit.
machine_json() {
  local disk
  disk=$(df -P "$WORK" | awk 'NR==2 {print $1}')
  node -e 'const os=require("os");console.log(JSON.stringify({date:new Date().toISOString(),
    cores:os.cpus().length,cpu:os.cpus()[0].model,mem_gb:Math.round(os.totalmem()/2**30),
    kernel:os.release(),disk:process.argv[1],commit:process.argv[2],size:process.argv[3],
    loadavg_at_end:os.loadavg().map(x=>Math.round(x*100)/100)}))' \
    "$disk" "$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo none)" "$SIZE"
}

# jmerge JSON...: the objects merged left to right, printed as one line.
jmerge() {
  node -e 'const o={};for(const a of process.argv.slice(1))Object.assign(o,JSON.parse(a));
    console.log(JSON.stringify(o))' "$@"
}

# finish NAME ROWS_JSONL: writes $RESULTS/NAME.json = {"bench","machine","rows":[...]}.
finish() {
  local name=$1 rows=$2
  node -e 'const fs=require("fs");const rows=fs.readFileSync(process.argv[2],"utf8").split("\n")
    .filter(Boolean).map(JSON.parse);
    console.log(JSON.stringify({bench:process.argv[1],machine:JSON.parse(process.argv[3]),rows},null,1))' \
    "$name" "$rows" "$(machine_json)" >"$RESULTS/$name.json"
  log "wrote $RESULTS/$name.json"
}
