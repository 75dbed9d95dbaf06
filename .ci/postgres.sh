#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server (Debian's `postgresql` package, installed if missing) on a
# Unix socket in a temporary directory, and prints the export line for the tests:
#   eval "$(.ci/postgres.sh)"   # sets VERDICT_TEST_POSTGRES
# The server runs as the `postgres` user with trust authentication on the socket only (no TCP).
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
dir=$(mktemp -d /tmp/verdict-pg.XXXXXX)
chown postgres:postgres "$dir"
chmod 700 "$dir"
runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-k $dir -c listen_addresses='' -p 5432 -c fsync=off" start >&2 \
  || { cat "$dir/server.log" >&2; exit 1; }
echo "export VERDICT_TEST_POSTGRES='host=$dir port=5432 user=postgres dbname=postgres'"
