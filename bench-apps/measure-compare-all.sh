#!/usr/bin/env bash
# The published `herd bench` reports (issue #20), one sitting: every
# scenario against every peer for the built-in hello worker and for the
# PM2 docs' Node app (bench-apps/node/slow-app.js: the same app with the
# skew and leak knobs, both off outside those scenarios), an open-loop
# sweep of both, and the two scaling curves. Reports (report.md, SVG
# charts, report.json) and the terminal tables go under OUT.
# Usage: bench-apps/measure-compare-all.sh [OUT] [ROUNDS] [SECONDS]
#   (default bench-results/compare-$(date +%Y%m%d) 3 4)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-results/compare-$(date +%Y%m%d)}
ROUNDS=${2:-3}
SECS=${3:-4}
bash bench-apps/install-peers.sh
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
mkdir -p "$OUT"
lscpu > "$OUT/lscpu.txt"
ALL=close,keepalive,skew,crash,reload,scale,memory
run() { # NAME ARGS...: one report under OUT/NAME, its table in OUT/NAME.txt
  local name=$1; shift
  "$HERD" bench -i 2 "$@" --report "$OUT/$name" > "$OUT/$name.txt" 2> "$OUT/$name.err"
}
run hello -d "$SECS" --rounds "$ROUNDS" --compare --scenario "$ALL"
run node -d "$SECS" --rounds "$ROUNDS" --compare --scenario "$ALL" --app bench-apps/node/slow-app.js
run hello-sweep -d 2 --compare fdpass,reuseport,shared,nginx --scenario close --sweep 10ms
run node-sweep -d 2 --compare fdpass,reuseport,shared,pm2,node-cluster,node --scenario close \
  --sweep 20ms --app bench-apps/node/slow-app.js
"$HERD" bench -d 3 --compare fdpass,reuseport --scenario close --curve workers \
  --report "$OUT/curve-workers" > "$OUT/curve-workers.txt" 2> "$OUT/curve-workers.err"
"$HERD" bench -i 2 -d 3 --compare fdpass,reuseport --scenario keepalive --curve connections \
  --report "$OUT/curve-connections" > "$OUT/curve-connections.txt" 2> "$OUT/curve-connections.err"
echo "reports in $OUT"
