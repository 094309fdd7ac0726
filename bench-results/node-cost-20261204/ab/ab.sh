# usage: ab.sh ROUNDS BIN_A BIN_B ; runs fdpass A, fdpass B, reuseport B in rotating order
cd /work/main
. bench-apps/lib/port.sh
TICK=$(getconf CLK_TCK)
cpu_of() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
run() { local name=$1 bin=$2 mode=$3 port home d pids
  port=$(free_port); home=$(mktemp -d)
  HERD_HOME=$home $bin start ${APP:-bench-apps/node/app.js} -i 2 ${EXTRA:-} --mode $mode --port $port --name app ${TAIL:-} >/dev/null; sleep 1
  d=$(cat $home/herd.pid); pids=$(HERD_HOME=$home $bin list --json | python3 -c 'import json,sys;print(" ".join(str(i["pid"]) for i in json.load(sys.stdin)))')
  wrk -t2 -c64 -d2s -H 'Connection: close' http://127.0.0.1:$port/ >/dev/null
  d0=$(cpu_of $d); w0=$(cpu_of $pids)
  out=$(wrk -t2 -c64 -d5s -H 'Connection: close' http://127.0.0.1:$port/)
  d1=$(cpu_of $d); w1=$(cpu_of $pids)
  echo "== $r $name" >> ${RAW:-/dev/null}; echo "$out" >> ${RAW:-/dev/null}
  n=$(echo "$out" | sed -n 's/ *\([0-9]*\) requests in.*/\1/p'); rps=$(echo "$out" | sed -n 's/Requests\/sec: *//p')
  echo "$r $name rps=$rps daemon_us=$(python3 -c "print(round(($d1-$d0)/$TICK*1e6/$n,1))") app_us=$(python3 -c "print(round(($w1-$w0)/$TICK*1e6/$n,1))") $(echo "$out" | grep -o 'Socket errors.*')"
  HERD_HOME=$home $bin kill >/dev/null 2>&1; rm -rf $home
}
runs=("run fdpass-A $2 fdpass" "run fdpass-B $3 fdpass" "run reuseport-B $3 reuseport")
[ -n "$RUNS3" ] && runs=("run fdpass-pin $2 fdpass" "EXTRA=--no-pin run fdpass-nopin $2 fdpass" "EXTRA=--no-pin run reuseport-nopin $2 reuseport")
for r in $(seq $1); do for k in 0 1 2; do eval "${runs[$(((r + k - 1) % 3))]}"; done; done
