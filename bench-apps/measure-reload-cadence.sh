#!/usr/bin/env bash
# p99 while reloading at a given cadence (issue #7): `-i 2` of the PM2 docs'
# Node app (or the Rust hello worker with APP=hello), 4 connections; a
# steady run, then a run of the same length with `herd reload` every EVERY
# seconds. Prints one line per scenario; raw JSON goes to
# bench-results/reload-cadence-<date>/.
# Usage: bench-apps/measure-reload-cadence.sh [every-seconds] [seconds]   (default 5 20)
# EXTRA='--policy least-time' adds flags to `herd start` (and a tag to the
# file names). SCENARIOS=close runs one scenario only.
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=${HERD:-$PWD/target/release/herd}
EVERY=${1:-5}
SECS=${2:-20}
APP=${APP:-node}
read -r -a EXTRA_ARGS <<< "${EXTRA:-}"
TAG=$(printf '%s' "${EXTRA:-}" | tr -c 'A-Za-z0-9' '-' | sed 's/^-*//')
OUT=bench-results/reload-cadence-$(date +%Y%m%d)
mkdir -p "$OUT"
export HERD_HOME=$(mktemp -d /tmp/herd-cadence.XXXXXX)
trap '"$HERD" kill >/dev/null 2>&1 || true; rm -rf "$HERD_HOME"' EXIT
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
if [ "$APP" = hello ]; then
  "$HERD" start "$HERD" --interpreter none -i 2 --name app --port "$port" --host 127.0.0.1 ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"} -- hello >/dev/null
else
  "$HERD" start bench-apps/node/app.js -i 2 --name app --port "$port" --host 127.0.0.1 ${EXTRA_ARGS[@]+"${EXTRA_ARGS[@]}"} >/dev/null
fi
until "$HERD" list --json | python3 -c 'import json,sys; l=json.load(sys.stdin); sys.exit(0 if l and all(i["ready"] for i in l) else 1)'; do sleep 0.05; done
sleep 1
for sc in ${SCENARIOS:-close keepalive}; do
  base="$OUT/$APP${TAG:+-$TAG}-every${EVERY}s-$sc"
  "$HERD" bench --target "127.0.0.1:$port" --scenario "$sc" -d "$SECS" -c 4 --threads 1 --json > "$base-steady.json"
  "$HERD" bench --target "127.0.0.1:$port" --scenario "$sc" -d "$SECS" -c 4 --threads 1 --json > "$base-reloading.json" &
  bench=$!
  sleep 2
  n=0
  while kill -0 "$bench" 2>/dev/null; do
    "$HERD" reload app >/dev/null 2>&1 && n=$((n + 1))
    sleep "$EVERY"
  done
  wait "$bench"
  python3 - "$base" "$n" "$APP" "$EVERY" "$sc" <<'PY'
import json, sys
base, n, app, every, sc = sys.argv[1:]
one = lambda f: json.load(open(f))["runs"][0]["scenarios"][0]
s0, s1 = one(base + "-steady.json"), one(base + "-reloading.json")
p0, p1 = s0["latency_us"]["p99"], s1["latency_us"]["p99"]
print(f"{app} reload every {every} s, {sc}: {n} reloads, {s1['errors']['total']} failed, "
      f"p99 steady {p0} µs, reloading {p1} µs ({p1 / max(p0, 1):.2f}x)")
PY
done
