#!/bin/bash
# One worker 5 ms slower (#15): the Rust hello worker -i 2 with instance 0 delayed
# (HERD_HELLO_DELAY_MS, HERD_HELLO_SLOW_INSTANCE), fresh daemon per run, ROUNDS rounds
# alternating fdpass (least-conn) and reuseport, each loaded by the plain Python client
# (3,000 connection-per-request requests over CONNS connections). Prints p50/p99 and the
# split; RAW=file.jsonl keeps the client's raw JSON.
# usage: bench-apps/measure-skew.sh [ROUNDS] [CONNS] [DELAY_MS]   (default 3 4 5)
#   HERD: the binary; APP=node: the same with the Node app bench-apps/node/slow-app.js (SLOW_INSTANCE=0)
ROUNDS=${1:-3}; CONNS=${2:-4}; DELAY=${3:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
H=${HERD:-$ROOT/target/release/herd}
. "$ROOT/bench-apps/lib/port.sh"
RAW=${RAW:-/dev/null}
for r in $(seq "$ROUNDS"); do
  for mode in fdpass reuseport; do
    export HERD_HOME=$(mktemp -d)
    PORT=$(free_port)
    if [ "${APP:-}" = node ]; then
      $H start "$ROOT/bench-apps/node/slow-app.js" --name hello -i 2 --port $PORT --mode $mode \
        --env SLOW_MS=$DELAY --env SLOW_INSTANCE=0 >/dev/null 2>&1 || echo "start failed"
    else
      $H start "$H hello" --name hello -i 2 --port $PORT --mode $mode \
        --env HERD_HELLO_DELAY_MS=$DELAY --env HERD_HELLO_SLOW_INSTANCE=0 >/dev/null 2>&1 || echo "start failed"
    fi
    for k in $(seq 50); do curl -s -o /dev/null localhost:$PORT/ && break; sleep 0.1; done
    python3 "$ROOT/bench-apps/scripts/http-client.py" $PORT --requests 3000 --connections "$CONNS" | tee -a "$RAW" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print("round '"$r $mode"' ('"$CONNS"' connections): p50_ms", d["p50_ms"], "p99_ms", d["p99_ms"], "per_worker", d["per_worker"], "failed", d["failed"])'
    grep -h "left out as slow" "$HERD_HOME/herd.log" | head -3
    $H kill >/dev/null 2>&1
    rm -rf "$HERD_HOME"
  done
done
