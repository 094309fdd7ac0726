#!/usr/bin/env bash
# How far over its cap a leaking app gets before herd restarts it.
# bench-apps/node/leak.js leaks 20 MB/s under `--max-memory-restart 100M`
# (herd samples every 250 ms by default). An outside sampler reads the app's
# RSS every 5 ms from /proc and keeps the highest value seen before the
# restart. Prints one JSON object; PM2 7.0.4 let the same app reach 643 MiB
# (6.4x the cap) before restarting it, on the same machine class.
# Usage: bench-apps/measure-memory-cap.sh [rounds]   (needs node)
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=${HERD:-target/release/herd}
ROUNDS=${1:-3}
export HERD_HOME=$(mktemp -d /tmp/herd-memcap.XXXXXX)
trap '"$HERD" kill >/dev/null 2>&1 || true; rm -rf "$HERD_HOME"' EXIT
"$HERD" start bench-apps/node/leak.js --name leak --env LEAK_MB_PER_SEC=20 --max-memory-restart 100M >/dev/null
python3 - "$HERD" "$ROUNDS" <<'PY'
import json, subprocess, sys, time
herd, rounds = sys.argv[1], int(sys.argv[2])
page = 4096
def info():
    return json.loads(subprocess.run([herd, "list", "--json"], capture_output=True, text=True).stdout)[0]
def rss(pid):
    try:
        return int(open(f"/proc/{pid}/statm").read().split()[1]) * page
    except Exception:
        return None
peaks, seen_by_herd = [], []
for _ in range(rounds):
    i = info()
    pid, before = i["pid"], i["memory_restarts"]
    peak, deadline = 0, time.time() + 30
    while time.time() < deadline:
        r = rss(pid)
        if r is None:
            break
        peak = max(peak, r)
        time.sleep(0.005)
    while info()["memory_restarts"] == before and time.time() < deadline + 5:
        time.sleep(0.01)
    i = info()
    peaks.append(peak)
    seen_by_herd.append(i["last_memory_rss"])
cap = 100 * 1024 * 1024
print(json.dumps({"cap_bytes": cap, "leak_mb_per_s": 20, "check_interval_ms": 250,
                  "peak_rss_bytes": peaks, "peak_over_cap": [round(p / cap, 3) for p in peaks],
                  "rss_seen_by_herd_bytes": seen_by_herd}))
PY
