#!/usr/bin/env bash
# Start a throwaway S3 server (s3rver 3.7.1 from npm, tests/s3) on 127.0.0.1:$S3_PORT
# (default 14568), data in a fresh temp dir (or $S3_DIR).
#   S3_STRICT=1 (default): tests/s3/s3rver-strict.js = s3rver + real SigV4 + body-hash check,
#                          keys $S3_ACCESS_KEY/$S3_SECRET_KEY (default test-access-key/test-secret-key),
#                          region $S3_REGION (default us-east-1)
#   S3_STRICT=0:           plain s3rver; key id must be S3RVER (secret S3RVER), signature NOT checked
#   S3_BUCKETS=a,b         buckets to create at start (strict mode only)
# Runs `npm ci` once (under a lock, so parallel tests do not race) if node_modules is missing.
# Prints "export S3_DIR=... S3_PID=... S3_ENDPOINT=..." on success.
# Usage: eval "$(scripts/s3rver-start.sh)"   (stop: scripts/s3rver-stop.sh "$S3_DIR")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
S3PKG=$(cd "$HERE/../tests/s3" && pwd)
PORT=${S3_PORT:-14568}
if [ ! -x "$S3PKG/node_modules/.bin/s3rver" ]; then
    (
        flock 9
        if [ ! -x "$S3PKG/node_modules/.bin/s3rver" ]; then
            cd "$S3PKG" && npm ci --no-audit --no-fund >&2
        fi
    ) 9>"$S3PKG/.npm-ci.lock"
fi
# Refuse a busy port: otherwise the readiness probe is answered by the OTHER server.
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "port 127.0.0.1:$PORT already in use" >&2; exit 1
fi
DIR=${S3_DIR:-$(mktemp -d /tmp/s3rver.XXXXXX)}
mkdir -p "$DIR/data"
if [ "${S3_STRICT:-1}" = 1 ]; then
    CMD=(node "$S3PKG/s3rver-strict.js" -d "$DIR/data" -a 127.0.0.1 -p "$PORT")
else
    CMD=(node "$S3PKG/node_modules/s3rver/bin/s3rver.js" -d "$DIR/data" -a 127.0.0.1 -p "$PORT" --silent)
fi
cd "$DIR"
nohup "${CMD[@]}" > "$DIR/server.log" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$DIR/server.pid"
for _ in $(seq 1 300); do            # up to 30 s; typically ~0.4 s
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "s3rver exited early; log:" >&2; cat "$DIR/server.log" >&2; exit 1
    fi
    code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "http://127.0.0.1:$PORT/" 2>/dev/null || true)
    if [ -n "$code" ] && [ "$code" != 000 ]; then   # any HTTP answer (strict mode: 403 to anonymous)
        echo "export S3_DIR=$DIR S3_PID=$PID S3_ENDPOINT=http://127.0.0.1:$PORT"
        exit 0
    fi
    sleep 0.1
done
echo "s3rver not ready after 30 s; log:" >&2; tail -50 "$DIR/server.log" >&2
kill "$PID" 2>/dev/null || true
exit 1
