#!/usr/bin/env bash
# How long a fresh Node process stays slow (issue #7: p99 while reloading).
# A bare `node app.js` (the PM2 docs' app) is started, optionally given W
# seconds of keep-alive requests on one connection, then loaded for 0.5 s
# with 4 keep-alive connections: that p99 is a fresh worker's. Three starts
# per W; then the p99 of the same 0.5 s load on a process warmed for 3 s.
# Usage: bench-apps/measure-node-warmup.sh   (prints one line per start)
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
APP=$PWD/bench-apps/node/app.js
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
NODE=
trap '[ -n "$NODE" ] && kill "$NODE" 2>/dev/null || true' EXIT
p99() {
  "$HERD" bench --target "127.0.0.1:$PORT" -d "$1" -c 4 --threads 1 --scenario keepalive --json |
    python3 -c 'import json,sys; s=json.load(sys.stdin)["runs"][0]["scenarios"][0]; print("p99 %d µs, %.0f req/s" % (s["latency_us"]["p99"], s["rps"]))'
}
fresh() {
  PORT=$PORT node "$APP" & NODE=$!
  for _ in $(seq 200); do curl -s -m 1 "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.02; done
}
for warm in 0 0.2 1; do
  for _ in 1 2 3; do
    fresh
    if [ "$warm" != 0 ]; then
      "$HERD" bench --target "127.0.0.1:$PORT" -d "$warm" -c 1 --threads 1 --scenario keepalive >/dev/null
    fi
    echo "warm-up ${warm}s, then the first 0.5 s: $(p99 0.5)"
    kill "$NODE"; wait "$NODE" 2>/dev/null || true; NODE=
  done
done
fresh
"$HERD" bench --target "127.0.0.1:$PORT" -d 3 -c 4 --threads 1 --scenario keepalive >/dev/null
echo "warm (3 s of load first), 0.5 s: $(p99 0.5); again: $(p99 0.5)"
