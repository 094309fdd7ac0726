// The PM2 docs' app (bench-apps/node/app.js) as an ES module, for runtimes that
// run CommonJS only from .cjs files (Deno): a plain HTTP server on
// process.env.PORT || 3000 that answers with its pid and echoes one
// environment variable at /env/<NAME>.
import http from "node:http";

http.createServer((req, res) => {
  const m = /^\/env\/([A-Za-z0-9_]+)$/.exec(req.url);
  res.setHeader('X-Worker', String(process.pid));
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(m ? String(process.env[m[1]] ?? '') : `hello world from ${process.pid}\n`);
}).listen(process.env.PORT || 3000);
