#!/bin/bash
# Fairness on a fresh daemon, from an outside client (bench-apps/scripts/http-client.py):
# RUNS fresh daemons of APP -i 2, ROUNDS x 3,000 connection-per-request requests each.
# usage: bench-apps/measure-fair-start.sh APP RUNS ROUNDS [herd start flags]; RAW=file.jsonl keeps the raw lines.
#   (APP: a script, or a command such as "target/release/herd hello"; ROUNDS run on one daemon)
APP=$1; RUNS=$2; ROUNDS=$3; shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
H=$ROOT/target/release/herd
for i in $(seq $RUNS); do
  export HERD_HOME=$(mktemp -d)
  # A random port someone else holds (another run's TIME_WAIT, a client's
  # ephemeral port) is a retry with another, not a run with no workers.
  for try in 1 2 3 4 5; do
    PORT=$((20000 + RANDOM % 20000))
    $H start "$APP" -i 2 --port $PORT "$@" >/dev/null 2>&1 && break
    echo "start on port $PORT failed (try $try)"; $H kill >/dev/null 2>&1
  done
  for k in $(seq 50); do curl -s -o /dev/null localhost:$PORT/ && break; sleep 0.1; done
  for r in $(seq $ROUNDS); do
  python3 $ROOT/bench-apps/scripts/http-client.py $PORT --requests 3000 --connections 16 | tee -a $RAW | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["jain"], d["max_mean"], d["per_worker"], d["failed"], d["p99_ms"])'
  done
  $H show 0 2>/dev/null | grep -iE "left|slow|dispatch" | head -5
  $H kill >/dev/null 2>&1
  rm -rf $HERD_HOME; echo --
done
