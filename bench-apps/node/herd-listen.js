// herd's Node preload (`node -r herd-listen.js app.js`) for cluster apps,
// shipped inside the herd binary and written to $HERD_HOME/node/.
//
// 1. reuseport/shared modes: an UNMODIFIED app that calls
//    `server.listen(PORT)` serves on the listening socket herd passed as fd 3
//    (systemd LISTEN_FDS protocol) instead of binding the port itself. Only a
//    listen on herd's port is redirected, once; every other listen call
//    (another port, a unix socket, listen() without a port) is left alone.
// 2. every mode: a graceful hand-over for reloads and scale-down. herd sends
//    internal messages over the IPC channel:
//    - NODE_HERD_DRAIN: from now on every HTTP response says
//      `Connection: close`, so keep-alive clients move to another worker
//      between two requests instead of racing a socket that is closing;
//    - NODE_HERD_CLOSE (reuseport/shared): close the servers (in-flight
//      requests finish), then report NODE_HERD_CLOSED so herd stops the
//      process without cutting a request.
//    Internal messages (`cmd: 'NODE_…'`) never reach the app's own
//    process.on('message') handlers.
// 3. fdpass mode: connections come over herd's own channel (fd
//    $HERD_CHANNEL_FD, docs/PROTOCOL.md) rather than as Node cluster
//    `newconn` messages: one recvmsg per connection, no JSON, no
//    acknowledgement; closes go back at most 1 ms later, batched (`T`, timed), so
//    least-connections counts open connections. The cluster channel still
//    carries listen, `listening`, `ready` and stop. Until this channel says
//    `R` (or if anything here fails, or the app's environment has
//    HERD_NODE_CHANNEL=cluster) herd sends `newconn` as Node's own primary
//    would. A connection whose idempotent request a dead worker had read
//    and not answered comes back as NODE_HERD_REPLAY on the cluster channel
//    (a handle, its id, and the bytes that worker had taken): they are put
//    back in front of the stream and the app's server gets the connection
//    as if it were new.
'use strict';
const net = require('net');
const cluster = require('cluster');

const servers = new Set();
const listen = net.Server.prototype.listen;

const fds = Number(process.env.LISTEN_FDS || 0);
const ours = fds >= 1 && Number(process.env.LISTEN_PID) === process.pid;
const port = Number(process.env.HERD_PORT || 0);
let used = false;
// A connection from herd's channel: { busy } (ns its requests took so far).
const kServed = Symbol('herdServed');

net.Server.prototype.listen = function herdListen(...args) {
  servers.add(this);
  if (fast) this.once('listening', () => fast.adopt(this));
  if (!ours || port <= 0) {
    return listen.apply(this, args);
  }
  const first = args[0];
  let wanted = null;
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    wanted = Number(first);
  } else if (first && typeof first === 'object' && first.port !== undefined && first.fd === undefined && first.handle === undefined) {
    wanted = Number(first.port);
  }
  if (used || wanted !== port) {
    return listen.apply(this, args);
  }
  used = true;
  // Tell herd (over the IPC channel it gives Node apps) that the app now
  // serves on its socket: a reload hands over only after this.
  this.once('listening', () => {
    if (process.send) process.send({ cmd: 'NODE_HERD_LISTENING' });
  });
  const cb = args.find((a) => typeof a === 'function');
  const opts = { fd: 3 };
  return cb ? listen.call(this, opts, cb) : listen.call(this, opts);
};

// 3. The fdpass channel. `fast` stays null where it does not apply.
const fast = (() => {
  const fd = Number(process.env.HERD_CHANNEL_FD);
  delete process.env.HERD_CHANNEL_FD; // not for the app's own children
  if (!cluster.isWorker || !Number.isInteger(fd) || fd < 0) return null;
  // HERD_NODE_CHANNEL=cluster keeps Node's own `newconn` path (diagnosis).
  if (process.env.HERD_NODE_CHANNEL === 'cluster') return null;
  try {
    return fastChannel(fd);
  } catch {
    return null; // herd keeps sending `newconn`
  }
})();

