// PM2 docs' app with two knobs for benchmarks, both off by default: the
// instance whose NODE_APP_INSTANCE equals SLOW_INSTANCE answers SLOW_MS
// later (`herd bench --scenario skew`), and with LEAK_MB_PER_SEC each
// instance keeps that many MB a second of touched memory alive
// (`--scenario memory`). No herd-specific code (PM2 sets
// NODE_APP_INSTANCE too).
const http = require('http');
const leak = Number(process.env.LEAK_MB_PER_SEC || 0);
if (leak > 0) {
  const kept = [];
  const chunk = Math.max(1, Math.round((leak * 1024 * 1024) / 20));
  setInterval(() => kept.push(Buffer.alloc(chunk, 1)), 50);
}
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
