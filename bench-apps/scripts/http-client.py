#!/usr/bin/env python3
"""An outside client for herd's fairness and chaos checks: plain sockets,
no herd code.

    http-client.py PORT [--requests N] [--connections C] [--timeout S] [--timeline FILE]

Sends N connection-per-request `GET /` requests from C threads (closed
loop: each thread opens a connection, sends one request, reads the whole
answer, closes, repeats). The worker that answered is read from the
`X-Worker` header or a `... from PID` / `served by PID` body. Prints one
JSON line: per-worker counts, Jain's index, max/mean, failures by cause,
latency percentiles (ms) and the run's duration. Bounded: it stops after N
requests or `--deadline` seconds, whichever comes first. `--timeline FILE`
also writes one line per answered request, in the order they started:
start (ms from the run's start), latency (ms), worker.
"""
import argparse, json, re, socket, threading, time

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("--host", default="127.0.0.1")
p.add_argument("--requests", type=int, default=3000)
p.add_argument("--connections", type=int, default=16)
p.add_argument("--timeout", type=float, default=5.0)
p.add_argument("--deadline", type=float, default=60.0)
p.add_argument("--timeline", help="file for one 'start_ms latency_ms worker' line per request")
a = p.parse_args()

REQ = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
WORKER = re.compile(rb"(?:X-Worker: |from |served by )(\d+)", re.I)
lock = threading.Lock()
left = [a.requests]
counts, fails, lat, timeline = {}, {}, [], []
start = time.monotonic()
stop_at = start + a.deadline


def one():
    t0 = time.monotonic()
    s = socket.create_connection((a.host, a.port), timeout=a.timeout)
    try:
        s.sendall(REQ)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if b"\r\n\r\n" not in data:
        raise EOFError("eof before headers" if data == b"" else "short answer")
    if not data.startswith(b"HTTP/1.1 200"):
        raise EOFError("status " + data[9:12].decode(errors="replace"))
    m = WORKER.search(data)
    return (m.group(1).decode() if m else "?"), t0, time.monotonic() - t0


def cause(e):
    if isinstance(e, ConnectionResetError):
        return "reset"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, EOFError):
        return str(e)
    return type(e).__name__


def loop():
    while True:
        with lock:
            if left[0] <= 0 or time.monotonic() > stop_at:
                return
            left[0] -= 1
        try:
            w, began, dt = one()
            with lock:
                counts[w] = counts.get(w, 0) + 1
                lat.append(dt)
                if a.timeline:
                    timeline.append((began - start, dt, w))
        except Exception as e:  # counted by cause, never fatal
            with lock:
                c = cause(e)
                fails[c] = fails.get(c, 0) + 1


ts = [threading.Thread(target=loop) for _ in range(a.connections)]
for t in ts:
    t.start()
for t in ts:
    t.join()
took = time.monotonic() - start
if a.timeline:
    with open(a.timeline, "w") as f:
        for began, dt, w in sorted(timeline):
            f.write(f"{began * 1000:.2f} {dt * 1000:.2f} {w}\n")
xs = list(counts.values())
n = len(xs)
jain = (sum(xs) ** 2) / (n * sum(x * x for x in xs)) if n else 0.0
mm = max(xs) / (sum(xs) / n) if n else 0.0
lat.sort()
pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None
print(json.dumps({
    "ok": sum(xs), "failed": sum(fails.values()), "fails": fails,
    "per_worker": counts, "jain": round(jain, 4), "max_mean": round(mm, 4),
    "p50_ms": pct(0.5), "p99_ms": pct(0.99), "seconds": round(took, 2),
}))
