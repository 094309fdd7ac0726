// A leaking app for memory-cap tests and benchmarks: keeps LEAK_MB_PER_SEC
// (default 20) MB per second of touched memory alive, forever. No herd code.
const rate = Number(process.env.LEAK_MB_PER_SEC || 20);
const kept = [];
const tickMs = 50;
const chunk = Math.max(1, Math.round((rate * 1024 * 1024 * tickMs) / 1000));
setInterval(() => {
  kept.push(Buffer.alloc(chunk, 1)); // filled, so every page is resident
}, tickMs);
console.log(`leaking ${rate} MB/s, pid ${process.pid}`);
// With PORT set it also answers HTTP (for graceful memory-restart tests).
if (process.env.PORT) {
  require('http')
    .createServer((req, res) => res.end(`leak ${process.pid}\n`))
    .listen(Number(process.env.PORT));
}
