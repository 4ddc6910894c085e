#!/usr/bin/env bash
# Start (or stop) the read-replica pairs of the "beyond one server" chapter: each a primary and a
# streaming replica of it, on loopback ports, with every file under build/replicas/. The
# machine's own servers (PostgreSQL on 5432, MariaDB on 3306) are not touched: neither has a
# replication setup (MariaDB has no binary log there), so each pair is a server of its own.
#
#   PostgreSQL 15:  primary 127.0.0.1:5434, hot standby 127.0.0.1:5433 (pg_basebackup -R)
#   MariaDB 10.11:  primary 127.0.0.1:3308, replica 127.0.0.1:3307 (GTID, read_only)
#
# Both have a database `test`; PostgreSQL's user `postgres` (trust), MariaDB's user `guide`
# (no password; not an administrator, so the replica's read_only applies to it).
#
#   bash tools/replicas.sh [start|stop] [postgresql|mariadb ...]   (default: start, both)
#
# Needs Debian's postgresql-15 and mariadb-server binaries (already on the guide's machines).
# Starting what already answers does nothing. Run as root, the servers run as postgres / mysql.
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-start}"
shift || true
backends=("$@")
((${#backends[@]})) || backends=(postgresql mariadb)
root="$PWD/build/replicas"

answers() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() {  # port, what, log
  for _ in $(seq 1 120); do answers "$1" && return 0; sleep 0.25; done
  echo "error: $2 did not answer on 127.0.0.1:$1 within 30 s; see $3" >&2
  exit 1
}
as() {  # user, command...: run as that user when we are root (the servers refuse root)
  local user=$1; shift
  if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

# --- PostgreSQL: a primary and a hot standby made with pg_basebackup -R --------------------
pg_bin="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -n 1)/bin"
pg_dir="$root/postgresql"
pg_primary_port=5434
pg_standby_port=5433

pg_start() {
  if [ ! -x "$pg_bin/initdb" ]; then
    echo "error: PostgreSQL's server binaries are missing; apt-get install -y postgresql" >&2
    exit 1
  fi
  mkdir -p "$pg_dir"
  [ "$(id -u)" = 0 ] && chown postgres "$pg_dir"
  if ! answers $pg_primary_port; then
    if [ ! -f "$pg_dir/primary/PG_VERSION" ]; then
      # --auth=trust also lets 127.0.0.1 open replication connections (pg_hba.conf's defaults)
      as postgres "$pg_bin/initdb" --pgdata="$pg_dir/primary" --username=postgres \
        --auth=trust --no-sync >"$pg_dir/initdb.log"
    fi
    as postgres "$pg_bin/pg_ctl" --pgdata="$pg_dir/primary" --log="$pg_dir/primary.log" \
      --options="-p $pg_primary_port -c listen_addresses=127.0.0.1 -k $pg_dir" start >/dev/null
    wait_for $pg_primary_port "the PostgreSQL primary" "$pg_dir/primary.log"
    "$pg_bin/psql" -h 127.0.0.1 -p $pg_primary_port -U postgres -qAt -c \
      "select 1 from pg_database where datname = 'test'" postgres | grep -q 1 ||
      "$pg_bin/createdb" -h 127.0.0.1 -p $pg_primary_port -U postgres test
  fi
  if ! answers $pg_standby_port; then
    if [ ! -f "$pg_dir/standby/standby.signal" ]; then
      rm -rf "$pg_dir/standby"
      # -R writes primary_conninfo and standby.signal: the copy starts as a streaming replica
      as postgres "$pg_bin/pg_basebackup" --host=127.0.0.1 --port=$pg_primary_port \
        --username=postgres --pgdata="$pg_dir/standby" --write-recovery-conf \
        --wal-method=stream --checkpoint=fast --no-sync
    fi
    as postgres "$pg_bin/pg_ctl" --pgdata="$pg_dir/standby" --log="$pg_dir/standby.log" \
      --options="-p $pg_standby_port -c listen_addresses=127.0.0.1 -k $pg_dir" start >/dev/null
    wait_for $pg_standby_port "the PostgreSQL standby" "$pg_dir/standby.log"
  fi
  echo "PostgreSQL: primary 127.0.0.1:$pg_primary_port, hot standby 127.0.0.1:$pg_standby_port" \
    "(files and logs: $pg_dir)"
}

pg_stop() {
  for node in standby primary; do
    if [ -f "$pg_dir/$node/postmaster.pid" ]; then
      as postgres "$pg_bin/pg_ctl" --pgdata="$pg_dir/$node" --mode=fast stop >/dev/null || true
    fi
  done
  echo "PostgreSQL pair stopped"
}

# --- MariaDB: a primary with a binary log and a GTID replica --------------------------------
my_dir="$root/mariadb"
my_primary_port=3308
my_replica_port=3307

my_sql() {  # port, statements: as root, over the node's own socket
  local node=primary
  [ "$1" = $my_replica_port ] && node=replica
  mariadb --user=root --socket="$my_dir/$node.sock" -e "$2"
}

my_node() {  # node, port, server id, extra options...
  local node=$1 port=$2 id=$3
  shift 3
  if [ ! -d "$my_dir/$node/mysql" ]; then
    mkdir -p "$my_dir/$node"
    [ "$(id -u)" = 0 ] && chown -R mysql "$my_dir"
    mariadb-install-db --user=mysql --datadir="$my_dir/$node" --skip-test-db \
      --auth-root-authentication-method=socket >"$my_dir/$node-install.log" 2>&1
  fi
  # In the background, detached from the terminal; the server writes its own pid file
  setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$my_dir/$node" --port="$port" \
    --bind-address=127.0.0.1 --socket="$my_dir/$node.sock" --pid-file="$my_dir/$node.pid" \
    --log-error="$my_dir/$node.log" --server-id="$id" --skip-name-resolve "$@" \
    </dev/null >/dev/null 2>&1 &
  wait_for "$port" "the MariaDB $node" "$my_dir/$node.log"
}

my_start() {
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "error: MariaDB's server is missing; apt-get install -y mariadb-server" >&2
    exit 1
  fi
  mkdir -p "$my_dir"
  if ! answers $my_primary_port; then
    my_node primary $my_primary_port 1 --log-bin=primary-bin --binlog-format=ROW
    my_sql $my_primary_port "CREATE DATABASE IF NOT EXISTS test;
      CREATE USER IF NOT EXISTS guide@'127.0.0.1';
      GRANT ALL ON *.* TO guide@'127.0.0.1';
      REVOKE SUPER, READ_ONLY ADMIN ON *.* FROM guide@'127.0.0.1';
      CREATE USER IF NOT EXISTS replicator@'127.0.0.1';
      GRANT REPLICATION SLAVE ON *.* TO replicator@'127.0.0.1';"
  fi
  if ! answers $my_replica_port; then
    my_node replica $my_replica_port 2 --read-only --relay-log=replica-relay
    # From the start of the primary's GTID history: the replica catches up on everything
    my_sql $my_replica_port "STOP SLAVE; RESET SLAVE ALL;
      CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$my_primary_port,
        MASTER_USER='replicator', MASTER_USE_GTID=slave_pos;
      START SLAVE;"
  fi
  echo "MariaDB: primary 127.0.0.1:$my_primary_port, replica 127.0.0.1:$my_replica_port" \
    "(files and logs: $my_dir)"
}

my_stop() {
  local pid
  for node in replica primary; do
    pid=$(cat "$my_dir/$node.pid" 2>/dev/null || true)
    # Only a mariadbd of this pair: the pid file is the server's own (owned by mysql)
    if [ -n "$pid" ] && [ "$(ps -p "$pid" -o comm= 2>/dev/null)" = mariadbd ]; then
      kill "$pid"
      for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    fi
  done
  echo "MariaDB pair stopped"
}

for backend in "${backends[@]}"; do
  case "$action:$backend" in
    start:postgresql) pg_start ;;
    stop:postgresql) pg_stop ;;
    start:mariadb) my_start ;;
    stop:mariadb) my_stop ;;
    *) echo "usage: bash tools/replicas.sh [start|stop] [postgresql|mariadb ...]" >&2; exit 2 ;;
  esac
done
