#!/usr/bin/env bash
# The PM2 docs' Node app (bench-apps/node/app.js) under wrk, connection per
# request (`-H 'Connection: close'`), in rounds whose order rotates: herd
# fdpass, herd reuseport (both -i 2, or INSTANCES), and one bare `node app.js`.
# Per run: wrk's req/s, and CPU per request of herd's daemon and of the app's
# processes (utime+stime from /proc over the measured run).
# Usage: bench-apps/measure-node-wrk.sh [ROUNDS] [SECONDS]   (default 5 5)
#   env: CONNS (64), INSTANCES (2), RAW (file for wrk's raw output), HERD (binary),
#        RUNS (default "fdpass reuseport bare"; also e.g. fdpass-nopin, or a
#        mode with the daemon's environment after a colon:
#        "fdpass:HERD_REPLAY=0,HERD_DEFER_ACCEPT=0"),
#        START_FLAGS (more `herd start` flags for herd's runs, e.g. "--acceptors 1")
set -euo pipefail
cd "$(dirname "$0")/.."
. bench-apps/lib/wrk.sh
need_wrk
ROUNDS=${1:-5}
SECS=${2:-5}
CONNS=${CONNS:-64}
N=${INSTANCES:-2}
RAW=${RAW:-/dev/null}
HERD=${HERD:-$PWD/target/release/herd}
[ -x "$HERD" ] || cargo build --release
APP=bench-apps/node/app.js
TICK=$(getconf CLK_TCK)
. bench-apps/lib/port.sh
cpu_of() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
# one RUN-NAME PORT DAEMON-PID WORKER-PIDS...: warm up, measure, print a line
one() {
  local name=$1 port=$2 daemon=$3; shift 3
  wrk -t2 -c"$CONNS" -d2s -H 'Connection: close' "http://127.0.0.1:$port/" >/dev/null
  local d0 w0 d1 w1 out
  d0=$( [ "$daemon" = - ] && echo 0 || cpu_of "$daemon"); w0=$(cpu_of "$@")
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" -H 'Connection: close' "http://127.0.0.1:$port/")
  d1=$( [ "$daemon" = - ] && echo 0 || cpu_of "$daemon"); w1=$(cpu_of "$@")
  { echo "== round $round $name"; echo "$out"; } >>"$RAW"
  python3 - "$name" "$round" "$out" "$((d1 - d0))" "$((w1 - w0))" "$TICK" <<'PY'
import json, re, sys
name, rnd, out, d, w, tick = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
reqs = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
errs = re.search(r"Socket errors: (.*)", out)
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
us = lambda t: round(t / tick * 1e6 / reqs, 1)
print(json.dumps({"round": rnd, "run": name, "rps": rps, "requests": reqs,
                  "daemon_cpu_us_per_req": us(d), "app_cpu_us_per_req": us(w),
                  "socket_errors": errs.group(1) if errs else None,
                  "non_2xx": int(non2xx.group(1)) if non2xx else 0}))
PY
}
# herd_run MODE[:ENV=V,...] [nopin]
herd_run() {
  local mode=${1%%:*} pin=${2:-} port home pids name=herd-$1 flags=() envs=()
  [[ $1 == *:* ]] && IFS=, read -r -a envs <<<"${1#*:}"
  [ "$pin" = nopin ] && { flags=(--no-pin); name=$name-nopin; }
  # shellcheck disable=SC2206
  [ -n "${START_FLAGS:-}" ] && flags+=($START_FLAGS)
  port=$(free_port); home=$(mktemp -d)
  env HERD_HOME="$home" "${envs[@]}" "$HERD" start "$APP" -i "$N" --mode "$mode" "${flags[@]}" --port "$port" --name app >/dev/null
  sleep 1
  pids=$(HERD_HOME=$home "$HERD" list --json | python3 -c 'import json,sys;print(" ".join(str(i["pid"]) for i in json.load(sys.stdin)))')
  one "$name" "$port" "$(cat "$home/herd.pid")" $pids
  HERD_HOME=$home "$HERD" kill >/dev/null 2>&1 || true
  rm -rf "$home"
}
bare_run() {
  local port pid
  port=$(free_port)
  PORT=$port node "$APP" & pid=$!
  for _ in $(seq 50); do curl -s "127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
  one bare-node "$port" - "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
# RUNS: the runs of a round, each MODE, MODE-nopin (workers not pinned:
# `--no-pin`) or bare. Each round starts with the next of them, so no run
# always comes first (after a pause) or last (into the TIME_WAITs the
# others left).
read -r -a runs <<<"${RUNS:-fdpass reuseport bare}"
for round in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((${#runs[@]} - 1))); do
    r=${runs[$(((round + k - 1) % ${#runs[@]}))]}
    case $r in
      bare) bare_run ;;
      *-nopin) herd_run "${r%-nopin}" nopin ;;
      *) herd_run "$r" ;;
    esac
  done
done
