#!/bin/bash
# ab.sh ROUNDS OUT: head fdpass / new fdpass / reuseport (new), rotating
cd /work/main
for r in $(seq 1 $1); do
  for who in head new reuse; do
    case $who in
      head) HERD=/tmp/herd-head RUNS=fdpass bash bench-apps/measure-node-wrk.sh 1 5 | sed "s/^{/{\"who\":\"head\",/";;
      new) HERD=/tmp/herd-new RUNS=fdpass bash bench-apps/measure-node-wrk.sh 1 5 | sed "s/^{/{\"who\":\"new\",/";;
      reuse) HERD=/tmp/herd-new RUNS=reuseport bash bench-apps/measure-node-wrk.sh 1 5 | sed "s/^{/{\"who\":\"reuse\",/";;
    esac
  done
done | tee $2 | python3 -c '
import json,sys
for l in sys.stdin:
  try: d=json.loads(l)
  except: print(l,end=""); continue
  print(d["who"],d["run"],d["rps"],d["daemon_cpu_us_per_req"],d["app_cpu_us_per_req"], d["socket_errors"])'
