#!/usr/bin/env bash
# What herd's metrics cost the daemon per connection, in instructions
# (valgrind's callgrind counts them: the same for the same work, whatever
# else the machine does, where wall-clock A/B runs on a 2-core VM vary by
# ±20 %). The daemon runs under callgrind (HERD_IO=epoll: valgrind does not
# emulate io_uring), the hello worker -i 2 natively; a plain Python client
# sends N connection-per-request requests; the daemon's instruction count
# at N=LOW and N=HIGH gives instructions per connection, with the
# histograms recording (default) and with HERD_METRICS=0.
# Usage: bench-apps/measure-metrics-cost.sh [LOW] [HIGH]   (default 1000 4000)
set -euo pipefail
cd "$(dirname "$0")/.."
LOW=${1:-1000}
HIGH=${2:-4000}
HERD=$PWD/target/release/herd
[ -x "$HERD" ] || cargo build --release
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
one() { # METRICS(on|off) N
  local metrics=$1 n=$2 home port out
  home=$(mktemp -d); port=$(free_port); out=$home/callgrind.out
  local env=(HERD_HOME="$home" HERD_IO=epoll)
  [ "$metrics" = off ] && env+=(HERD_METRICS=0)
  env "${env[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" -q "$HERD" daemon >/dev/null 2>&1 &
  local vg=$!
  for _ in $(seq 300); do [ -S "$home/herd.sock" ] && break; sleep 0.1; done
  env "${env[@]}" "$HERD" start "$HERD" --interpreter none --name hello -i 2 --port "$port" --host 127.0.0.1 -- hello >/dev/null
  python3 - "$port" "$n" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 60
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.1)
ok = 0
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    buf = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    s.close()
    ok += buf.startswith(b"HTTP/1.1 200")
assert ok == n, (ok, n)
PY
  env "${env[@]}" "$HERD" kill >/dev/null 2>&1 || true
  wait "$vg" 2>/dev/null || true
  # The first connection (the probe) is one more than n: the same in every run.
  local ir
  ir=$(cat "$out"* | awk '/^summary:/ {s += $2} /^totals:/ {t += $2} END {print (s ? s : t)}')
  rm -rf "$home"
  echo "$ir"
}
for metrics in on off; do
  lo=$(one "$metrics" "$LOW")
  hi=$(one "$metrics" "$HIGH")
  python3 -c "import json;print(json.dumps({'metrics':'$metrics','low':$LOW,'high':$HIGH,'ir_low':$lo,'ir_high':$hi,'instructions_per_conn':round(($hi-$lo)/($HIGH-$LOW),1)}))"
done
