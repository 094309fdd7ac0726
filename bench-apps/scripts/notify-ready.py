#!/usr/bin/env python3
"""Test helper: sends sd_notify READY=1 to $NOTIFY_SOCKET once the file
named by $READY_FILE exists (from a child process, as a wrapper's worker
would), then idles."""
import os, socket, sys, time

path = os.environ.get("READY_FILE")
while path and not os.path.exists(path):
    time.sleep(0.01)
if os.fork() == 0:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"READY=1\nSTATUS=serving", os.environ["NOTIFY_SOCKET"])
    print("notified", flush=True)
    os._exit(0)
os.wait()
while True:
    time.sleep(1)
