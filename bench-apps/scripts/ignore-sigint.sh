#!/bin/sh
# Test helper: ignores SIGINT (and so does its sleep), so only the SIGKILL
# sent after kill_timeout can stop it.
trap '' INT
echo "ignoring SIGINT, pid=$$"
while true; do sleep 1; done
