#!/usr/bin/env bash
# Start a throwaway ClickHouse 18.16 server on 127.0.0.1:$CH_PORT (default 18123),
# all state in a fresh temp dir (or $CH_DIR). Optional CH_TCP_PORT=19000 also opens
# the native port for clickhouse-client.
# Prints "export CH_DIR=... CH_PID=... CH_URL=..." on success.
# Usage: eval "$(scripts/clickhouse-start.sh)"   (stop: scripts/clickhouse-stop.sh "$CH_DIR")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${CH_PORT:-18123}
# Refuse a busy port: otherwise the readiness probe below is answered by the
# OTHER server while ours dies with "Address already in use".
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "port 127.0.0.1:$PORT already in use" >&2; exit 1
fi
DIR=${CH_DIR:-$(mktemp -d /tmp/clickhouse.XXXXXX)}
mkdir -p "$DIR"
TCP=${CH_TCP_PORT:+<tcp_port>$CH_TCP_PORT</tcp_port>}
sed -e "s#@DIR@#$DIR#g" -e "s#@PORT@#$PORT#g" -e "s#<!--@TCP@-->#$TCP#" \
    "$HERE/clickhouse-config.xml.in" > "$DIR/config.xml"
# cd into DIR: the server writes preprocessed_configs/ next to config.xml;
# keep its cwd out of the source tree.
cd "$DIR"
nohup /usr/sbin/clickhouse-server --config-file="$DIR/config.xml" \
    > "$DIR/server.log" 2>&1 < /dev/null &
PID=$!
echo "$PID" > "$DIR/server.pid"
for _ in $(seq 1 300); do            # up to 30 s; typically ready in ~0.15 s
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "clickhouse-server exited early; log:" >&2; cat "$DIR/server.log" >&2; exit 1
    fi
    if [ "$(curl -s --max-time 1 "http://127.0.0.1:$PORT/?query=SELECT%201" 2>/dev/null)" = "1" ]; then
        echo "export CH_DIR=$DIR CH_PID=$PID CH_URL=http://127.0.0.1:$PORT/"
        exit 0
    fi
    sleep 0.1
done
echo "clickhouse-server not ready after 30 s; log:" >&2; tail -50 "$DIR/server.log" >&2
kill "$PID" 2>/dev/null || true
exit 1
