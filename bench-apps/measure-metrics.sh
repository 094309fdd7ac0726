#!/usr/bin/env bash
# What herd's metrics cost (issue #19), in one sitting:
# 1. A/B, alternating rounds: the same app under wrk `Connection: close`
#    -c64, with the daemon's histograms recording (default) and with
#    HERD_METRICS=0; wrk's req/s and the daemon's CPU per connection, for
#    the Rust hello worker and the PM2 docs' Node app (-i 2, fdpass);
#    the daemon's RSS after each run.
# 2. `herd metrics` with 64 instances: wall time of each of 50 calls.
# 3. `herd monit` open in an 80x24 tmux pane for 20 s while wrk loads the
#    app: monit's CPU (% of one core).
# Prints one JSON line per measurement.
# Usage: bench-apps/measure-metrics.sh [ROUNDS] [SECONDS]   (default 5 5)
#   env: CONNS (64), RAW (file for wrk's raw output)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench-apps/lib/wrk.sh
need_wrk
ROUNDS=${1:-5}
SECS=${2:-5}
CONNS=${CONNS:-64}
RAW=${RAW:-/dev/null}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
TICK=$(getconf CLK_TCK)
. bench-apps/lib/port.sh
cpu_of() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_of() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
start_app() { # APP-KIND PORT HOME [ENV...]
  local kind=$1 port=$2 home=$3; shift 3
  if [ "$kind" = hello ]; then
    env "$@" HERD_HOME="$home" "$HERD" start "$HERD" --interpreter none --name app -i 2 --port "$port" --host 127.0.0.1 -- hello >/dev/null
  else
    env "$@" HERD_HOME="$home" "$HERD" start bench-apps/node/app.js --name app -i 2 --port "$port" >/dev/null
  fi
  for _ in $(seq 100); do curl -s "127.0.0.1:$port/" >/dev/null && return; sleep 0.05; done
}
ab_run() { # KIND on|off
  local kind=$1 metrics=$2 port home daemon d0 d1 out env=()
  port=$(free_port); home=$(mktemp -d)
  [ "$metrics" = off ] && env=(HERD_METRICS=0)
  start_app "$kind" "$port" "$home" "${env[@]}"
  daemon=$(cat "$home/herd.pid")
  wrk -t2 -c"$CONNS" -d2s -H 'Connection: close' "http://127.0.0.1:$port/" >/dev/null
  d0=$(cpu_of "$daemon")
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" -H 'Connection: close' "http://127.0.0.1:$port/")
  d1=$(cpu_of "$daemon")
  { echo "== round $round $kind metrics=$metrics"; echo "$out"; } >>"$RAW"
  python3 - "$kind" "$metrics" "$round" "$out" "$((d1 - d0))" "$TICK" "$(rss_of "$daemon")" <<'PY'
import json, re, sys
kind, metrics, rnd, out, d, tick, rss = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
errs = re.search(r"Socket errors: (.*)", out)
print(json.dumps({"test": "ab", "round": rnd, "app": kind, "metrics": metrics, "rps": rps,
                  "requests": reqs, "daemon_cpu_us_per_conn": round(d / tick * 1e6 / reqs, 2),
                  "daemon_rss_bytes": rss, "socket_errors": errs.group(1) if errs else None}))
PY
  HERD_HOME=$home "$HERD" kill >/dev/null 2>&1 || true
  rm -rf "$home"
}
[ "${SKIP_AB:-0}" = 1 ] && ROUNDS=0
for round in $(seq "$ROUNDS"); do
  for kind in hello node; do
    if [ $((round % 2)) = 1 ]; then ab_run "$kind" on; ab_run "$kind" off
    else ab_run "$kind" off; ab_run "$kind" on; fi
  done
done

# 2. herd metrics (the CLI: a process start, the request, the print) and
#    GET /metrics (a plain Python client) with 64 instances.
home=$(mktemp -d); port=$(free_port); mport=$(free_port)
HERD_METRICS_ADDR=127.0.0.1:$mport HERD_HOME=$home "$HERD" start "$HERD" --interpreter none --name many -i 64 --port "$port" --host 127.0.0.1 -- hello >/dev/null
for _ in $(seq 200); do
  [ "$(HERD_HOME=$home "$HERD" list --json | python3 -c 'import json,sys;print(sum(i["status"]=="online" for i in json.load(sys.stdin)))')" = 64 ] && break
  sleep 0.1
done
wrk -t2 -c64 -d2s -H 'Connection: close' "http://127.0.0.1:$port/" >/dev/null
HERD_HOME=$home python3 - "$HERD" "$mport" <<'PY'
import json, os, socket, statistics, subprocess, sys, time
herd, mport = sys.argv[1], int(sys.argv[2])
def timed(args):
    ts = []
    for _ in range(50):
        t = time.perf_counter()
        out = subprocess.run([herd] + args, capture_output=True, check=True).stdout
        ts.append((time.perf_counter() - t) * 1e3)
    return ts, len(out)
for args in (["metrics"], ["metrics", "--json"], ["list", "--json"]):
    ts, size = timed(args)
    ts.sort()
    print(json.dumps({"test": "metrics-64", "command": "herd " + " ".join(args), "instances": 64,
                      "median_ms": round(statistics.median(ts), 2), "p90_ms": round(ts[44], 2),
                      "max_ms": round(ts[-1], 2), "bytes": size}))
ts = []
for _ in range(100):
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", mport))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    n = 0
    while True:
        d = s.recv(65536)
        if not d:
            break
        n += len(d)
    s.close()
    ts.append((time.perf_counter() - t) * 1e3)
ts.sort()
print(json.dumps({"test": "metrics-64", "command": "GET /metrics (python client)", "instances": 64,
                  "median_ms": round(statistics.median(ts), 2), "p90_ms": round(ts[89], 2),
                  "max_ms": round(ts[-1], 2), "bytes": n}))
PY
echo "{\"test\": \"daemon-rss-64\", \"daemon_rss_bytes\": $(rss_of "$(cat "$home/herd.pid")")}"
HERD_HOME=$home "$HERD" kill >/dev/null 2>&1 || true
rm -rf "$home"

# 3. monit open under load.
if command -v tmux >/dev/null; then
  home=$(mktemp -d); port=$(free_port); sock=$home/tmux.sock
  start_app node "$port" "$home"
  tmux -S "$sock" new-session -d -s m -x 80 -y 24 "HERD_HOME=$home $HERD monit"
  sleep 2
  mpid=$(pgrep -f "$HERD monit" -n -P "$(tmux -S "$sock" display -p '#{pane_pid}')" || tmux -S "$sock" display -p '#{pane_pid}')
  wrk -t2 -c"$CONNS" -d22s -H 'Connection: close' "http://127.0.0.1:$port/" >/dev/null &
  w=$!
  sleep 1
  c0=$(cpu_of "$mpid"); t0=$(date +%s.%N)
  sleep 20
  c1=$(cpu_of "$mpid"); t1=$(date +%s.%N)
  wait "$w" || true
  python3 -c "import json;print(json.dumps({'test':'monit-cpu','seconds':round($t1-$t0,2),'cpu_percent_of_one_core':round(($c1-$c0)/$TICK/($t1-$t0)*100,2),'pid':$mpid}))"
  tmux -S "$sock" kill-server || true
  HERD_HOME=$home "$HERD" kill >/dev/null 2>&1 || true
  rm -rf "$home"
else
  echo '{"test": "monit-cpu", "skipped": "tmux not installed"}'
fi
