#!/usr/bin/env bash
# Reload under load: a bounded load (herd's load generator, 4 connections)
# against `-i 2` of an app in fdpass mode while `herd reload` runs back to
# back. Every failed request is counted (refused, reset, timeout, early EOF,
# non-2xx). Scenarios: connection-per-request and keep-alive, for the Rust
# hello worker and the PM2 docs' Node app. Writes raw JSON per run to
# bench-results/reload-<date>/ and prints a summary.
# Usage: bench-apps/measure-reload.sh [seconds]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=${HERD:-$PWD/target/release/herd}
SECS=${1:-20}
OUT=bench-results/reload-$(date +%Y%m%d)
mkdir -p "$OUT"
export HERD_HOME=$(mktemp -d /tmp/herd-reload.XXXXXX)
trap '"$HERD" kill >/dev/null 2>&1 || true; rm -rf "$HERD_HOME"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
run() { # name scenario script [extra start args, e.g. -- hello]
  local name=$1 scenario=$2 script=$3; shift 3
  local port; port=$(free_port)
  "$HERD" start "$script" -i 2 --name app --port "$port" --host 127.0.0.1 "$@" >/dev/null
  until "$HERD" list --json | python3 -c 'import json,sys; l=json.load(sys.stdin); sys.exit(0 if l and all(i["in_rotation"] for i in l) else 1)'; do sleep 0.05; done
  "$HERD" bench --target "127.0.0.1:$port" --scenario "$scenario" -d "$SECS" -c 4 --threads 1 --json > "$OUT/$name-$scenario.json" &
  local bench=$! reloads=0
  sleep 0.5
  while kill -0 "$bench" 2>/dev/null; do
    "$HERD" reload app >/dev/null && reloads=$((reloads + 1))
  done
  wait "$bench"
  python3 - "$OUT/$name-$scenario.json" "$reloads" "$name" "$scenario" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = d["runs"][0]["scenarios"][0]
d["reloads"] = int(sys.argv[2]); json.dump(d, open(sys.argv[1], "w"))
print(f"| {sys.argv[3]} | {sys.argv[4]} | {sys.argv[2]} | {s['requests']} | {s['errors']['total']} {json.dumps({k: v for k, v in s['errors'].items() if v and k != 'total'})} | {s['latency_us']['p99']} |")
PY
  "$HERD" delete app >/dev/null
}
echo "| app | scenario | reloads | requests | failed | p99 µs |"
echo "|---|---|---|---|---|---|"
run rust close "$HERD" --interpreter none -- hello
run rust keepalive "$HERD" --interpreter none -- hello
run node close bench-apps/node/app.js
run node keepalive bench-apps/node/app.js
