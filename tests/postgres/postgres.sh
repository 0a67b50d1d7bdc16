#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (Debian's postgresql package):
#   tests/postgres/postgres.sh start DIR PORT   # cluster and socket in /tmp/lensd-pg-PORT (DIR's
#                                               # parents may be closed to the postgres user, e.g.
#                                               # a checkout in a 0700 folder; DIR/run names it),
#                                               # database and user "lensd", no TCP; prints its URI
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
# Where the cluster of DIR lives (DIR itself for one made before DIR/run existed).
run_dir() { if [ -f "$dir/run" ]; then cat "$dir/run"; else echo "$dir"; fi; }
stop_server() {
  local run
  run=$(run_dir)
  if [ -f "$run/data/postmaster.pid" ]; then
    as_server "$bin/pg_ctl" -D "$run/data" -m "$1" -w stop >/dev/null 2>&1 || true
  fi
  [ "$run" != "$dir" ] && rm -rf "$run"
  rm -rf "$dir"
}
case $command in
  start)
    port=${3:?the port}
    [ -d "$dir" ] && stop_server immediate
    mkdir -p "$dir"
    run=/tmp/lensd-pg-$port
    rm -rf "$run"
    mkdir -m 0755 "$run"
    [ "$(id -u)" -eq 0 ] && chown postgres "$run"
    echo "$run" > "$dir/run"
    as_server "$bin/initdb" -D "$run/data" -A trust -U lensd -E UTF8 >"$run/initdb.log" 2>&1 ||
      { cat "$run/initdb.log" >&2; exit 1; }
    as_server "$bin/pg_ctl" -D "$run/data" -l "$run/server.log" -w -t 60 \
      -o "-k $run -p $port -c listen_addresses= -c fsync=off" start >/dev/null ||
      { cat "$run/server.log" >&2; exit 1; }
    as_server "$bin/createdb" -h "$run" -p "$port" -U lensd lensd
    echo "postgresql:///lensd?host=$run&port=$port&user=lensd"
    ;;
  stop)
    stop_server fast
    ;;
  *)
    echo "usage: postgres.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
