#!/usr/bin/env bash
# Issue #4: the hello worker on tokio (epoll) against the same worker on one
# io_uring ring (HERD_HELLO_IO=uring), fdpass mode, both scenarios,
# alternating PAIRS times (each run `herd bench --mode fdpass --rounds 3`).
# Raw JSON in bench-results/hello-io-<date>/; prints each run's medians.
# Usage: bench-apps/measure-hello-io.sh [pairs] [seconds]   (default 3 3)
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
SECS=${2:-3}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
OUT=bench-results/hello-io-$(date +%Y%m%d)
mkdir -p "$OUT"
for i in $(seq 1 "$PAIRS"); do
  for io in tokio uring; do
    HERD_HELLO_IO=$io "$HERD" bench -d "$SECS" --json --mode fdpass --rounds 3 --scenario all \
      > "$OUT/$io-run$i.json"
  done
done
python3 - "$OUT" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
print("| worker | run | conn/request median req/s | p99 µs | keep-alive median req/s | p99 µs |")
print("|---|---|---|---|---|---|")
for io in ["tokio", "uring"]:
    for f in sorted(glob.glob(os.path.join(out, f"{io}-run*.json"))):
        d = json.load(open(f))
        by = {}
        for r in d["runs"]:
            for s in r["scenarios"]:
                by.setdefault(s["mode"], []).append(s)
        med = lambda sc, k: statistics.median(k(s) for s in by[sc])
        run = os.path.basename(f)[:-5].split("run")[1]
        print(f"| {io} | {run} | {med('conn_per_request', lambda s: s['rps']):.0f} | {med('conn_per_request', lambda s: s['latency_us']['p99']):.0f} "
              f"| {med('keep_alive', lambda s: s['rps']):.0f} | {med('keep_alive', lambda s: s['latency_us']['p99']):.0f} |")
PY
