set -e
cd /work/main
HERD=${HERD:-$PWD/target/release/herd}
. bench-apps/lib/port.sh
port=$(free_port); home=$(mktemp -d)
HERD_HOME=$home $HERD start ${APP:-bench-apps/node/app.js} -i 2 --port $port --name app ${TAIL:-} >/dev/null
sleep 1
d=$(cat $home/herd.pid)
w=$(HERD_HOME=$home $HERD list --json | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["pid"])')
wrk -t2 -c64 -d2s -H 'Connection: close' http://127.0.0.1:$port/ >/dev/null
timeout 8 strace -c -f -p $d -o /tmp/sc-daemon.txt & s1=$!
timeout 8 strace -c -f -p $w -o /tmp/sc-worker.txt & s2=$!
sleep 1
wrk -t2 -c64 -d5s -H 'Connection: close' http://127.0.0.1:$port/ | grep -E "requests in|Requests/sec"
wait $s1 $s2 || true
HERD_HOME=$home $HERD list --json | python3 -c 'import json,sys;print([i.get("pid") for i in json.load(sys.stdin)])'
HERD_HOME=$home $HERD kill >/dev/null 2>&1; rm -rf $home
head -25 /tmp/sc-daemon.txt; head -25 /tmp/sc-worker.txt
