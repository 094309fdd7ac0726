#!/usr/bin/env python3
"""Per-request timeline of a closed-loop connection-per-request run (#15 skew analysis):
    timeline.py PORT N CONNS
Prints the split, the p99, the fast workers' p99, each request the least-used worker
answered (index, start, latency) and the fast workers' requests over 2 ms. Bounded by N."""
import socket, threading, time, re, sys
port=int(sys.argv[1]); N=int(sys.argv[2]); C=int(sys.argv[3])
REQ=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
W=re.compile(rb"X-Worker: (\d+)",re.I)
lock=threading.Lock(); left=[N]; out=[]
T0=time.monotonic()
def run():
    while True:
        with lock:
            if left[0]<=0: return
            left[0]-=1
        t=time.monotonic(); s=socket.create_connection(("127.0.0.1",port),timeout=5); s.sendall(REQ); d=b""
        while True:
            b=s.recv(65536)
            if not b: break
            d+=b
        s.close(); m=W.search(d)
        out.append((t-T0,(time.monotonic()-t)*1000,m.group(1).decode() if m else "?"))
th=[threading.Thread(target=run) for _ in range(C)]
[x.start() for x in th]; [x.join() for x in th]
out.sort()
pids={}
for t,l,w in out: pids[w]=pids.get(w,0)+1
slow=min(pids,key=pids.get)
print(pids, "dur", out[-1][0])
lats=sorted(l for _,l,_ in out); print("p99",lats[int(len(lats)*0.99)])
for i,(t,l,w) in enumerate(out):
    if w==slow: print(f"{i:5d} t={t*1000:8.1f}ms lat={l:6.2f}")
print("top40 lat:", [round(x,2) for x in lats[-40:]])
print("fast p99", sorted(l for _,l,w in out if w!=slow)[int((len(out)-pids[slow])*0.99)])
print("fast >2ms:", [(round(t*1000),round(l,1)) for t,l,w in out if w!=slow and l>2])
