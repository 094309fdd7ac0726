// Test helper: a plain TCP server whose side speaks first (as SMTP, FTP or
// MySQL's do): every connection gets "hello from PID\n", then is closed.
// herd must hand its connections on at once (no deferred accept: the
// client sends nothing until greeted).
const net = require('net');

net.createServer((socket) => {
  socket.end(`hello from ${process.pid}\n`);
}).listen(process.env.PORT || 3000);
