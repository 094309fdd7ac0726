// An HTTP app for wait_ready / shutdown_with_message tests (PM2's
// conventions): it listens on PORT (or no port at all with NO_SERVER=1),
// and calls process.send('ready') only once the file READY_FILE exists.
// On the IPC message 'shutdown' it prints `got shutdown` and exits 0; it
// ignores SIGINT, so only the message (or SIGKILL) stops it.
'use strict';
const fs = require('fs');
const http = require('http');

const readyFile = process.env.READY_FILE;
const sayReady = () => {
  if (!readyFile || fs.existsSync(readyFile)) {
    process.send('ready');
    console.log('sent ready');
  } else {
    setTimeout(sayReady, 10);
  }
};
process.on('SIGINT', () => console.log('ignoring SIGINT'));
process.on('message', (msg) => {
  if (msg === 'shutdown') {
    console.log('got shutdown');
    process.exit(0);
  }
});
if (process.env.NO_SERVER === '1') {
  sayReady();
  setInterval(() => {}, 1 << 30);
} else {
  http
    .createServer((req, res) => res.end(`ready-app ${process.pid}\n`))
    .listen(Number(process.env.PORT) || 3000, sayReady);
}
