#!/bin/sh
# Test helper for the log tests: prints, then idles (so it is not restarted).
#   print.sh lines N       N lines `out <i>` on stdout and `err <i>` on stderr
#   print.sh every MS      `tick <i>` on stdout every MS milliseconds, for ever
#   print.sh flood N       N numbered lines on stdout as fast as it can
#   print.sh big BYTES     one line of BYTES `x` on stdout
#   print.sh partial       `a`, `b` and an unterminated `c` on stdout
mode=$1
n=${2:-10}
i=0
case "$mode" in
lines)
    while [ "$i" -lt "$n" ]; do echo "out $i"; echo "err $i" >&2; i=$((i + 1)); done ;;
every)
    s=$(awk "BEGIN { print $n / 1000 }")
    while :; do echo "tick $i"; i=$((i + 1)); sleep "$s"; done ;;
flood)
    awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "flood line %08d padding padding padding\n", i }' ;;
big)
    head -c "$n" /dev/zero | tr '\0' x; echo ;;
partial)
    printf 'a\nb\nc' ;;
esac
exec sleep 3600
