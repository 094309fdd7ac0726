#!/usr/bin/env python3
"""Test helper: an fdpass worker that breaks herd's channel protocol.

usage: bad-worker.py garbage|oversized|fd-without-message|ready-then-garbage
It sends one bad message on HERD_CHANNEL_FD, then sleeps (the daemon must
close its channel and carry on serving everyone else)."""
import os, socket, sys, time

fd = int(os.environ["HERD_CHANNEL_FD"])
chan = socket.socket(fileno=fd)
how = sys.argv[1] if len(sys.argv) > 1 else "garbage"
if how == "garbage":
    chan.send(b"Z\x00garbage")
elif how == "oversized":
    chan.send(b"A" + b"\x00" * 70000)
elif how == "fd-without-message":
    r, w = os.pipe()
    socket.send_fds(chan, [b"R"], [r])
elif how == "ready-then-garbage":
    chan.send(b"R")
    time.sleep(0.2)
    chan.send(b"A\x01\x02")
print(f"sent {how}", flush=True)
# Report whether the daemon closed the channel (EOF), then idle.
chan.settimeout(10)
try:
    data = chan.recv(1024)
    print("channel closed by daemon" if data == b"" else f"got {data!r}", flush=True)
except Exception as e:  # noqa: BLE001 - report anything
    print(f"recv error {e}", flush=True)
while True:
    time.sleep(1)
