#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for tests: initdb in a fresh directory,
# listening on 127.0.0.1 only, on a free port, fsync on (the server default),
# trust auth for the `postgres` role. Prints the connection URL on stdout and
# writes it to DIR/url. Stop it with scripts/pg-stop.sh DIR. Run again on a
# stopped DIR (pg-stop.sh DIR --keep) it starts the same cluster on the same
# port: that is how tests restart PostgreSQL under running replicas.
#
#   scripts/pg-start.sh [DIR]     DIR defaults to a new mktemp directory
#
# Runs the server as the `postgres` OS user when started as root (PostgreSQL
# refuses to run as root), else as the current user. Needs Debian's
# `postgresql` package (scripts/setup.sh --test installs it).
set -euo pipefail

find_pgbin() {
  if [[ -n "${PGBIN:-}" ]]; then echo "$PGBIN"; return; fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$d/initdb" ]] && { echo "$d"; return; }
  done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
  echo "pg-start: no PostgreSQL binaries found (apt-get install postgresql)" >&2
  exit 1
}
PGBIN=$(find_pgbin)

dir=${1:-}
if [[ -z "$dir" ]]; then dir=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX"); fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

run_as=""
if [[ $(id -u) -eq 0 ]]; then
  run_as=postgres
  chown postgres: "$dir"
  chmod 0755 "$dir"
fi
as_pg() {
  if [[ -n "$run_as" ]]; then runuser -u "$run_as" -- "$@"; else "$@"; fi
}

if [[ ! -f "$dir/data/PG_VERSION" ]]; then
  as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
fi

# A port that is free now; if another process grabs it before the server
# binds, pg_ctl fails and we try the next one.
pick_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "pg-start: no free port" >&2
  exit 1
}

if [[ -z "${PGPORT:-}" && -f "$dir/port" ]]; then PGPORT=$(cat "$dir/port"); fi
started=0
for attempt in 1 2 3 4 5; do
  port=${PGPORT:-$(pick_port)}
  # max_connections: several test processes each hold a pool.
  # fsync stays on (server default): tests check durability claims as shipped.
  if as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
      "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir \
       -c max_connections=400 -c fsync=on -c log_min_messages=warning" >/dev/null; then
    started=1
    break
  fi
  [[ -n "${PGPORT:-}" ]] && break
  echo "pg-start: start on port $port failed (attempt $attempt), retrying" >&2
done
if [[ $started -ne 1 ]]; then
  tail -20 "$dir/server.log" >&2 || true
  exit 1
fi

url="postgresql://postgres@127.0.0.1:$port/postgres"
echo "$url" >"$dir/url"
echo "$port" >"$dir/port"
echo "$PGBIN" >"$dir/pgbin"
echo "$run_as" >"$dir/run_as"
echo "$url"
