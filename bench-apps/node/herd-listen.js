// herd's Node preload (`node -r herd-listen.js app.js`), shipped inside the
// herd binary and written to $HERD_HOME/node/. It lets an UNMODIFIED app that
// calls `server.listen(PORT)` serve on the listening socket herd passed as
// fd 3 (systemd LISTEN_FDS protocol) instead of binding the port itself.
// Only a listen on herd's port is redirected, once; every other listen call
// (another port, a unix socket, listen() without a port) is left alone.
'use strict';
const net = require('net');

const fds = Number(process.env.LISTEN_FDS || 0);
const ours = fds >= 1 && Number(process.env.LISTEN_PID) === process.pid;
const port = Number(process.env.HERD_PORT || 0);

if (ours && port > 0) {
  const listen = net.Server.prototype.listen;
  let used = false;
  net.Server.prototype.listen = function herdListen(...args) {
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
}
