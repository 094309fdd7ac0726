// The ecosystem file of the container example (PM2's format, unchanged).
module.exports = {
  apps: [{
    name: 'api-server',
    script: './app.js',
    instances: 'max',
    exec_mode: 'cluster',
    kill_timeout: 5000,
    env: { NODE_ENV: 'development', PORT: 3000 },
    env_production: { NODE_ENV: 'production', PORT: 3000 },
  }],
};
