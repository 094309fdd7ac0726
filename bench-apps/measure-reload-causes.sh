#!/usr/bin/env bash
# What makes a Node app's p99 rise while it is reloaded (issue #7)? The PM2
# docs' app at -i 2 (fdpass), 4 connections, connection per request, 10 s
# per line, p99 of each:
#   steady | a bare `node app.js` booting beside it every second (no
#   reload) | `herd scale 3` then `2` every second | `herd reload` every
#   second | steady again.
# Usage: bench-apps/measure-reload-causes.sh [scenario]   (close|keepalive, default close)
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
SC=${1:-close}
export HERD_HOME=$(mktemp -d /tmp/herd-causes.XXXXXX)
trap '"$HERD" kill >/dev/null 2>&1 || true; rm -rf "$HERD_HOME"' EXIT
. bench-apps/lib/port.sh
PORT=$(free_port)
"$HERD" start bench-apps/node/app.js -i 2 --name app --port "$PORT" --host 127.0.0.1 >/dev/null
sleep 2
p99() {
  "$HERD" bench --target "127.0.0.1:$PORT" --scenario "$SC" -d 10 -c 4 --threads 1 --json |
    python3 -c 'import json,sys; s=json.load(sys.stdin)["runs"][0]["scenarios"][0]; print("p99 %d µs, %.0f req/s" % (s["latency_us"]["p99"], s["rps"]))'
}
echo "steady: $(p99)"
(for _ in $(seq 9); do PORT=$(free_port) node bench-apps/node/app.js & P=$!; sleep 0.7; kill $P; sleep 0.3; done) &
echo "a node boot every second, no reload: $(p99)"
wait
(sleep 1; for _ in $(seq 4); do "$HERD" scale app 3 >/dev/null; sleep 1; "$HERD" scale app 2 >/dev/null; sleep 1; done) &
echo "scale 2 -> 3 -> 2 every second: $(p99)"
wait
(sleep 1; for _ in $(seq 4); do "$HERD" reload app >/dev/null; sleep 1; done) &
echo "reload every second: $(p99)"
wait
echo "steady again: $(p99)"
