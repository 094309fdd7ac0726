// An app with a side server (as apps with a metrics or admin port have):
// the main server on PORT, a second one on SIDE_PORT. No herd-specific code.
const http = require('http');
const reply = (what) => (req, res) => {
  res.setHeader('X-Worker', String(process.pid));
  res.end(`${what} ${process.pid}\n`);
};
http.createServer(reply('main')).listen(process.env.PORT || 3000);
http.createServer(reply('side')).listen(Number(process.env.SIDE_PORT || 3001));
