#!/bin/sh
# Test helper: a long-running fork-mode app that prints who it is.
echo "started pid=$$ instance=$HERD_INSTANCE node_app_instance=$NODE_APP_INSTANCE name=$HERD_APP_NAME args=$*"
while true; do sleep 1; done