function fastChannel(fd) {
  const { Pipe, constants } = process.binding('pipe_wrap');
  const { TCP } = process.binding('tcp_wrap');
  const { WriteWrap, streamBaseState, kReadBytesOrError } = process.binding('stream_wrap');
  const chan = new Pipe(constants.IPC);
  if (chan.open(fd) !== 0) return null;
  // Every read lands in this one buffer, the size of a `C` message: no
  // 64 KiB allocation and ArrayBuffer per connection, and a read that
  // fills it makes libuv read again at once, so `C`s that came together
  // are taken in one wake-up (a longer message is cut and refused below).
  const inbox = Buffer.alloc(9);
  chan.useUserBuffer(inbox);
  chan.unref(); // the app decides when the process is done, not herd's channel
  const FLUSH_MS = 1;
  let target = null; // the server herd dispatches to
  let arriving = null; // id of the connection being handed to it
  let arrived = 0n; // and when it came off the channel
  let replaying = null; // a replay's bytes, put back in front of its stream
  let closed = [];
  let flushTimer = null;
  const write = (buf) => {
    const req = new WriteWrap();
    req.handle = chan;
    req.buffer = buf; // kept alive until an asynchronous write completes
    req.oncomplete = () => {};
    chan.writeBuffer(req, buf);
  };
  // Closes go back as `T`: (id, ns the process spent serving the
  // connection), up to 32 pairs a message, at most FLUSH_MS after the
  // first of them (under load one message carries several; least-conn's
  // counts lag by that much for every worker alike). herd's least-conn
  // judges a worker slow by these times, so they are service, not
  // residence: for HTTP the sum over the connection's requests of request
  // event to response `finish` (the `request` hook below), else from coming off the
  // channel to close. Residence would count the wait behind the other
  // connections of a burst read in one wake-up (load, not slowness): the
  // k-th of a burst carried k-1 others' service, and a fast worker reading
  // large bursts was left out as slow at start.
  const flush = () => {
    if (flushTimer !== null) clearTimeout(flushTimer);
    flushTimer = null;
    for (let i = 0; i < closed.length; i += 32) {
      const pairs = closed.slice(i, i + 32);
      const buf = Buffer.allocUnsafe(1 + 16 * pairs.length);
      buf[0] = 0x54; // 'T'
      pairs.forEach(([id, ns], k) => {
        buf.writeBigUInt64LE(id, 1 + 16 * k);
        buf.writeBigUInt64LE(ns, 9 + 16 * k);
      });
      write(buf);
    }
    closed = [];
  };
  const close = (id, ns) => {
    closed.push([id, ns < 0n ? 0n : ns]);
    if (closed.length >= 32) {
      flush(); // a full message
    } else if (flushTimer === null) {
      flushTimer = setTimeout(flush, FLUSH_MS);
      flushTimer.unref();
    }
  };
  // Hands a connection from herd to the app's server; with no server (or
  // one that refuses it) it is closed and reported closed at once.
  const hand = (id, handle) => {
    if (!target || !target._handle) {
      handle.close();
      close(id, 0n);
      return;
    }
    arriving = id;
    arrived = process.hrtime.bigint();
    target._handle.onconnection(0, handle);
    if (arriving !== null) {
      arriving = null; // refused (maxConnections): already closed
      close(id, 0n);
    }
  };
  chan.onread = function onread() {
    const handle = chan.pendingHandle;
    chan.pendingHandle = null;
    const n = streamBaseState[kReadBytesOrError];
    if (n < 0) {
      if (handle) handle.close();
      chan.close(); // herd went away; the cluster channel says the rest
      return;
    }
    if (inbox[0] !== 0x43 || n !== 9 || !handle) {
      if (handle) handle.close();
      return; // herd sends `C` with one connection each; `S` comes by cluster
    }
    hand(inbox.readBigUInt64LE(1), handle);
  };
  return {
    // The first server whose handle is the cluster's round-robin stand-in
    // (not a real socket) is the one herd accepts for.
    adopt(server) {
      const h = server._handle;
      if (target || !h || h instanceof TCP || h instanceof Pipe) return;
      target = server;
      // Once it closes, read no more: herd takes back what is unread (the
      // cluster's `close` message, sent from inside close(), tells it to).
      const closeServer = server.close;
      server.close = function herdClose(...args) {
        chan.readStop();
        return closeServer.apply(this, args);
      };
      server.prependListener('connection', (socket) => {
        if (arriving === null) return; // a `newconn` connection
        const conn = { busy: 0n };
        const id = arriving;
        const since = arrived;
        arriving = null;
        socket[kServed] = conn;
        if (replaying !== null) {
          // Read from the stream, not by http's parser straight off the
          // handle (which would skip what is put back here).
          socket.unshift(replaying);
          replaying = null;
        }
        socket.once('close', () =>
          close(id, conn.busy > 0n ? conn.busy : process.hrtime.bigint() - since),
        );
      });
      chan.readStart();
      // An HTTP(S) server's clients send first: herd may then accept a
      // connection once its request is there, and keep it for a replay.
      if (server instanceof require('http').Server || server instanceof require('https').Server) {
        write(Buffer.from('H'));
      }
      write(Buffer.from('R'));
    },
    replay(id, data, handle) {
      handle._consumed = true; // see the `connection` listener above
      replaying = data;
      hand(id, handle);
      replaying = null;
    },
  };
}

