# Sourced by the bench scripts that compare with PM2.
# install_pm2 DIR: installs PM2 7 with npm into DIR (never a global install)
# and prints the path of its `pm2`; prints nothing (and says why on stderr)
# when PM2=0 is set, npm is missing, or the install fails.
install_pm2() {
  local dir=$1
  if [ "${PM2:-1}" = 0 ]; then
    echo "PM2=0: PM2 skipped" >&2
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "npm not found: PM2 skipped" >&2
    return 0
  fi
  echo "installing pm2 into $dir ..." >&2
  if npm install --silent --no-audit --no-fund --prefix "$dir" -g pm2@7 >/dev/null 2>&1 \
    || npm install --silent --no-audit --no-fund --prefix "$dir" -g pm2 >/dev/null 2>&1; then
    echo "$dir/bin/pm2"
  else
    echo "pm2 could not be installed: PM2 skipped" >&2
  fi
}
