# Sourced by the bench scripts that drive wrk.
# need_wrk: makes sure `wrk` is on PATH, installing the distribution's
# package (apt-get, as root) when it is missing; exits with a one-line
# reason when it cannot.
need_wrk() {
  command -v wrk >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing wrk (apt-get) ..." >&2
    (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1
  fi
  command -v wrk >/dev/null || { echo "wrk is missing and could not be installed (apt-get install wrk)" >&2; exit 1; }
}
