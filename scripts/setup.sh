#!/usr/bin/env bash
# Installs every Debian package sluice needs to build, run and test.
# Idempotent: only calls apt-get when something is missing. Run as root.
set -euo pipefail

BUILD_PKGS=(
  build-essential cmake pkg-config ninja-build ccache git curl ca-certificates
  libboost-dev libboost-system-dev libsimdjson-dev libsqlite3-dev sqlite3 libpq-dev
  libcurl4-openssl-dev libssl-dev libzstd-dev zlib1g-dev
  libcli11-dev libtomlplusplus-dev libspdlog-dev libfmt-dev libxxhash-dev
)
TEST_PKGS=(
  libgtest-dev libgmock-dev libbenchmark-dev
  postgresql clickhouse-server clickhouse-client nodejs npm procps chromium
  clang libclang-rt-14-dev
)

want=("${BUILD_PKGS[@]}")
if [[ "${1:-}" == "--test" ]]; then want+=("${TEST_PKGS[@]}"); fi

missing=()
for p in "${want[@]}"; do
  # nodejs/npm may come from outside Debian on some images: accept any node >= 18.
  if [[ "$p" == nodejs || "$p" == npm ]] && command -v node >/dev/null && command -v npm >/dev/null; then
    continue
  fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
