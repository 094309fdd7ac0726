#!/usr/bin/env bash
# Same-run comparison of herd and PM2 on the PM2 docs' Node app at -i 2, with
# herd's own load generator for both (so the client side is identical):
#   - PM2 7 cluster mode (installed with npm into a temp prefix, never assumed)
#   - herd fdpass (Node cluster protocol) and herd reuseport (node -r preload)
#   - bare `node app.js` (one process) for reference
# Scenarios: connection-per-request, keep-alive, and a skewed one where
# instance 0 answers 5 ms slower (HERD_HELLO-style skew via SLOW_MS env).
# Writes raw JSON to bench-results/compare-pm2-<date>/ and prints a summary.
# Usage: bench-apps/compare-pm2.sh [seconds-per-scenario]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
OUT=bench-results/compare-pm2-$(date +%Y%m%d)
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/herd-vs-pm2.XXXXXX)
export PM2_HOME=$TMP/pm2-home HERD_HOME=$TMP/herd-home
PM2="$TMP/npm/bin/pm2"
cleanup() {
  [ -x "$PM2" ] && "$PM2" kill >/dev/null 2>&1 || true
  "$HERD" kill >/dev/null 2>&1 || true
  [ -n "${BARE:-}" ] && kill "$BARE" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

. bench-apps/lib/pm2.sh
[ -n "$(PM2=1 install_pm2 "$TMP/npm")" ] || { echo "compare-pm2.sh needs PM2" >&2; exit 1; }
"$PM2" --version >&2

APP=$PWD/bench-apps/node/app.js
SLOWAPP=$PWD/bench-apps/node/slow-app.js
. bench-apps/lib/port.sh
wait_port() { for _ in $(seq 200); do curl -s -m 1 "http://127.0.0.1:$1/" >/dev/null && return 0; sleep 0.05; done; return 1; }
# utime + stime of a process. Fields are counted after the `(comm)` field,
# which may hold spaces ("PM2 v7.0.4: God Daemon").
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
bench() { "$HERD" bench --target "127.0.0.1:$1" -d "$SECS" -c 64 --json --scenario "$2"; }

# PM2, cluster mode, -i 2.
for app in app slow-app; do
  port=$(free_port)
  PORT=$port SLOW_INSTANCE=0 SLOW_MS=5 "$PM2" start "$PWD/bench-apps/node/$app.js" -i 2 --name "pm2-$app" >/dev/null
  wait_port "$port"; sleep 1
  if [ "$app" = app ]; then
    # PM2's God daemon is the cluster primary: its CPU per connection is
    # the number to put next to herd's daemon.
    D=$(cat "$PM2_HOME/pm2.pid"); t0=$(cpu_ticks "$D")
    bench "$port" close > "$OUT/pm2.json"
    t1=$(cpu_ticks "$D")
    echo "{\"daemon_cpu_ticks\": $((t1 - t0)), \"clk_tck\": $(getconf CLK_TCK)}" > "$OUT/pm2-daemon-cpu.json"
    bench "$port" keepalive > "$OUT/pm2-keepalive.json"
  else
    bench "$port" close > "$OUT/pm2-skewed.json"
  fi
  "$PM2" delete "pm2-$app" >/dev/null
done

# herd, fdpass and reuseport.
for mode in fdpass reuseport; do
  for app in app slow-app; do
    port=$(free_port)
    "$HERD" start "$PWD/bench-apps/node/$app.js" -i 2 --name "herd-$app" --mode "$mode" --port "$port" \
      --host 127.0.0.1 --env SLOW_INSTANCE=0 --env SLOW_MS=5 >/dev/null
    wait_port "$port"; sleep 1
    D=$(cat "$HERD_HOME/herd.pid"); t0=$(cpu_ticks "$D")
    if [ "$app" = app ]; then
      bench "$port" close > "$OUT/herd-$mode.json"
      t1=$(cpu_ticks "$D")
      echo "{\"daemon_cpu_ticks\": $((t1 - t0)), \"clk_tck\": $(getconf CLK_TCK)}" > "$OUT/herd-$mode-daemon-cpu.json"
      bench "$port" keepalive > "$OUT/herd-$mode-keepalive.json"
    else
      bench "$port" close > "$OUT/herd-$mode-skewed.json"
    fi
    "$HERD" delete "herd-$app" >/dev/null
  done
done

# Bare node, one process.
port=$(free_port)
PORT=$port node "$APP" & BARE=$!
wait_port "$port"; sleep 0.5
bench "$port" all > "$OUT/bare-node.json"
kill "$BARE"; wait "$BARE" 2>/dev/null || true; BARE=

python3 - "$OUT" <<'PY'
import json, sys, os
out = sys.argv[1]
def row(name, f):
    d = json.load(open(os.path.join(out, f)))
    for s in d["runs"][0]["scenarios"]:
        l = s["latency_us"]
        print(f"| {name} | {s['mode']} | {s['rps']:.0f} | {l['p50']} | {l['p99']} | {l['max']} | {s['fairness']['jain']:.4f} | {s['errors']['total']} |")
print("| server | scenario | req/s | p50 µs | p99 µs | max µs | Jain | errors |")
print("|---|---|---|---|---|---|---|---|")
for name, f in [("bare node (1 process)", "bare-node.json"), ("PM2 -i 2", "pm2.json"), ("PM2 -i 2", "pm2-keepalive.json"),
                ("herd fdpass -i 2", "herd-fdpass.json"), ("herd fdpass -i 2", "herd-fdpass-keepalive.json"),
                ("herd reuseport -i 2", "herd-reuseport.json"), ("herd reuseport -i 2", "herd-reuseport-keepalive.json"),
                ("PM2 -i 2, instance 0 +5 ms", "pm2-skewed.json"),
                ("herd fdpass -i 2, instance 0 +5 ms", "herd-fdpass-skewed.json"),
                ("herd reuseport -i 2, instance 0 +5 ms", "herd-reuseport-skewed.json")]:
    row(name, f)
for name, f in [("PM2", "pm2"), ("herd fdpass", "herd-fdpass"), ("herd reuseport", "herd-reuseport")]:
    c = json.load(open(os.path.join(out, f"{f}-daemon-cpu.json")))
    d = json.load(open(os.path.join(out, f"{f}.json")))
    conns = d["runs"][0]["scenarios"][0]["requests"]
    print(f"{name}: daemon CPU {c['daemon_cpu_ticks'] * 1e6 / c['clk_tck'] / conns:.1f} µs per connection (connection-per-request run)")
rps = lambda f: json.load(open(os.path.join(out, f)))["runs"][0]["scenarios"][0]["rps"]
print(f"herd fdpass / PM2, connection per request: {rps('herd-fdpass.json') / rps('pm2.json'):.2f}x")
PY
