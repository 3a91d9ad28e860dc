#!/usr/bin/env bash
# The console's browser test: Debian's chromium, headless, driven by
# puppeteer-core (pinned in package-lock.json), against real `sluice serve`
# replicas. Usage: tests/console/run.sh SLUICE_BINARY [SCREENSHOT_DIR]
# Installs puppeteer-core with `npm ci` when node_modules is missing or older
# than the lockfile; chromium comes from scripts/setup.sh --test.
set -euo pipefail
SLUICE_BIN="${1:-${SLUICE_BIN:-}}"
if [[ -z "$SLUICE_BIN" || ! -x "$SLUICE_BIN" ]]; then
  echo "usage: $0 SLUICE_BINARY [SCREENSHOT_DIR] (got '${SLUICE_BIN}')" >&2
  exit 2
fi
export SLUICE_BIN="$(cd "$(dirname "$SLUICE_BIN")" && pwd)/$(basename "$SLUICE_BIN")"
shots="${2:-${SCREENSHOT_DIR:-screenshots}}"
mkdir -p "$shots"
export SCREENSHOT_DIR="$(cd "$shots" && pwd)"
cd "$(dirname "$0")"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x "$CHROMIUM" ]]; then
  echo "$0: no chromium at $CHROMIUM (bash scripts/setup.sh --test installs it)" >&2
  exit 2
fi
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
exec node --test --test-concurrency=1 ./*.test.mjs
