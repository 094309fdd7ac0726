#!/usr/bin/env bash
# Time from `kill -9` of a worker to its replacement serving, for the
# built-in Rust hello worker in fdpass mode (-i 2): the replacement counts as
# serving once the daemon has it back in rotation (it said "ready") and a
# request answered by the new pid arrives. Prints JSON with every sample and
# the median. PM2 7.0.4 took 191-239 ms for the same (issue #6).
# Usage: bench-apps/measure-restart.sh [rounds]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
HERD=${HERD:-$PWD/target/release/herd}
ROUNDS=${1:-20}
export HERD_HOME=$(mktemp -d /tmp/herd-restart.XXXXXX)
trap '"$HERD" kill >/dev/null 2>&1 || true; rm -rf "$HERD_HOME"' EXIT
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
# --min-uptime 100: rounds are 300 ms apart, so each kill is a normal crash,
# not an unstable restart that the crash-loop guard would count.
"$HERD" start "$HERD" --interpreter none --name hello -i 2 --port "$PORT" --host 127.0.0.1 \
  --min-uptime 100 -- hello >/dev/null
python3 - "$HERD" "$PORT" "$ROUNDS" <<'PY'
import json, os, signal, socket, statistics, subprocess, sys, time
herd, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def lst():
    return json.loads(subprocess.run([herd, "list", "--json"], capture_output=True, text=True).stdout)
def ask():
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"x-worker:"):
            return int(line.split(b":")[1])
while not all(i["in_rotation"] for i in lst()):
    time.sleep(0.01)
samples = []
for _ in range(rounds):
    victim = lst()[0]["pid"]
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    deadline = time.time() + 10
    while True:
        l = lst()[0]
        if l["pid"] not in (None, victim) and l["in_rotation"]:
            break
        if time.time() > deadline:
            sys.exit(f"no replacement within 10 s: {l}")
        time.sleep(0.001)
    new = l["pid"]
    while ask() != new:
        if time.time() > deadline:
            sys.exit("the replacement never answered")
    samples.append(round((time.perf_counter() - t0) * 1000, 2))
    time.sleep(0.3)
print(json.dumps({"rounds": rounds, "ms": samples, "median_ms": statistics.median(samples),
                  "max_ms": max(samples)}))
PY
