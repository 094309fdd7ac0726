// The Express version of PM2's docs app: no herd-specific code.
const express = require('express');
const app = express();

app.get('/', (req, res) => {
  res.set('X-Worker', String(process.pid));
  res.send(`hello from express ${process.pid}\n`);
});

app.listen(process.env.PORT || 3000, () => {
  console.log(`express listening, pid ${process.pid}`);
});
