#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests/test_tuning.py: listens on 127.0.0.1 only, lives in a
# temporary folder, trusts the user "course" without a password.
#
#   eval "$(scripts/postgres_for_tests.sh start)"   # exports COURSE_TEST_POSTGRES_URL (and _DIR)
#   python -m pytest tests/test_tuning.py
#   scripts/postgres_for_tests.sh stop              # stops the server and deletes its folder
#
# Uses Debian's /usr/lib/postgresql/<version>/bin, else initdb and pg_ctl on the PATH; as root
# without them it installs the postgresql package with apt-get. Prints only the export line when it
# works, and what failed (on stderr) when it does not. COURSE_TEST_POSTGRES_PORT: first port to try.
set -euo pipefail

fail() { echo "postgres_for_tests.sh: $*" >&2; exit 1; }

# The folder holding initdb and pg_ctl: Debian's newest version, else the PATH's.
server_bin() {
  local debian
  debian=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$debian" ] && [ -x "$debian/pg_ctl" ] && [ -x "$debian/initdb" ]; then echo "$debian"; return; fi
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then dirname "$(command -v initdb)"; fi
}

install_server() {
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
    fail "PostgreSQL's server is not installed: install it (Debian/Ubuntu: sudo apt-get install postgresql; macOS: brew install postgresql)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq postgresql >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null; } ||
    fail "apt-get install postgresql failed (see above)"
}

# PostgreSQL refuses to run as root: root runs it as the postgres user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then (cd "$dir" && runuser -u postgres -- "$@"); else "$@"; fi
}

# Print the log, delete the server's folder, fail with the message.
give_up() {
  echo "postgres_for_tests.sh: $1" >&2
  cat "$2" >&2
  rm -rf "$dir"
  exit 1
}

start() {
  bin=$(server_bin)
  [ -n "$bin" ] || { install_server; bin=$(server_bin); }
  [ -n "$bin" ] || fail "initdb and pg_ctl not found after installing postgresql"
  dir=$(mktemp -d /tmp/course-postgres.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  port=${COURSE_TEST_POSTGRES_PORT:-5433}
  while (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
    port=$((port + 1))
    [ "$port" -lt "$(( ${COURSE_TEST_POSTGRES_PORT:-5433} + 50 ))" ] || { rm -rf "$dir"; fail "no free port from ${COURSE_TEST_POSTGRES_PORT:-5433} on"; }
  done
  as_owner "$bin/initdb" -D "$dir/data" -A trust -U course --no-sync >"$dir/initdb.log" 2>&1 ||
    give_up "initdb failed:" "$dir/initdb.log"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null ||
    give_up "the server did not start on 127.0.0.1:$port:" "$dir/server.log"
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U course course_test 2>"$dir/createdb.log" ||
    { as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
      give_up "createdb course_test failed on 127.0.0.1:$port:" "$dir/createdb.log"; }
  echo "export COURSE_TEST_POSTGRES_URL=postgresql://course@127.0.0.1:$port/course_test COURSE_TEST_POSTGRES_DIR=$dir"
}

stop() {
  dir=${COURSE_TEST_POSTGRES_DIR:-}
  [ -d "$dir/data" ] || fail "COURSE_TEST_POSTGRES_DIR is not a server folder made by 'start' (got '${dir}')"
  as_owner "$(server_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null ||
    { cat "$dir/server.log" >&2; fail "pg_ctl stop failed (the server's log is above)"; }
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) fail "usage: eval \"\$(scripts/postgres_for_tests.sh start)\" ... scripts/postgres_for_tests.sh stop" ;;
esac
