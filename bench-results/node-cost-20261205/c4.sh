#!/bin/bash
# c4.sh ROUNDS CONNS THREADS: head fdpass / slice fdpass / reuseport; wrk --latency
cd /work/main
run() { # name herd mode env...
  local name=$1 herd=$2 mode=$3; shift 3
  local port home
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'); home=$(mktemp -d)
  env "$@" HERD_HOME=$home $herd start bench-apps/node/app.js -i 2 --mode $mode --port $port --name app >/dev/null
  sleep 1
  wrk -t$T -c$C -d2s -H 'Connection: close' http://127.0.0.1:$port/ >/dev/null
  d=$(cat $home/herd.pid); d0=$(awk '{print $14+$15}' /proc/$d/stat)
  out=$(wrk -t$T -c$C -d5s --latency -H 'Connection: close' http://127.0.0.1:$port/)
  d1=$(awk '{print $14+$15}' /proc/$d/stat)
  n=$(echo "$out" | grep -oP '\d+(?= requests in)')
  echo "== $name"; echo "$out" >> $RAW
  echo "$name rps=$(echo "$out" | grep -oP 'Requests/sec:\s+\K[\d.]+') p50=$(echo "$out" | awk '$1=="50%"{print $2}') p99=$(echo "$out" | awk '$1=="99%"{print $2}') daemon_us=$(python3 -c "print(round(($d1-$d0)/100*1e6/$n,1))")"
  HERD_HOME=$home $herd kill >/dev/null 2>&1 || true
}
R=$1; C=$2; T=$3; RAW=${RAW:-/dev/null}
for r in $(seq 1 $R); do
  run head /tmp/herd-head fdpass
  run slice /tmp/herd-slice fdpass HERD_ACCEPT_SLICE_US=${SLICE:-100}
  run reuse /tmp/herd-head reuseport
done | grep -v '^=='
