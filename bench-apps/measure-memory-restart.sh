#!/usr/bin/env bash
# herd's memory restart seen from outside (issue #20's memory scenario,
# checked without herd's own generator): the leaking Node app
# (bench-apps/node/leak.js, LEAK MB/s) under `herd start -i 2
# --max-memory-restart CAP` with wrk `Connection: close` load for SECS s,
# while a Python loop reads every worker's RSS from /proc every 10 ms.
# Prints wrk's summary and one JSON line: workers replaced, peak RSS,
# the longest one worker stayed above the cap.
# Usage: bench-apps/measure-memory-restart.sh [SECS] [CAP_MB] [LEAK]  (default 6 64 40)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench-apps/lib/wrk.sh
need_wrk
. bench-apps/lib/port.sh
SECS=${1:-6}; CAP=${2:-64}; LEAK=${3:-40}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
export HERD_HOME=$(mktemp -d)
trap '"$HERD" kill >/dev/null 2>&1 || true; rm -rf "$HERD_HOME"' EXIT
PORT=$(free_port)
"$HERD" start bench-apps/node/leak.js -i 2 --port "$PORT" \
  --max-memory-restart "${CAP}M" --env LEAK_MB_PER_SEC="$LEAK" >/dev/null
sleep 1
DAEMON=$("$HERD" ping --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
python3 - "$DAEMON" "$CAP" "$SECS" > "$HERD_HOME/watch.json" <<'PY' &
import os, sys, time, json
root, cap, secs = int(sys.argv[1]), int(sys.argv[2]) << 20, float(sys.argv[3])
page = os.sysconf("SC_PAGE_SIZE")
def children():
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError: continue
        if int(f[1]) == root: out.append((int(p), int(f[21]) * page))
    return out
first, seen, over, peak, longest = None, set(), {}, 0, 0.0
end = time.time() + secs
while time.time() < end:
    now = time.time(); kids = children()
    for pid, rss in kids:
        peak = max(peak, rss)
        if rss > cap:
            over.setdefault(pid, now); longest = max(longest, now - over[pid])
        else: over.pop(pid, None)
        seen.add(pid)
    if first is None: first = {p for p, _ in kids}
    over = {p: t for p, t in over.items() if p in {k for k, _ in kids}}
    time.sleep(0.01)
print(json.dumps({"cap_mb": cap >> 20, "replaced": len(seen - (first or set())),
                  "peak_rss_mb": round(peak / 2**20, 1), "longest_over_cap_ms": round(longest * 1000)}))
PY
# wrk prints "Socket errors" and "Non-2xx" lines only when there are some.
wrk -t2 -c32 -d"${SECS}s" -H 'Connection: close' "http://127.0.0.1:$PORT/" | grep -E "Requests/sec|requests in|Socket errors|Non-2xx"
wait
cat "$HERD_HOME/watch.json"
