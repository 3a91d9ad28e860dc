#!/usr/bin/env bash
# Crashes a cluster started by scripts/pg-start.sh DIR, for the database-crash
# tests; start it again with scripts/pg-start.sh DIR (crash recovery replays
# the WAL).
#
#   scripts/pg-crash.sh DIR immediate   pg_ctl stop -m immediate: every server
#                                       process quits at once, no checkpoint,
#                                       WAL not yet flushed is lost
#   scripts/pg-crash.sh DIR kill9       kill -9 of the postmaster; its backends
#                                       notice and exit (killed -9 after 10 s)
set -euo pipefail
dir=${1:?usage: pg-crash.sh DIR immediate|kill9}
mode=${2:?usage: pg-crash.sh DIR immediate|kill9}
PGBIN=$(cat "$dir/pgbin")
run_as=$(cat "$dir/run_as" 2>/dev/null || true)
as_pg() {
  if [[ -n "$run_as" ]]; then runuser -u "$run_as" -- "$@"; else "$@"; fi
}
case "$mode" in
  immediate)
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w -t 60 stop >/dev/null
    ;;
  kill9)
    pid=$(head -1 "$dir/data/postmaster.pid")
    # Its children, before they are re-parented by its death.
    kids=$(pgrep -P "$pid" || true)
    # Waits up to $1 tenths of a second for the postmaster and its children to be gone.
    wait_gone() {
      for _ in $(seq "$1"); do
        local alive=""
        for k in $pid $kids; do kill -0 "$k" 2>/dev/null && alive="$alive $k"; done
        [[ -z "$alive" ]] && return 0
        sleep 0.1
      done
      return 1
    }
    kill -9 "$pid"
    if ! wait_gone 100; then
      for k in $pid $kids; do kill -9 "$k" 2>/dev/null || true; done
      # A restart must not find the old processes attached to shared memory.
      wait_gone 50 || true
    fi
    ;;
  *)
    echo "pg-crash: unknown mode $mode (immediate | kill9)" >&2
    exit 2
    ;;
esac
