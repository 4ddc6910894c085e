#!/usr/bin/env bash
# Start a PgBouncer for notebook 07: 127.0.0.1:6432, transaction pooling, two server
# connections per database, in front of the PostgreSQL server on 127.0.0.1:5432 (user postgres,
# trust authentication, as on the guide's machines). Its configuration, log and pid file live
# in build/pgbouncer/, nothing system-wide. Needs Debian's pgbouncer package
# (apt-get install -y pgbouncer). Does nothing when something already answers on the port.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${PGBOUNCER_PORT:-6432}"
dir="$PWD/build/pgbouncer"
answers() { (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if ! command -v pgbouncer >/dev/null; then
  echo "error: pgbouncer is not installed; install it with: apt-get install -y pgbouncer" >&2
  exit 1
fi
if answers; then
  if [ -f "$dir/pgbouncer.pid" ] && kill -0 "$(cat "$dir/pgbouncer.pid")" 2>/dev/null; then
    echo "PgBouncer already answers on 127.0.0.1:$port (log: $dir/pgbouncer.log)"
  else
    echo "warning: something other than this PgBouncer answers on 127.0.0.1:$port; notebook 07" \
      "expects transaction pooling with two server connections ($dir/pgbouncer.ini)" >&2
  fi
  exit 0
fi

mkdir -p "$dir"
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 200
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
echo '"postgres" ""' >"$dir/userlist.txt"

as_user=()
if [ "$(id -u)" = 0 ]; then  # PgBouncer refuses to run as root: it switches to postgres
  chown -R postgres "$dir"
  as_user=(-u postgres)
fi
pgbouncer -d "${as_user[@]}" "$dir/pgbouncer.ini"
for _ in $(seq 1 40); do
  if answers; then
    echo "PgBouncer answers on 127.0.0.1:$port (transaction pooling); log: $dir/pgbouncer.log"
    exit 0
  fi
  sleep 0.25
done
echo "error: PgBouncer did not start; see $dir/pgbouncer.log" >&2
exit 1
