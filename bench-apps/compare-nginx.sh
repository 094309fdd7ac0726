#!/usr/bin/env bash
# Same-run comparison of herd's built-in hello worker (fdpass and reuseport,
# -i 2) with nginx (2 workers, `listen ... reuseport`, `return 200`), all
# loaded by herd's own load generator. Installs nginx with apt-get when it is
# missing (never assumed). Raw JSON goes to bench-results/compare-nginx-<date>/.
# ROUNDS=N alternating rounds (default 3), compared within each round.
# Usage: bench-apps/compare-nginx.sh [seconds-per-scenario]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
  echo "installing nginx with apt-get ..." >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q nginx-light >/dev/null 2>&1 || $SUDO apt-get install -y -q nginx >/dev/null
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
OUT=bench-results/compare-nginx-$(date +%Y%m%d)
mkdir -p "$OUT"
TMP=$(mktemp -d /tmp/herd-vs-nginx.XXXXXX)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > "$TMP/nginx.conf" <<CONF
worker_processes 2;
worker_cpu_affinity auto;
pid $TMP/nginx.pid;
error_log $TMP/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$PORT reuseport;
    location / { add_header X-Worker \$pid; return 200 "hello\n"; }
  }
}
CONF
cleanup() { [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true; sleep 0.2; rm -rf "$TMP"; }
trap cleanup EXIT
# Alternating rounds (nginx, then herd), compared within each round: this
# machine's speed drifts more between minutes than the servers differ.
ROUNDS=${ROUNDS:-3}
for i in $(seq "$ROUNDS"); do
  "$NGINX" -c "$TMP/nginx.conf" -p "$TMP" 2>/dev/null
  for _ in $(seq 100); do curl -s -m 1 "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.05; done
  "$HERD" bench --target "127.0.0.1:$PORT" -d "$SECS" --json > "$OUT/nginx-$i.json"
  kill "$(cat "$TMP/nginx.pid")"; rm -f "$TMP/nginx.pid"; sleep 0.3
  "$HERD" bench -i 2 --mode all -d "$SECS" --json > "$OUT/herd-$i.json"
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, os, sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
print("| round | server | scenario | req/s | p50 µs | p99 µs | Jain | daemon µs/conn |")
print("|---|---|---|---|---|---|---|---|")
ratios = {}
for i in range(1, rounds + 1):
    nginx = {}
    for f in [f"nginx-{i}.json", f"herd-{i}.json"]:
        d = json.load(open(os.path.join(out, f)))
        for r in d["runs"]:
            name = "nginx 2 workers reuseport" if r["mode"] == "external" else f"herd hello {r['mode']}"
            for s in r["scenarios"]:
                l = s["latency_us"]
                cpu = s.get("daemon_cpu_us_per_conn")
                print(f"| {i} | {name} | {s['mode']} | {s['rps']:.0f} | {l['p50']} | {l['p99']} | {s['fairness']['jain']:.4f} | {'-' if cpu is None else f'{cpu:.1f}'} |")
                if r["mode"] == "external":
                    nginx[s["mode"]] = s["rps"]
                else:
                    ratios.setdefault((r["mode"], s["mode"]), []).append(s["rps"] / nginx[s["mode"]])
print()
for (mode, scenario), v in ratios.items():
    print(f"herd {mode} / nginx, {scenario}: median {statistics.median(v):.3f} over {len(v)} rounds ({', '.join(f'{x:.3f}' for x in v)})")
PY
