#!/usr/bin/env bash
# What batching the acceptors' sends buys (issue #4): the Rust hello worker,
# fdpass against reuseport, connection per request, with HERD_CORK=0 (one
# sendmsg per connection) and HERD_CORK=1 (the default: one per worker per
# accept wake-up), alternating PAIRS times; each run is `--rounds 3`.
# Raw JSON in bench-results/cork-<date>/; prints each run's medians.
# Usage: bench-apps/measure-cork.sh [pairs] [seconds]   (default 3 3)
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
SECS=${2:-3}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
OUT=bench-results/cork-$(date +%Y%m%d)
mkdir -p "$OUT"
for i in $(seq 1 "$PAIRS"); do
  for cork in 0 1; do
    HERD_CORK=$cork "$HERD" bench -d "$SECS" --json --mode all --rounds 3 --scenario close \
      > "$OUT/cork$cork-run$i.json"
  done
done
python3 - "$OUT" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
print("| HERD_CORK | run | fdpass median req/s | × reuseport (median of paired rounds) | daemon µs/conn |")
print("|---|---|---|---|---|")
for f in sorted(glob.glob(os.path.join(out, "cork*-run*.json"))):
    d = json.load(open(f))
    name = os.path.basename(f)[:-5]
    for m in d["summary"]["medians"]:
        if m["mode"].startswith("fdpass"):
            print(f"| {name[4]} | {name.split('run')[1]} | {m['rps']:.0f} | {m['vs_reuseport']:.3f} | {m['daemon_cpu_us_per_conn']:.2f} |")
PY
