// The PM2 docs' app with prom-client's default metrics and one counter of
// its own: what an app that exposes Prometheus metrics looks like, for
// herd's `app_metrics` (tests/it/metrics.rs). Needs prom-client on the
// require path (NODE_PATH).
'use strict';
const http = require('http');
const client = require('prom-client');

client.collectDefaultMetrics();
const served = new client.Counter({ name: 'app_requests_total', help: 'Requests this process served.' });

http
  .createServer((req, res) => {
    served.inc();
    res.writeHead(200);
    res.end('hey');
  })
  .listen(process.env.PORT || 8000);
