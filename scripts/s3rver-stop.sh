#!/usr/bin/env bash
# Stop the server started by s3rver-start.sh (by its PID only) and remove its dir.
# Usage: scripts/s3rver-stop.sh "$S3_DIR"   [KEEP=1 to keep the dir]
set -u
DIR=${1:?usage: s3rver-stop.sh S3_DIR}
PID=$(cat "$DIR/server.pid" 2>/dev/null) || { echo "no $DIR/server.pid" >&2; exit 1; }
if kill "$PID" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$PID" 2>/dev/null; then echo "SIGKILL $PID" >&2; kill -9 "$PID"; fi
fi
[ "${KEEP:-0}" = 1 ] || rm -rf "$DIR"