// 4. request latency for `herd metrics`: from the server's `request`
//    event to the response's `finish`, in µs rounded to 6 significant bits
//    (as herd's `quantize_us`), counted here and sent a few times a second
//    at most as one internal message ({cmd:'NODE_HERD_LAT', h:[µs, n, …]});
//    nothing is sent while no request comes. HERD_REQUEST_METRICS=0 turns
//    it off.
const latency = new Map();
let latencyTimer = null;
const measure = process.env.HERD_REQUEST_METRICS !== '0' && typeof process.send === 'function';
const quantize = (us) => {
  if (us < 64) return us;
  const e = 26 - Math.clz32(us);
  return ((us >>> e) << e) + ((1 << e) >>> 1);
};
const reportLatency = () => {
  latencyTimer = null;
  if (latency.size === 0 || !process.connected) return;
  const h = [];
  for (const [us, n] of latency) h.push(us, n);
  latency.clear();
  try {
    process.send({ cmd: 'NODE_HERD_LAT', h });
  } catch {
    // the channel is closing: the figures go with it
  }
};
const served = (ns) => {
  const us = quantize(Math.min(0x7fffffff, Math.max(0, Number(ns / 1000n))));
  latency.set(us, (latency.get(us) || 0) + 1);
  if (latencyTimer === null) {
    latencyTimer = setTimeout(reportLatency, 250);
    latencyTimer.unref();
  }
};

let draining = false;
for (const mod of ['http', 'https']) {
  const Server = require(mod).Server;
  const emit = Server.prototype.emit;
  Server.prototype.emit = function herdEmit(event, req, res) {
    if (event === 'request' && res) {
      if (draining && !res.headersSent) res.setHeader('Connection', 'close');
      // One clock for both: the latency histogram and the connection's
      // service time that its `T` reports (`conn.busy`).
      const conn = req.socket ? req.socket[kServed] : undefined;
      if (measure || conn) {
        const t0 = process.hrtime.bigint();
        res.once('finish', () => {
          const ns = process.hrtime.bigint() - t0;
          if (conn) conn.busy += ns;
          if (measure) served(ns);
        });
      }
    }
    return emit.apply(this, arguments);
  };
}

// 5. `app_metrics`: herd asks (NODE_HERD_METRICS_REQ, with a seq) for the
//    app's own Prometheus text, from the prom-client registry the app
//    loaded (the default `register`), and re-exports it labelled with the
//    app and instance. The answer: {cmd:'NODE_HERD_METRICS', seq, text} or
//    {…, error} when the app has no prom-client or it fails.
const promRegistry = () => {
  for (const key of Object.keys(require.cache)) {
    if (/[\\/]node_modules[\\/]prom-client[\\/]index\.js$/.test(key)) {
      const exp = require.cache[key].exports;
      if (exp && exp.register && typeof exp.register.metrics === 'function') return exp.register;
    }
  }
  return null;
};
const answerMetrics = async (seq) => {
  let text = null;
  let error = null;
  try {
    const reg = promRegistry();
    if (reg) text = String(await reg.metrics());
    else error = 'the app has not loaded prom-client';
  } catch (e) {
    error = String((e && e.message) || e);
  }
  if (process.connected) process.send({ cmd: 'NODE_HERD_METRICS', seq, text, error });
};

process.on('internalMessage', (msg, handle) => {
  if (!msg || typeof msg.cmd !== 'string') return;
  if (msg.cmd === 'NODE_HERD_REPLAY') {
    if (!handle) return;
    if (fast && typeof msg.data === 'string') {
      fast.replay(BigInt(msg.id), Buffer.from(msg.data, 'hex'), handle);
    } else {
      handle.close(); // herd replays only to a worker whose channel is up
    }
  } else if (msg.cmd === 'NODE_HERD_METRICS_REQ') {
    answerMetrics(msg.seq);
  } else if (msg.cmd === 'NODE_HERD_DRAIN') {
    draining = true;
  } else if (msg.cmd === 'NODE_HERD_CLOSE') {
    draining = true;
    let open = servers.size + 1;
    const done = () => {
      open -= 1;
      if (open === 0 && process.send) process.send({ cmd: 'NODE_HERD_CLOSED' });
    };
    for (const s of servers) {
      if (s.listening) {
        if (typeof s.closeIdleConnections === 'function') s.closeIdleConnections();
        s.close(done);
      } else {
        done();
      }
    }
    done();
  }
});
