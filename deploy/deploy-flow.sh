#!/usr/bin/env bash
# The deploy flow from PM2's docs, unchanged but for the binary's name:
# stop the app, start the ecosystem file with the production environment,
# show the status. (The first `stop` fails when the app is not there yet,
# as with PM2; the script goes on, as PM2's does.)
herd stop api-server
herd start ecosystem.config.js --env production
herd status
