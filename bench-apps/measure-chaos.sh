#!/bin/bash
# kill -9 under load (#15): a random worker of APP -i 2 killed every 0.4 s while the outside
# client sends REQS connection-per-request requests; prints kills, failures by cause, and
# what herd reports (saved_on_death, replayed_on_death, lost_started, cut_after_write).
# usage: measure-chaos.sh APP MODE REQS [start flags]   (APP: a script, or a command such as "target/release/herd hello")
#   CLIENT=wrk: wrk -t2 -c16 -H 'Connection: close' for REQS seconds instead (a second outside
#   client: its socket errors and non-2xx answers are the failures)
APP=$1; MODE=$2; REQS=$3; shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
H=$ROOT/target/release/herd
export HERD_HOME=$(mktemp -d)
. "$ROOT/bench-apps/lib/port.sh"
PORT=$(free_port)
$H start "$APP" -i 2 --port $PORT --mode $MODE "$@" >/dev/null 2>&1 || echo start failed
for k in $(seq 50); do curl -s -o /dev/null localhost:$PORT/ && break; sleep 0.1; done
if [ "${CLIENT:-}" = wrk ]; then
  . "$ROOT/bench-apps/lib/wrk.sh"; need_wrk
  wrk -t2 -c16 -d${REQS}s -H 'Connection: close' http://127.0.0.1:$PORT/ > $HERD_HOME/wrk.txt 2>&1 &
else
  python3 $ROOT/bench-apps/scripts/http-client.py $PORT --requests $REQS --connections 16 > $HERD_HOME/client.json &
fi
CL=$!
kills=0
sleep 0.3
while [ -e /proc/$CL ] && ! grep -q . $HERD_HOME/client.json 2>/dev/null \
    && ! grep -q "requests in" $HERD_HOME/wrk.txt 2>/dev/null; do
  pid=$($H list --json 2>/dev/null | python3 -c 'import json,sys,random; l=[i["pid"] for i in json.load(sys.stdin) if i.get("pid")]; print(random.choice(l) if l else "")')
  [ -n "$pid" ] && kill -9 $pid 2>/dev/null && kills=$((kills+1))
  sleep 0.4
done
wait $CL
if [ "${CLIENT:-}" = wrk ]; then
  echo "kills $kills wrk: $(grep -E 'requests in|Socket errors|Non-2xx' $HERD_HOME/wrk.txt | tr -s ' ' | tr '\n' ';')"
else
echo "kills $kills $(cat $HERD_HOME/client.json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("ok", d["ok"], "failed", d["failed"], d["fails"])')"
fi
$H list --json | python3 -c 'import json,sys; l=json.load(sys.stdin); print("saved", sum(i.get("saved_on_death",0) for i in l), "replayed", sum(i.get("replayed_on_death",0) for i in l), "lost_started", sum(i.get("lost_started",0) for i in l), "cut_after_write", sum(i.get("cut_after_write",0) for i in l))'
$H kill >/dev/null 2>&1
rm -rf $HERD_HOME
