// The app from PM2's cluster-mode docs, unmodified in spirit: a plain Node
// HTTP server on process.env.PORT || 3000, with no herd-specific code. It
// answers with its pid (so tests can see which worker served) and echoes one
// environment variable at /env/<NAME> (so config tests can see what it got).
const http = require('http');

http.createServer((req, res) => {
  const m = /^\/env\/([A-Za-z0-9_]+)$/.exec(req.url);
  res.setHeader('X-Worker', String(process.pid));
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(m ? String(process.env[m[1]] ?? '') : `hello world from ${process.pid}\n`);
}).listen(process.env.PORT || 3000);
