#!/usr/bin/env bash
# Installs what `herd bench --compare` compares herd with, on a fresh
# Debian/Ubuntu machine: PM2 (npm, under bench-apps/.peers/, never
# globally), nginx and wrk (apt). Node itself is expected on the machine.
# Each is skipped when already there. Usage: bench-apps/install-peers.sh
set -euo pipefail
cd "$(dirname "$0")"
PEERS=${HERD_PEERS:-$PWD/.peers}
if [ ! -x "$PEERS/node_modules/.bin/pm2" ]; then
  npm install --no-audit --no-fund --loglevel=error --prefix "$PEERS" pm2
fi
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  # The package starts a system nginx on port 80; the bench runs its own.
  if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
    $sudo systemctl stop nginx || true
  fi
fi
echo "peers: pm2 at $PEERS/node_modules/.bin/pm2, nginx at $(command -v nginx || echo /usr/sbin/nginx), wrk at $(command -v wrk)"
