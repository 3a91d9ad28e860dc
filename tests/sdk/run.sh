#!/usr/bin/env bash
# The SDK system tests: the real Node analytics SDKs (versions pinned in
# package-lock.json) send to a real `sluice serve`.
# Usage: tests/sdk/run.sh [SLUICE_BINARY]   (default: $SLUICE_BIN)
# Installs the SDKs with `npm ci` when node_modules is missing or older than the lockfile.
set -euo pipefail
cd "$(dirname "$0")"
SLUICE_BIN="${1:-${SLUICE_BIN:-}}"
if [[ -z "$SLUICE_BIN" || ! -x "$SLUICE_BIN" ]]; then
  echo "usage: $0 SLUICE_BINARY (got '${SLUICE_BIN}')" >&2
  exit 2
fi
export SLUICE_BIN="$(cd "$(dirname "$SLUICE_BIN")" && pwd)/$(basename "$SLUICE_BIN")"
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
# One SDK at a time: each starts its own sluice; the machine has 2 cores.
exec node --test --test-concurrency=1 ./*.test.mjs
