#!/usr/bin/env bash
# Logging costs (issue #8):
#  1. throughput: an app prints 1,000,000 lines as fast as it can; lines/s
#     writing straight to a file vs through herd (plain, `--time`,
#     `--log-type json`), and the daemon's CPU time for it. Two writers:
#     awk (block-buffered, the cheapest writer) and Node's console.log (one
#     write per line, what apps do). PM2 too when it installs.
#  2. `herd logs --lines 100 --nostream` latency on a 1 GB log file (and
#     `tail -n 100`, and `pm2 logs` on the same file when PM2 is there).
# Raw JSON goes to bench-results/logs-<date>.json; a summary is printed.
# Usage: bench-apps/measure-logs.sh [lines] [log-size-MB]   (defaults 1000000 1024)
# PM2=0 skips PM2. Needs node for the Node writer and PM2.
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=${HERD:-$PWD/target/release/herd}
LINES=${1:-1000000}
BIG_MB=${2:-1024}
TMP=$(mktemp -d /tmp/herd-logs-bench.XXXXXX)
export HERD_HOME=$TMP/herd-home PM2_HOME=$TMP/pm2-home
PM2_BIN=""
cleanup() {
  "$HERD" kill >/dev/null 2>&1 || true
  [ -n "$PM2_BIN" ] && "$PM2_BIN" kill >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p bench-results
. bench-apps/lib/pm2.sh
PM2_BIN=$(install_pm2 "$TMP/npm")
python3 - "$HERD" "$LINES" "$BIG_MB" "$TMP" "$PM2_BIN" > "bench-results/logs-$(date +%Y%m%d).json" <<'PY'
import json, os, shutil, statistics, subprocess, sys, time
herd, lines, big_mb, tmp, pm2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
root = os.getcwd()
tick = os.sysconf("SC_CLK_TCK")
node = shutil.which("node")
writers = {"awk": [f"{root}/bench-apps/scripts/flood.sh", str(lines)]}
if node:
    writers["node"] = [node, f"{root}/bench-apps/node/flood.js", str(lines)]

def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

def tail_has_done(path):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 200))
            return b"DONE" in f.read()
    except FileNotFoundError:
        return False

def wait_done(path, limit=300):
    deadline = time.time() + limit
    while not tail_has_done(path):
        if time.time() > deadline:
            raise SystemExit(f"no DONE in {path}")
        time.sleep(0.005)

def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

def herd_pid():
    return int(open(os.path.join(os.environ["HERD_HOME"], "herd.pid")).read())

def children_cpu():
    # CPU of reaped children (the direct writers) from our own rusage.
    r = os.times()
    return r.children_user + r.children_system

results = {"lines": lines, "throughput": [], "tail": []}
run([herd, "ping"])
for wname, argv in writers.items():
    # Straight to a file.
    out = f"{tmp}/direct-{wname}.log"
    t0, c0 = time.time(), children_cpu()
    with open(out, "wb") as f:
        p = subprocess.Popen(argv, stdout=f)
        wait_done(out)
        dt = time.time() - t0
        p.kill(); p.wait()
    results["throughput"].append({"writer": wname, "via": "file", "seconds": round(dt, 3),
                                  "lines_per_s": round(lines / dt)})
    os.remove(out)
    for mode, flags in [("plain", []), ("time", ["--time"]), ("json", ["--log-type", "json"])]:
        name = f"{wname}-{mode}"
        out = f"{tmp}/{name}.log"
        d0 = cpu_s(herd_pid())
        t0 = time.time()
        run([herd, "start", argv[0], "--name", name, "-o", out, "--no-autorestart", *flags, "--", *argv[1:]])
        wait_done(out)
        dt = time.time() - t0
        d1 = cpu_s(herd_pid())
        run([herd, "delete", name])
        size = os.path.getsize(out)
        os.remove(out)
        results["throughput"].append({"writer": wname, "via": f"herd {mode}", "seconds": round(dt, 3),
                                      "lines_per_s": round(lines / dt), "bytes": size,
                                      "daemon_cpu_s": round(d1 - d0, 3),
                                      "daemon_cpu_ns_per_line": round((d1 - d0) * 1e9 / lines)})
    if pm2:
        out = f"{tmp}/pm2-{wname}.log"
        run([pm2, "ping"])
        god = int(open(os.path.join(os.environ["PM2_HOME"], "pm2.pid")).read())
        d0, t0 = cpu_s(god), time.time()
        interp = ["--interpreter", "none"] if wname == "awk" else []
        run([pm2, "start", argv[0] if wname == "awk" else argv[1], "--name", f"pm2-{wname}", "-o", out,
             "--no-autorestart", *interp, "--", argv[-1]])
        wait_done(out)
        dt, d1 = time.time() - t0, cpu_s(god)
        run([pm2, "delete", f"pm2-{wname}"])
        results["throughput"].append({"writer": wname, "via": "pm2 (fork mode)", "seconds": round(dt, 3),
                                      "lines_per_s": round(lines / dt),
                                      "daemon_cpu_s": round(d1 - d0, 3),
                                      "daemon_cpu_ns_per_line": round((d1 - d0) * 1e9 / lines)})
        os.remove(out)

# A 1 GB log file, then the last 100 lines of it.
big = f"{tmp}/big.log"
line = b"x" * 99 + b"\n"
block = line * 10_000
with open(big, "wb") as f:
    for _ in range(big_mb * 1024 * 1024 // len(block)):
        f.write(block)
    f.write(b"the last line\n")
size = os.path.getsize(big)
run([herd, "start", f"{root}/bench-apps/scripts/sleep.sh", "--name", "big", "-o", big])

def timed(cmd, n=20):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        o = subprocess.run(cmd, check=True, capture_output=True).stdout
        ts.append((time.perf_counter() - t0) * 1000)
    return ts, o

for label, cmd in [("herd logs --lines 100 --nostream", [herd, "logs", "big", "--lines", "100", "--nostream", "--out", "--raw"]),
                   ("tail -n 100", ["tail", "-n", "100", big])]:
    ts, o = timed(cmd)
    assert o.count(b"\n") >= 100, o[-200:]
    results["tail"].append({"what": label, "file_bytes": size, "median_ms": round(statistics.median(ts), 2),
                            "max_ms": round(max(ts), 2), "runs": len(ts)})
if pm2:
    run([pm2, "start", f"{root}/bench-apps/scripts/sleep.sh", "--name", "big", "-o", big, "--interpreter", "none"])
    ts, o = timed([pm2, "logs", "big", "--lines", "100", "--nostream", "--out", "--raw"], n=5)
    results["tail"].append({"what": "pm2 logs --lines 100 --nostream", "file_bytes": size,
                            "median_ms": round(statistics.median(ts), 2), "max_ms": round(max(ts), 2), "runs": len(ts)})
    run([pm2, "delete", "big"])
json.dump(results, sys.stdout, indent=1)
for r in results["throughput"]:
    extra = f", daemon {r['daemon_cpu_ns_per_line']} ns/line" if "daemon_cpu_ns_per_line" in r else ""
    print(f"{r['writer']:5} {r['via']:16} {r['lines_per_s']:>10,} lines/s{extra}", file=sys.stderr)
for r in results["tail"]:
    print(f"{r['what']:35} {r['file_bytes'] / 2**30:.2f} GiB: median {r['median_ms']} ms, max {r['max_ms']} ms", file=sys.stderr)
PY
