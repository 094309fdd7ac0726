#!/usr/bin/env python3
"""Test helper: an fdpass worker whose first process never reads its channel.

The first process to start (it creates the file named by LAZY_MARKER) says
it is ready and then reads nothing: the connections sent to it stay in its
channel, and it does not see `S`. It exits on SIGINT. Every later process
(a reload's replacement) serves each connection one HTTP answer, with
`Connection: close`, and reports the close with `D`.

With LAZY_TAKE=1 the first process does take its connections off the
channel, and keeps them open without reading or writing a byte: what the
daemon's copies are for (a worker that dies holding connections it never
touched loses none of them)."""
import os, signal, socket, struct, sys

chan = socket.socket(fileno=int(os.environ["HERD_CHANNEL_FD"]))
signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
try:
    os.close(os.open(os.environ["LAZY_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    lazy = True
except FileExistsError:
    lazy = False
chan.send(b"R")
if lazy and os.environ.get("LAZY_TAKE") == "1":
    held = []
    while True:
        msg, fds, _, _ = socket.recv_fds(chan, 1024, 64)
        if not msg:
            break
        held.extend(fds)  # never read, never answered
if lazy:
    while True:
        signal.pause()
body = f"served by {os.getpid()}\n".encode()
answer = (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
while True:
    msg, fds, _, _ = socket.recv_fds(chan, 1024, 64)
    if not msg or msg[:1] == b"S":
        break
    ids = [struct.unpack_from("<Q", msg, 1 + 8 * i)[0] for i in range(len(fds))]
    for fd in fds:
        with socket.socket(fileno=fd) as conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(answer)
    chan.send(b"D" + b"".join(struct.pack("<Q", i) for i in ids))
