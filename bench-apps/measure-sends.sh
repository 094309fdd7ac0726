#!/usr/bin/env bash
# How the acceptors' sends are made, and what each step buys (issue #4):
# the Rust hello worker, fdpass against reuseport, connection per request,
# alternating three builds of the send path PAIRS times (each run is
# `herd bench --mode all --rounds 3`):
#   each   HERD_CORK=0        one sendmsg + close per connection
#   batch  HERD_RING_SEND=0   one sendmsg per worker per accept wake-up
#   ring   (the default)      the same messages, and the closes, submitted
#                             through the acceptor's io_uring ring
# Then one `perf stat` of syscalls and context switches per variant (if perf
# is installed). Raw output in bench-results/sends-<date>/.
# Usage: bench-apps/measure-sends.sh [pairs] [seconds]   (default 3 3)
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
SECS=${2:-3}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
OUT=bench-results/sends-$(date +%Y%m%d)
mkdir -p "$OUT"
variant_env() {
  case $1 in
    each) echo "HERD_CORK=0" ;;
    batch) echo "HERD_RING_SEND=0" ;;
    ring) echo "HERD_RING_SEND=1" ;;
  esac
}
for i in $(seq 1 "$PAIRS"); do
  for v in each batch ring; do
    env $(variant_env $v) "$HERD" bench -d "$SECS" --json --mode all --rounds 3 --scenario close \
      > "$OUT/$v-run$i.json"
  done
done
if command -v perf >/dev/null; then
  for v in each batch ring; do
    env $(variant_env $v) perf stat -a -e 'syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg,syscalls:sys_enter_close,context-switches' \
      "$HERD" bench -d "$SECS" --mode fdpass --scenario close > "$OUT/perf-stat-$v.txt" 2>&1 || true
  done
fi
python3 - "$OUT" <<'PY'
import glob, json, os, re, sys
out = sys.argv[1]
print("| sends | run | fdpass median req/s | × reuseport (median of paired rounds) | daemon µs/conn |")
print("|---|---|---|---|---|")
for v in ["each", "batch", "ring"]:
    for f in sorted(glob.glob(os.path.join(out, f"{v}-run*.json"))):
        d = json.load(open(f))
        for m in d["summary"]["medians"]:
            if m["mode"].startswith("fdpass"):
                run = os.path.basename(f)[:-5].split("run")[1]
                print(f"| {v} | {run} | {m['rps']:.0f} | {m['vs_reuseport']:.3f} | {m['daemon_cpu_us_per_conn']:.2f} |")
for v in ["each", "batch", "ring"]:
    p = os.path.join(out, f"perf-stat-{v}.txt")
    if not os.path.exists(p):
        continue
    t = open(p).read()
    conns = sum(int(x) for x in re.findall(r"pid \d+: (\d+)", t))
    counts = {m.group(2).split(":")[-1]: int(m.group(1).replace(",", "")) for m in re.finditer(r"^\s*([\d,]+)\s+(\S+)", t, re.M)}
    per = ", ".join(f"{k} {c / max(conns, 1):.2f}" for k, c in counts.items())
    print(f"{v}: per connection ({conns} connections): {per}")
PY
