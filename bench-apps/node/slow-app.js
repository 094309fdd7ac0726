// PM2 docs' app with a skew knob for benchmarks: the instance whose
// NODE_APP_INSTANCE equals SLOW_INSTANCE answers SLOW_MS later. No
// herd-specific code (PM2 sets NODE_APP_INSTANCE too).
const http = require('http');
const slow = process.env.NODE_APP_INSTANCE !== undefined &&
  process.env.NODE_APP_INSTANCE === process.env.SLOW_INSTANCE;
const delay = slow ? Number(process.env.SLOW_MS || 5) : 0;

http.createServer((req, res) => {
  const reply = () => {
    res.setHeader('X-Worker', String(process.pid));
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`hello world from ${process.pid}\n`);
  };
  if (delay > 0) setTimeout(reply, delay); else reply();
}).listen(process.env.PORT || 3000);
