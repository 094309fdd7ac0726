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
// Internal messages (`cmd: 'NODE_…'`) never reach the app's own
// process.on('message') handlers.
'use strict';
const net = require('net');

const servers = new Set();
const listen = net.Server.prototype.listen;

const fds = Number(process.env.LISTEN_FDS || 0);
const ours = fds >= 1 && Number(process.env.LISTEN_PID) === process.pid;
const port = Number(process.env.HERD_PORT || 0);
let used = false;

net.Server.prototype.listen = function herdListen(...args) {
  servers.add(this);
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

let draining = false;
for (const mod of ['http', 'https']) {
  const Server = require(mod).Server;
  const emit = Server.prototype.emit;
  Server.prototype.emit = function herdEmit(event, req, res) {
    if (draining && event === 'request' && res && !res.headersSent) {
      res.setHeader('Connection', 'close');
    }
    return emit.apply(this, arguments);
  };
}

process.on('internalMessage', (msg) => {
  if (!msg || typeof msg.cmd !== 'string') return;
  if (msg.cmd === 'NODE_HERD_DRAIN') {
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
