// Node's own cluster module as a peer for `herd bench --compare`:
// `node cluster-primary.js APP N` forks N workers that run APP (each
// calls listen(PORT); the primary hands connections out round-robin,
// Node's default on Linux). Worker i gets NODE_APP_INSTANCE=i, as PM2
// sets it. A worker that dies is forked again with its number, as a
// bare-bones production primary would. SIGTERM stops all of them.
'use strict';
const cluster = require('cluster');
const path = require('path');

const [app, n] = [process.argv[2], Number(process.argv[3] || 2)];
if (!app || !Number.isInteger(n) || n < 1) {
  console.error('usage: node cluster-primary.js APP N');
  process.exit(2);
}
cluster.setupPrimary({ exec: path.resolve(app) });
let stopping = false;
const fork = (i) => {
  cluster.fork({ NODE_APP_INSTANCE: String(i) }).on('exit', () => {
    if (!stopping) fork(i);
  });
};
for (let i = 0; i < n; i++) fork(i);
process.on('SIGTERM', () => {
  stopping = true;
  for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  setTimeout(() => process.exit(0), 2000).unref();
  cluster.on('exit', () => {
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
});
