#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (Debian's postgresql package):
#   tests/postgres/postgres.sh start DIR PORT   # cluster in DIR/data, socket in DIR, database
#                                               # and user "lensd", no TCP; prints its URI
#   tests/postgres/postgres.sh stop DIR         # stops it and removes DIR
# As root the server runs as the postgres user (PostgreSQL refuses root).
set -euo pipefail
command=${1:?start or stop}
dir=${2:?the folder}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/pg_ctl" ] || { echo "postgres.sh: no PostgreSQL server (apt-get install postgresql)" >&2; exit 1; }
as_server() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case $command in
  start)
    port=${3:?the port}
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_server "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    if [ ${#dir} -gt 90 ]; then
      echo "postgres.sh: $dir is too long for a unix socket path" >&2
      exit 1
    fi
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    as_server "$bin/initdb" -D "$dir/data" -A trust -U lensd -E UTF8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    as_server "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir -p $port -c listen_addresses= -c fsync=off" start >/dev/null ||
      { cat "$dir/server.log" >&2; exit 1; }
    as_server "$bin/createdb" -h "$dir" -p "$port" -U lensd lensd
    echo "postgresql:///lensd?host=$dir&port=$port&user=lensd"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_server "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: postgres.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
