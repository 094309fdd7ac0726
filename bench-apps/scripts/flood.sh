#!/bin/sh
# Prints N (default 1,000,000) numbered lines as fast as awk can, then DONE,
# then idles. For bench-apps/measure-logs.sh.
awk -v n="${1:-1000000}" 'BEGIN { for (i = 0; i < n; i++) printf "flood line %08d padding padding padding\n", i; print "DONE" }'
exec sleep 3600
