#!/usr/bin/env bash
# Stops a cluster started by scripts/pg-start.sh DIR (fast shutdown) and
# removes DIR unless --keep is given.
#
#   scripts/pg-stop.sh DIR [--keep]
set -euo pipefail
dir=${1:?usage: pg-stop.sh DIR [--keep]}
[[ -d "$dir" ]] || exit 0
PGBIN=$(cat "$dir/pgbin" 2>/dev/null || true)
run_as=$(cat "$dir/run_as" 2>/dev/null || true)
as_pg() {
  if [[ -n "$run_as" ]]; then runuser -u "$run_as" -- "$@"; else "$@"; fi
}
if [[ -n "$PGBIN" && -f "$dir/data/postmaster.pid" ]]; then
  as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || \
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
fi
if [[ "${2:-}" != --keep ]]; then rm -rf "$dir"; fi
