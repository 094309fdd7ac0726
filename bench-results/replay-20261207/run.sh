#!/bin/bash
# The 2026-12-07 measurements of #15 (replays), in order, from the repo root:
#   bash bench-results/replay-20261207/run.sh
D=bench-results/replay-20261207
cargo build --release -q
git rev-parse --short HEAD > $D/build.txt
# kill -9 every 0.4 s (Python client, 30,000 requests over 16 connections):
# the Node app, 7 rounds: fdpass (default), reuseport, fdpass with replays off.
for r in 1 2 3 4 5 6 7; do
  for arm in fdpass reuseport fdpass-noreplay; do
    case $arm in
      fdpass-noreplay) out=$(HERD_REPLAY=0 bash bench-apps/measure-chaos.sh bench-apps/node/app.js fdpass 30000 | tr '\n' ' ');;
      *) out=$(bash bench-apps/measure-chaos.sh bench-apps/node/app.js $arm 30000 | tr '\n' ' ');;
    esac
    echo "round $r node $arm: $out"
  done
done > $D/chaos-node-raw.txt 2>&1
# the Rust hello worker, 2 rounds
for r in 1 2; do
  for arm in fdpass reuseport; do
    echo "round $r hello $arm: $(bash bench-apps/measure-chaos.sh "target/release/herd hello" $arm 30000 | tr '\n' ' ')"
  done
done > $D/chaos-hello-raw.txt 2>&1
# wrk -t2 -c64 Connection: close, 5 rounds, order rotating: fdpass as shipped,
# fdpass without replays and deferred accepts (the build before), reuseport, bare node
RAW=$D/wrk-raw.txt RUNS="fdpass fdpass:HERD_REPLAY=0,HERD_DEFER_ACCEPT=0 reuseport bare" \
  bash bench-apps/measure-node-wrk.sh 5 5 > $D/wrk.jsonl 2>&1
# fairness on a fresh daemon, Python client, 3,000 requests over 16 connections
RAW=$D/fair-node.jsonl bash bench-apps/measure-fair-start.sh bench-apps/node/app.js 10 1 > $D/fair-node.txt 2>&1
RAW=$D/fair-hello.jsonl bash bench-apps/measure-fair-start.sh "target/release/herd hello" 5 1 > $D/fair-hello.txt 2>&1
# one Node worker 5 ms slower, 2 rounds
APP=node RAW=$D/skew-node.jsonl bash bench-apps/measure-skew.sh 2 4 5 > $D/skew-node.txt 2>&1
echo done > $D/done
