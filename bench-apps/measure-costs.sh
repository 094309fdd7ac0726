#!/usr/bin/env bash
# Measures herd's own costs (issue #3 targets) and prints one JSON object:
#   list_ms        median wall time of `herd list` (warm daemon, 1 app)
#   start_warm_ms  `herd start app.js -i 2` until BOTH workers answered (daemon running)
#   start_cold_ms  the same with no daemon running (the CLI starts it)
#   bare_node_ms   plain `node app.js` until it answers, for reference
#   daemon_rss_idle_kb / daemon_rss_loaded_kb  daemon VmRSS idle, and after load
#   worker_rss_kb / bare_node_rss_kb  one herd worker vs a bare node process
# Usage: bench-apps/measure-costs.sh [path/to/herd]   (needs node and curl)
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=${1:-target/release/herd}
APP=bench-apps/node/app.js
export HERD_HOME=$(mktemp -d /tmp/herd-costs.XXXXXX)
trap '"$HERD" kill >/dev/null 2>&1 || true; rm -rf "$HERD_HOME"' EXIT

now_ns() { date +%s%N; }
. bench-apps/lib/port.sh
# Polls until `want` distinct pids answered on the port (bounded: 10 s).
wait_pids() {
  local port=$1 want=$2 seen="" deadline=$(( $(date +%s) + 10 ))
  while :; do
    local pid
    pid=$(curl -s -m 1 "http://127.0.0.1:$port/" | awk '{print $NF}') || true
    if [ -n "$pid" ] && ! grep -qw "$pid" <<<"$seen"; then seen="$seen $pid"; fi
    [ "$(wc -w <<<"$seen")" -ge "$want" ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timeout waiting for $want workers" >&2; return 1; }
  done
}
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
ms() { echo $(( ($2 - $1) / 1000000 )); }

# Cold start: no daemon yet.
port=$(free_port)
t0=$(now_ns); "$HERD" start "$APP" -i 2 --name cold --port "$port" --host 127.0.0.1 >/dev/null; wait_pids "$port" 2; t1=$(now_ns)
start_cold=$(ms "$t0" "$t1")
sleep 1
daemon=$(cat "$HERD_HOME/herd.pid")
rss_idle=$(rss_kb "$daemon")
worker=$("$HERD" list --json | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["pid"])')
worker_rss=$(rss_kb "$worker")

# herd list, warm.
times=()
for _ in $(seq 30); do t0=$(now_ns); "$HERD" list >/dev/null; t1=$(now_ns); times+=($(( (t1 - t0) / 1000 ))); done
list_us=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')

# Warm start of a second app.
port2=$(free_port)
t0=$(now_ns); "$HERD" start "$APP" -i 2 --name warm --port "$port2" --host 127.0.0.1 >/dev/null; wait_pids "$port2" 2; t1=$(now_ns)
start_warm=$(ms "$t0" "$t1")

# Load (bounded: 2000 requests), then daemon RSS again.
for _ in $(seq 2000); do curl -s -m 1 "http://127.0.0.1:$port/" >/dev/null || true; done
rss_loaded=$(rss_kb "$daemon")

# Bare node for reference.
port3=$(free_port)
t0=$(now_ns); PORT=$port3 node "$APP" & bare=$!; wait_pids "$port3" 1; t1=$(now_ns)
bare_ms=$(ms "$t0" "$t1"); bare_rss=$(rss_kb "$bare"); kill "$bare"; wait "$bare" 2>/dev/null || true

cat <<JSON
{"machine": {"cpus": $(nproc), "kernel": "$(uname -r)"}, "list_ms": $(awk "BEGIN{printf \"%.2f\", $list_us/1000}"), "start_warm_ms": $start_warm, "start_cold_ms": $start_cold, "bare_node_ms": $bare_ms, "daemon_rss_idle_kb": $rss_idle, "daemon_rss_loaded_kb": $rss_loaded, "worker_rss_kb": $worker_rss, "bare_node_rss_kb": $bare_rss}
JSON
