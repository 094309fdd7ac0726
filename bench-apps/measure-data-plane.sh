#!/usr/bin/env bash
# The data-plane numbers of issue #4 in one run, raw JSON kept:
#   - Rust hello, every mode, 5 alternating rounds, 32 and 64 connections
#     (each mode's median and its median ratio to reuseport in the same round)
#   - the PM2 docs' Node app at -i 2, every mode, 3 alternating rounds
#   - one worker 5 ms slower: least-conn and least-time against reuseport
#   - multishot against single-shot accept
#   - herd vs PM2 and herd vs nginx (the two compare-* scripts)
# Writes bench-results/data-plane-<date>/ and prints a summary.
# Usage: bench-apps/measure-data-plane.sh [seconds-per-scenario]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-3}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
OUT=bench-results/data-plane-$(date +%Y%m%d)
mkdir -p "$OUT"
b() { "$HERD" bench -d "$SECS" --json "$@"; }

b --mode all --rounds 5 > "$OUT/rust-modes-c32.json"
b --mode all --rounds 5 --scenario close -c 64 > "$OUT/rust-modes-close-c64.json"
b --app bench-apps/node/app.js -i 2 --mode all --rounds 3 --scenario close > "$OUT/node-modes-close.json"
for p in least-conn least-time; do
  b --mode all --policy "$p" --scenario close --skew-ms 5 > "$OUT/rust-skew5-$p.json"
done
b --mode fdpass --scenario close --rounds 3 > "$OUT/rust-multishot.json"
b --mode fdpass --scenario close --rounds 3 --no-multishot > "$OUT/rust-single-shot.json"

python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
def load(f):
    return json.load(open(os.path.join(out, f)))
print("| run | mode | scenario | median req/s | × reuseport (same round) | median daemon µs/conn |")
print("|---|---|---|---|---|---|")
for f in ["rust-modes-c32.json", "rust-modes-close-c64.json", "node-modes-close.json",
          "rust-multishot.json", "rust-single-shot.json"]:
    d = load(f)
    for m in d["summary"]["medians"]:
        ratio = m["vs_reuseport"]
        cpu = m["daemon_cpu_us_per_conn"]
        print(f"| {f[:-5]} (c{d['config']['connections']}) | {m['mode']} | {m['scenario']} | {m['rps']:.0f} | "
              f"{'-' if ratio is None else f'{ratio:.3f}'} | {'-' if cpu is None else f'{cpu:.2f}'} |")
print()
print("| skewed (instance 0 +5 ms) | mode | req/s | p50 µs | p99 µs | to slow / fast worker |")
print("|---|---|---|---|---|---|")
for p in ["least-conn", "least-time"]:
    d = load(f"rust-skew5-{p}.json")
    for r in d["runs"]:
        s = r["scenarios"][0]
        w = sorted(s["per_worker"].values())
        print(f"| {p} run | {r['mode']} | {s['rps']:.0f} | {s['latency_us']['p50']} | {s['latency_us']['p99']} | {w[0]} / {w[-1]} |")
PY
bash bench-apps/compare-pm2.sh 5 | tail -16
bash bench-apps/compare-nginx.sh 4 | tail -30
