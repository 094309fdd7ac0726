// Test helper: the first process to start (it creates the file named by
// LAZY_MARKER) takes its connections and never reads or writes a byte of
// them (`pauseOnConnect`); every later one (the replacement herd starts
// when the first dies) is a plain HTTP server answering with its pid.
// In fdpass mode the first process holds connections the daemon's copies
// must save when it is killed.
const fs = require('fs');
const http = require('http');
const net = require('net');

const port = process.env.PORT || 3000;
let lazy = false;
try {
  fs.closeSync(fs.openSync(process.env.LAZY_MARKER, 'wx'));
  lazy = true;
} catch {
  // the marker exists: a replacement
}
if (lazy) {
  const held = [];
  net.createServer({ pauseOnConnect: true }, (socket) => held.push(socket)).listen(port);
} else {
  http.createServer((req, res) => {
    res.setHeader('X-Worker', String(process.pid));
    res.end(`hello world from ${process.pid}\n`);
  }).listen(port);
}
