#!/usr/bin/env bash
# Reload under load (issue #7): a bounded load (herd's load generator, 4
# connections) against `-i 2` of an app, three times: without reloads
# (steady), with a reload every second (paced: its p99 against the steady
# one), and with reloads back to back (as many as fit: the failure count).
# Every failed request is counted (refused, reset, timeout, early EOF,
# non-2xx).
#   - the Rust hello worker in fdpass, reuseport and shared modes;
#   - the PM2 docs' Node app (bench-apps/node/app.js) in fdpass, reuseport
#     and shared modes;
#   - the same Node app under PM2 7 (`pm2 reload`), installed with npm into
#     a temp prefix (PM2=0 skips it);
# each with connection-per-request and keep-alive load. reuseport rows run
# with the kernel's net.ipv4.tcp_migrate_req as it is, and again with it set
# to 1 when we may set it (root; restored afterwards).
# Raw JSON per run goes to bench-results/reload-<date>/, a table to stdout.
# Usage: bench-apps/measure-reload.sh [seconds] [steady-seconds]   (default 20 10)
# ONLY=<regex> runs the rows whose "app mode" matches (ONLY='node-app fdpass');
# PM2=0 skips PM2.
# (the steady and paced runs last steady-seconds, the back-to-back run seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=${HERD:-$PWD/target/release/herd}
SECS=${1:-20}
STEADY=${2:-10}
OUT=bench-results/reload-$(date +%Y%m%d)
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/herd-reload.XXXXXX)
export HERD_HOME=$TMP/herd-home PM2_HOME=$TMP/pm2-home
PM2_BIN=""
MIGRATE=/proc/sys/net/ipv4/tcp_migrate_req
MIGRATE_WAS=$(cat "$MIGRATE" 2>/dev/null || echo "")
cleanup() {
  "$HERD" kill >/dev/null 2>&1 || true
  [ -n "$PM2_BIN" ] && "$PM2_BIN" kill >/dev/null 2>&1 || true
  [ -n "$MIGRATE_WAS" ] && echo "$MIGRATE_WAS" > "$MIGRATE" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
. bench-apps/lib/pm2.sh
PM2_BIN=$(install_pm2 "$TMP/npm")
. bench-apps/lib/port.sh
wait_port() { for _ in $(seq 400); do curl -s -m 1 "http://127.0.0.1:$1/" >/dev/null && return 0; sleep 0.05; done; return 1; }
load() { # port scenario seconds
  "$HERD" bench --target "127.0.0.1:$1" --scenario "$2" -d "$3" -c 4 --threads 1 --json
}
row() { # steady.json paced.json paced-reloads reload.json reloads app mode scenario
  python3 - "$@" <<'PY'
import json, sys
steady, paced, np, reload, n, app, mode, scenario = sys.argv[1:]
one = lambda f: json.load(open(f))["runs"][0]["scenarios"][0]
s0, sp = one(steady), one(paced)
d = json.load(open(reload)); s = d["runs"][0]["scenarios"][0]
d["reloads"] = int(n); json.dump(d, open(reload, "w"))
d = json.load(open(paced)); d["reloads"] = int(np); json.dump(d, open(paced, "w"))
errs = {k: v for k, v in s["errors"].items() if v and k != "total"}
fail = sp["errors"]["total"] + s["errors"]["total"]
print(f"| {app} | {mode} | {scenario} | {int(n) + int(np)} | {s['requests'] + sp['requests']:,} | {fail} {json.dumps(errs) if errs else ''} "
      f"| {s0['latency_us']['p99']:,} | {sp['latency_us']['p99']:,} ({sp['latency_us']['p99'] / max(1, s0['latency_us']['p99']):.1f}x) |")
PY
}
# under_load name label scenario port reload-command...
under_load() {
  local name=$1 mode=$2 scenario=$3 port=$4; shift 4
  local base; base="$OUT/$name-${mode//[^a-z0-9=_]/-}-$scenario"
  load "$port" "$scenario" "$STEADY" > "$base-steady.json"
  # Paced: one reload a second.
  load "$port" "$scenario" "$STEADY" > "$base-paced.json" &
  local bench=$! paced=0
  sleep 0.5
  while kill -0 "$bench" 2>/dev/null; do
    local t0; t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 && paced=$((paced + 1))
    local left=$(( (1000000000 - ($(date +%s%N) - t0)) / 1000000 ))
    [ "$left" -gt 0 ] && sleep "$(awk "BEGIN { print $left / 1000 }")"
  done
  wait "$bench"
  # Back to back.
  load "$port" "$scenario" "$SECS" > "$base.json" &
  bench=$!
  local reloads=0
  sleep 0.5
  while kill -0 "$bench" 2>/dev/null; do
    "$@" >/dev/null 2>&1 && reloads=$((reloads + 1))
  done
  wait "$bench"
  row "$base-steady.json" "$base-paced.json" "$paced" "$base.json" "$reloads" "$name" "$mode" "$scenario"
}
herd_app() { # name label mode script [args...]
  local name=$1 label=$2 mode=$3 script=$4; shift 4
  if [ -n "${ONLY:-}" ] && ! [[ "$name $label" =~ $ONLY ]]; then return; fi
  local port; port=$(free_port)
  "$HERD" start "$script" -i 2 --name app --mode "$mode" --port "$port" --host 127.0.0.1 "$@" >/dev/null
  until "$HERD" list --json | python3 -c 'import json,sys; l=json.load(sys.stdin); sys.exit(0 if l and all(i["ready"] for i in l) else 1)'; do sleep 0.05; done
  wait_port "$port"
  for scenario in close keepalive; do
    under_load "$name" "$label" "$scenario" "$port" "$HERD" reload app
  done
  "$HERD" delete app >/dev/null
}

echo "| app | mode | scenario | reloads | requests | failed | p99 µs steady | p99 µs, a reload a second |"
echo "|---|---|---|---|---|---|---|---|"
for mode in fdpass reuseport shared; do
  herd_app "rust-hello" "$mode" "$mode" "$HERD" --interpreter none -- hello
done
for mode in fdpass reuseport shared; do
  herd_app "node-app" "$mode" "$mode" bench-apps/node/app.js
done
if [ -n "$MIGRATE_WAS" ] && [ "$MIGRATE_WAS" = 0 ] && echo 1 > "$MIGRATE" 2>/dev/null; then
  herd_app "rust-hello" "reuseport, migrate_req=1" reuseport "$HERD" --interpreter none -- hello
  herd_app "node-app" "reuseport, migrate_req=1" reuseport bench-apps/node/app.js
  echo "$MIGRATE_WAS" > "$MIGRATE"
fi
if [ -n "$PM2_BIN" ] && { [ -z "${ONLY:-}" ] || [[ "pm2" =~ $ONLY ]]; }; then
  port=$(free_port)
  PORT=$port "$PM2_BIN" start "$PWD/bench-apps/node/app.js" -i 2 --name app >/dev/null
  wait_port "$port"; sleep 1
  for scenario in close keepalive; do
    under_load "pm2-node-app" "pm2 cluster" "$scenario" "$port" "$PM2_BIN" reload app
  done
  "$PM2_BIN" delete app >/dev/null
fi
