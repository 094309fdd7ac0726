#!/bin/bash
# prof.sh HERD OUTPREFIX [ENV...]: Node app fdpass -i 2, wrk 6s, perf record + perf stat the daemon
set -e
HERD=$1; OUT=$2; shift 2
cd /work/main
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
home=$(mktemp -d)
env "$@" HERD_HOME=$home $HERD start bench-apps/node/app.js -i 2 --port $port --name app >/dev/null
sleep 1
wrk -t2 -c64 -d2s -H 'Connection: close' http://127.0.0.1:$port/ >/dev/null
d=$(cat $home/herd.pid)
perf stat -e task-clock,context-switches,cpu-migrations -p $d -o $OUT.stat -- sleep 5 &
perf record -g -p $d -o $OUT.data -- sleep 5 >/dev/null 2>&1 &
sp=1
wrk -t2 -c64 -d5s -H 'Connection: close' http://127.0.0.1:$port/ > $OUT.wrk
wait
HERD_HOME=$home $HERD kill >/dev/null 2>&1 || true
grep Requests/sec $OUT.wrk; cat $OUT.stat | grep -E 'task-clock|context'
