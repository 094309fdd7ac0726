// Test helper: the first process to start (it creates the file named by
// LAZY_MARKER) reads every request and never answers it, appending a line
// to that file for each request it has read whole (body included); every
// later one (the replacement herd starts when the first dies) is a plain
// HTTP server answering with its pid. In fdpass mode the first process
// holds requests it has read and not answered when it is killed: the
// idempotent ones are herd's to replay.
const fs = require('fs');
const http = require('http');

const port = process.env.PORT || 3000;
const marker = process.env.LAZY_MARKER;
let stall = false;
try {
  fs.closeSync(fs.openSync(marker, 'wx'));
  stall = true;
} catch {
  // the marker exists: a replacement
}
http.createServer((req, res) => {
  if (stall) {
    req.resume();
    req.on('end', () => fs.appendFileSync(marker, `${req.method} ${req.url}\n`));
    return;
  }
  res.setHeader('X-Worker', String(process.pid));
  res.end(`hello world from ${process.pid} for ${req.method} ${req.url}\n`);
}).listen(port);
