"""Everything that differs between the guide's three backends, in one place.

Notebooks and helpers ask this module instead of growing ``if backend == ...`` chains: which
backend an engine is, what a namespace is there, how a connection attempt and a statement are
bounded in time, how to ask its version or a connection's server-side id, how to end a
connection from outside, how to write an upsert, which errors are worth retrying, the
isolation level a transaction gets by default, how to lock a database while migrating it, and
how a primary and its replicas tell how far the replication has got.
``BackendFacts`` holds the differences that are data; the functions below hold the ones that
are code. No other module of ``snippets`` compares backend names (a test checks it).

* SQLite through ``aiosqlite``: a file, no server; one writer at a time.
* PostgreSQL through ``asyncpg``.
* MySQL and MariaDB through ``aiomysql`` (``mysql+aiomysql://`` or ``mariadb+aiomysql://``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Table, text
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert

Backend = Literal["sqlite", "postgresql", "mysql"]


@dataclass(frozen=True)
class ReplicationFacts:
    """How a primary and its read replicas tell how far replication has got: a position in the
    primary's log (PostgreSQL: a WAL LSN; MySQL/MariaDB: a GTID position)."""

    primary_position: str
    """On the primary: how far its log has got (after a commit, a position that includes it)."""
    replica_position: str
    """On a replica: how far it has applied the primary's log."""
    replica_reached: str
    """On a replica: true if it has applied the primary's log up to ``:position``."""
    pause_replay: str
    """On a replica: stop applying the primary's log (a lag made on purpose)."""
    resume_replay: str
    lag_seconds: str
    """On a replica: how many seconds it is behind, as the server itself reports it, in the
    column ``lag_column`` of the one row returned; ``NULL`` where the server does not know."""
    lag_column: str
    lag_known_while_paused: bool
    """Whether the replica still reports a lag in seconds while its replay is paused."""


@dataclass(frozen=True)
class BackendFacts:
    """What the notebooks and helpers need to know about one backend."""

    label: str
    async_driver: str
    """The asyncio driver this guide uses, as a URL names it (``postgresql+asyncpg://``)."""
    sync_default: str
    """The synchronous driver SQLAlchemy picks for a URL that names none."""
    sync_driver: str
    """The synchronous driver this project installs, as a URL names it (``make bench-web``'s
    comparison with synchronous SQLModel)."""
    version_sql: str
    connection_id_sql: str | None
    """The server-side id of the current connection; ``None`` where there is no server."""
    default_isolation: str
    """The isolation level of a transaction that asks for none."""
    has_server: bool
    upsert_update_rows: int
    """The affected-row count of one row that an upsert updated (MySQL counts it twice)."""
    orm_insert_batches: bool
    """The ORM inserts several new objects in one ``INSERT ... RETURNING`` (else one each)."""
    locks_rows: bool
    """Writers lock rows (``SELECT ... FOR UPDATE`` exists); else one writer at a time holds
    the whole database (SQLite, with ``make_engine``'s ``BEGIN IMMEDIATE``)."""
    str_without_length: str = "VARCHAR"
    """The column type SQLModel creates for a ``str`` field with no ``max_length``."""
    enforces_varchar_length: bool = True
    """A value longer than a ``VARCHAR(n)`` is refused (SQLite stores it whole)."""
    keeps_microseconds: bool = True
    """A plain ``DateTime`` column keeps microseconds (MySQL/MariaDB's ``DATETIME`` drops them
    unless declared ``DATETIME(6)``, e.g. ``sa_type=mysql.DATETIME(fsp=6)``)."""
    drains_abandoned_stream: bool = False
    """A stream (server-side cursor) left unfinished is read to its end, with aiomysql's
    "Previous unbuffered result was left incomplete" warning, before its connection can run
    the next statement (MySQL/MariaDB); elsewhere the cursor is simply closed."""
    loop_bound_connections: bool = True
    """A driver connection works only on the event loop that opened it (asyncpg, aiomysql).
    aiosqlite's happen to work on any loop: never rely on it (notebook 09)."""
    cancel_stops_statement: bool = True
    """Cancelling a task that waits for a statement (``asyncio.timeout``) stops the statement on
    the server: asyncpg sends PostgreSQL a cancel request. aiomysql only drops its connection,
    and the server runs the statement to its end; aiosqlite's thread runs it to its end too."""
    naive_column_refuses_aware: bool = False
    """An aware ``datetime`` sent for a naive column (``DateTime(timezone=False)``) is refused
    (asyncpg); aiosqlite and aiomysql store it with its offset dropped."""
    alters_columns: bool = True
    """``ALTER TABLE`` can change a column (type, nullability) and add or drop constraints.
    SQLite's can add, rename and drop columns only: Alembic's batch mode copies the table."""
    transactional_ddl: bool = True
    """DDL runs inside the migration's transaction, so a migration that fails half-way leaves
    nothing behind (SQLite: with ``make_engine``'s ``BEGIN`` and ``migrations/env.py``'s one
    transaction). MySQL/MariaDB commit each DDL statement implicitly: the steps before the
    failure stay, and the version table still names the revision before it (notebook 12)."""
    fills_new_not_null_column: bool = False
    """``ADD COLUMN ... NOT NULL`` without a default, on a table with rows, succeeds and fills
    the rows with the type's implicit default (``''``, ``0``): MySQL/MariaDB. PostgreSQL and
    SQLite refuse it."""
    serialises_migrations: bool = False
    """Two processes migrating at once take turns even without a lock (SQLite: the migration's
    ``BEGIN IMMEDIATE`` is the whole database's write lock). Elsewhere both run the migration
    and the second fails: ``migration_lock`` prevents it."""
    explicit_id_advances_counter: bool = True
    """A row inserted with an explicit integer primary key moves the table's counter past it
    (SQLite's rowid, MySQL/MariaDB's AUTO_INCREMENT). A PostgreSQL sequence does not move, so
    a later insert that lets it choose can collide: never let a client choose ids (notebook 13)."""
    float_is_single_precision: bool = False
    """A ``float`` field is a 4-byte ``FLOAT`` with about 7 significant digits: 123456.78 comes
    back as 123457.0 (MySQL/MariaDB). PostgreSQL's ``FLOAT`` and SQLite's ``REAL`` are 8 bytes.
    Money belongs in integer cents, or ``Numeric`` (notebook 13)."""
    negative_limit_means_all: bool = False
    """``LIMIT -1`` is accepted and means no limit, and a negative ``OFFSET`` counts as 0
    (SQLite). PostgreSQL and MySQL/MariaDB refuse both with an error: a page size taken from the
    query string unchecked is a 500 there and every row here (notebook 13)."""
    row_level_security: bool = False
    """Row-level security: a table's policy hides other tenants' rows from a role (PostgreSQL's
    ``CREATE POLICY``, ``snippets.tenants.row_level_security``)."""
    namespace_kind: Literal["file", "schema", "database"] = "database"
    """What a namespace of ``open_engine`` is: a SQLite file of its own, a PostgreSQL schema
    (first on ``search_path``), a MySQL/MariaDB database (``<database>_<namespace>``)."""
    connect_timeout_argument: str | None = None
    """The driver's connect argument that bounds a connection attempt (asyncpg ``timeout``,
    aiomysql ``connect_timeout``); SQLite opens a file and needs none."""
    statement_limit: Literal["server setting", "session variable", "progress handler"] = (
        "session variable"
    )
    """How ``make_engine(statement_timeout=...)`` limits a statement: PostgreSQL's
    ``statement_timeout`` sent at connect time, MariaDB's ``max_statement_time`` (MySQL's
    ``max_execution_time``) set on each new connection, SQLite's progress handler."""
    driver_begins_transactions: bool = False
    """The driver, not SQLAlchemy, decides when a transaction begins (Python's ``sqlite3``
    "legacy transaction control", under aiosqlite too): ``make_engine`` takes it back."""
    enforces_foreign_keys: bool = True
    """FOREIGN KEY constraints are enforced without asking (SQLite: per connection, on
    ``PRAGMA foreign_keys=ON``, which ``make_engine`` sends)."""
    slow_statement_sql: str = "SELECT SLEEP(:seconds) {comment}"
    """A read-only statement that runs for about ``:seconds`` (notebooks 07 and 11); SQLite has
    no sleep function, so it counts a recursive CTE (a real query, which its progress handler
    can stop, unlike a Python function), sized by ``SQLITE_ROWS_PER_SECOND``."""
    active_statements_sql: str | None = (
        "SELECT count(*) FROM information_schema.PROCESSLIST WHERE command = 'Query'"
        " AND info LIKE :pattern AND id <> CONNECTION_ID()"
    )
    """How many other connections run a statement LIKE ``:pattern``; no server, no answer."""
    kill_connection_sql: str | None = "KILL {id}"
    """End a server connection from another one, by its id; ``None`` where there is none."""
    empty_table_sql: tuple[str, ...] = (
        "DELETE FROM {table}",
        "ALTER TABLE {table} AUTO_INCREMENT = 1",
    )
    """Delete a table's rows and restart its generated ids at 1 (``testing.empty_tables``):
    MySQL/MariaDB's counter is reset by hand; PostgreSQL's ``TRUNCATE ... RESTART IDENTITY``
    restarts its sequences (``CASCADE``: a table still referenced cannot be truncated alone);
    SQLite gives an ``INTEGER PRIMARY KEY`` the largest rowid plus one, so 1 once it is empty."""
    snapshot_update: Literal["serialization failure", "applied to the latest row"] | None = (
        "applied to the latest row"
    )
    """What an ``UPDATE`` does, inside a ``REPEATABLE READ`` transaction, to a row another
    transaction changed after the snapshot: PostgreSQL refuses it (SQLSTATE 40001, retry the
    transaction); MySQL/MariaDB apply it to the latest committed row, silently. SQLite has no
    ``REPEATABLE READ``: its writers take turns (notebook 06)."""
    insert_returning_varies: bool = False
    """Whether ``INSERT ... RETURNING`` exists depends on the server: MariaDB 10.5+ has it, MySQL
    8 has none, and the ORM then inserts new objects one statement each (notebook 04)."""
    max_connections_sql: str | None = "SELECT @@max_connections"
    """The server's connection limit, which every application's pools share (notebook 07)."""
    default_max_connections: int | None = 151
    """That limit as the server ships it (PostgreSQL 100, MySQL/MariaDB 151)."""
    idle_timeout_variable: str | None = "wait_timeout"
    """A server setting that closes connections idle longer than it, by default (MySQL/MariaDB's
    ``wait_timeout``, 8 hours): a pool must recycle or pre-ping them (notebook 07)."""
    pooled_by_pgbouncer: bool = False
    """PgBouncer can pool this server's connections; in its transaction mode asyncpg's prepared
    statements need the settings notebook 07 shows (PostgreSQL)."""
    loads_local_infile: bool = False
    """``LOAD DATA LOCAL INFILE`` loads a file the client sends (MySQL/MariaDB, notebook 10)."""
    free_autocommit_switch: bool = True
    """A pooled connection switches to ``AUTOCOMMIT`` for one checkout, and back, with no round
    trip (asyncpg and aiosqlite keep the mode client-side), so a read session in ``AUTOCOMMIT``
    saves the ``BEGIN``/``ROLLBACK`` around its statements (``snippets.api.ReadSessionDep``).
    aiomysql sends ``SET autocommit`` at checkout and again at return, more round trips than
    the implicit transaction it would avoid (MySQL/MariaDB need no ``BEGIN``): measured in
    notebook 08, a read was about 1.4x slower that way on MariaDB and 2.2x faster on PostgreSQL."""
    refuses_io_outside_greenlet: bool = False
    """The driver's dialect refuses a statement outside SQLAlchemy's async bridge (a lazy load
    in async code) with one clean ``MissingGreenlet`` and nothing left behind: asyncpg's closes
    the coroutine it had made. aiosqlite's and aiomysql's do not (a ``StatementError``, or a
    driver coroutine never awaited, warned about on stderr later), so ``make_engine`` installs
    its ``before_execute`` guard there only: an engine's events are dispatched at every
    checkout and statement (chapter 14 measures what the guard costs, side by side)."""
    copies_rows: bool = False
    """The server loads rows from a binary ``COPY`` stream, the fastest way in (PostgreSQL,
    through asyncpg's ``copy_records_to_table``; ``snippets.bulk.bulk_insert``)."""
    has_pragmas: bool = False
    """Settings are ``PRAGMA name=value`` per connection (SQLite's journal and sync modes)."""
    cancel_waits_for_statement: bool = False
    """SQLite: a cancelled statement is not interrupted, and closing its connection waits for
    it, so the ``TimeoutError`` arrives only when the statement ends; the closed connection then
    keeps the database locked until the garbage collector frees the statement (notebook 11)."""
    default_port: int | None = 3306
    """The server's port when a URL names none."""
    namespace_connections_sql: str | None = (
        "SELECT id FROM information_schema.PROCESSLIST WHERE db = :name"
    )
    """The ids of the server connections a namespace has open, ``:name`` being its database
    (MySQL/MariaDB) or, on PostgreSQL, the ``application_name`` its connections give (the
    namespace: ``connect_arguments``)."""
    replication: ReplicationFacts | None = None
    """How the server's read replicas tell how far they have got (``None``: no replicas)."""


FACTS: dict[Backend, BackendFacts] = {
    "sqlite": BackendFacts(
        "SQLite",
        "aiosqlite",
        "pysqlite",
        "pysqlite",
        "SELECT sqlite_version()",
        None,
        "SERIALIZABLE",
        has_server=False,
        upsert_update_rows=1,
        orm_insert_batches=False,
        locks_rows=False,
        enforces_varchar_length=False,
        loop_bound_connections=False,
        cancel_stops_statement=False,
        cancel_waits_for_statement=True,
        alters_columns=False,
        serialises_migrations=True,
        negative_limit_means_all=True,
        namespace_kind="file",
        snapshot_update=None,
        max_connections_sql=None,
        default_max_connections=None,
        idle_timeout_variable=None,
        has_pragmas=True,
        default_port=None,
        namespace_connections_sql=None,
        statement_limit="progress handler",
        driver_begins_transactions=True,
        enforces_foreign_keys=False,
        slow_statement_sql="WITH RECURSIVE counter(n) AS (SELECT 1 UNION ALL SELECT n + 1"
        " FROM counter WHERE n < :seconds * {rows_per_second}) SELECT count(*) FROM counter"
        " {comment}",
        active_statements_sql=None,
        kill_connection_sql=None,
        empty_table_sql=("DELETE FROM {table}",),
    ),
    "postgresql": BackendFacts(
        "PostgreSQL",
        "asyncpg",
        "psycopg, in SQLAlchemy 2.1",
        "psycopg",
        "SELECT version()",
        "SELECT pg_backend_pid()",
        "READ COMMITTED",
        has_server=True,
        upsert_update_rows=1,
        orm_insert_batches=True,
        locks_rows=True,
        naive_column_refuses_aware=True,
        explicit_id_advances_counter=False,
        namespace_kind="schema",
        row_level_security=True,
        snapshot_update="serialization failure",
        max_connections_sql="SELECT setting::int FROM pg_settings WHERE name = 'max_connections'",
        default_max_connections=100,
        idle_timeout_variable=None,
        pooled_by_pgbouncer=True,
        copies_rows=True,
        refuses_io_outside_greenlet=True,
        default_port=5432,
        namespace_connections_sql=(
            "SELECT pid FROM pg_stat_activity WHERE application_name = :name"
        ),
        connect_timeout_argument="timeout",
        statement_limit="server setting",
        slow_statement_sql="SELECT pg_sleep(:seconds) {comment}",
        active_statements_sql="SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
        " AND query LIKE :pattern AND pid <> pg_backend_pid()",
        kill_connection_sql="SELECT pg_terminate_backend({id})",
        empty_table_sql=("TRUNCATE {table} RESTART IDENTITY CASCADE",),
        replication=ReplicationFacts(
            primary_position="SELECT pg_current_wal_lsn()::text",
            replica_position="SELECT pg_last_wal_replay_lsn()::text",
            # asyncpg would send a pg_lsn parameter as a number: the position goes as text
            replica_reached="SELECT pg_last_wal_replay_lsn()"
            " >= CAST(CAST(:position AS text) AS pg_lsn)",
            pause_replay="SELECT pg_wal_replay_pause()",
            resume_replay="SELECT pg_wal_replay_resume()",
            # The age of the last transaction replayed, while some received WAL waits to be
            # replayed; 0 when all of it is (else an idle primary would look ever more behind)
            lag_seconds="SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
            " THEN 0 ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END AS lag",
            lag_column="lag",
            lag_known_while_paused=True,
        ),
    ),
    "mysql": BackendFacts(
        "MySQL/MariaDB",
        "aiomysql",
        "mysqlclient (MySQLdb)",
        "pymysql",
        "SELECT VERSION()",
        "SELECT CONNECTION_ID()",
        "REPEATABLE READ",
        has_server=True,
        float_is_single_precision=True,
        upsert_update_rows=2,
        # MariaDB 10.5+ has INSERT ... RETURNING; MySQL 8 has none: one INSERT each there.
        orm_insert_batches=True,
        locks_rows=True,
        str_without_length="VARCHAR(255)",  # MySQL requires a length; SQLModel picks 255
        keeps_microseconds=False,
        drains_abandoned_stream=True,
        cancel_stops_statement=False,
        transactional_ddl=False,
        fills_new_not_null_column=True,
        connect_timeout_argument="connect_timeout",
        free_autocommit_switch=False,
        insert_returning_varies=True,
        loads_local_infile=True,
        replication=ReplicationFacts(
            primary_position="SELECT @@gtid_binlog_pos",
            replica_position="SELECT @@gtid_slave_pos",
            replica_reached="SELECT MASTER_GTID_WAIT(:position, 0) = 0",
            # The replica keeps receiving the primary's log; it stops applying it
            pause_replay="STOP SLAVE SQL_THREAD",
            resume_replay="START SLAVE SQL_THREAD",
            # NULL while the applier (the SQL thread) is stopped, whatever the backlog
            lag_seconds="SHOW SLAVE STATUS",
            lag_column="Seconds_Behind_Master",
            lag_known_while_paused=False,
        ),
    ),
}

STATEMENT_TIMEOUT_SQLSTATE = "57014"
"""PostgreSQL's query_canceled: ``statement_timeout`` (or a cancel request) stopped a statement."""
STATEMENT_TIMEOUT_MYSQL_ERRORS = frozenset({1969, 3024})
"""MariaDB's ER_STATEMENT_TIMEOUT (``max_statement_time``) and MySQL's ER_QUERY_TIMEOUT
(``max_execution_time``)."""
SQLITE_ROWS_PER_SECOND = 5_000_000
"""About how many rows of a recursive CTE SQLite counts per second on one core (measured on the
guide's 2-core machines: 10 million in 1.8 s); SQLite's ``slow_statement_sql`` is sized by it."""

MIGRATION_LOCK = "alembic-migrations"
"""The name of the lock ``migration_lock`` takes, prefixed with the schema or database."""
MIGRATION_WAIT = 600.0
"""Seconds a migration waits for another process's: ``migration_lock``'s wait on MySQL/MariaDB,
and on SQLite the busy timeout (there the lock is the database's write lock)."""

READ_ONLY_SQLSTATE = "25006"
"""PostgreSQL's read_only_sql_transaction: a write sent to a hot standby."""
READ_ONLY_MYSQL_ERROR = 1290
"""MySQL/MariaDB's ER_OPTION_PREVENTS_STATEMENT: a write sent to a ``read_only`` replica."""

RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization_failure and deadlock_detected."""
RETRYABLE_MYSQL_ERRORS = frozenset({1213, 1205})
"""MySQL/MariaDB's ER_LOCK_DEADLOCK and ER_LOCK_WAIT_TIMEOUT."""


Bind = AsyncEngine | AsyncConnection | Engine | Connection | URL


def backend_of(target: Bind) -> Backend:
    """The backend of an engine, a connection or a URL (``mariadb`` counts as ``mysql``)."""
    url = target if isinstance(target, URL) else target.engine.url
    name = url.get_backend_name()
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name in ("sqlite", "postgresql"):
        return name  # type: ignore[return-value]
    raise ValueError(f"not a backend of this guide: {name!r}")


def facts(target: Bind) -> BackendFacts:
    """The ``BackendFacts`` of ``target``'s backend."""
    return FACTS[backend_of(target)]


def connect_arguments(
    url: URL,
    given: Mapping[str, Any],
    *,
    connect_timeout: float,
    search_path: str | None = None,
    statement_timeout: float | None = None,
) -> dict[str, Any]:
    """The driver's ``connect_args`` for ``make_engine``: ``given``, plus a bound on how long a
    connection attempt may take and, on PostgreSQL, the server settings a namespace
    (``search_path``, and ``application_name``) and a statement time limit are sent as when
    asyncpg connects."""
    arguments = dict(given)
    backend_facts = facts(url)
    if backend_facts.connect_timeout_argument is not None:
        arguments.setdefault(backend_facts.connect_timeout_argument, connect_timeout)
    settings = dict(arguments.get("server_settings", {}))
    if search_path is not None and backend_facts.namespace_kind == "schema":
        settings["search_path"] = search_path
        # Its connections then show whose they are in pg_stat_activity.
        settings.setdefault("application_name", search_path)
    if statement_timeout is not None and backend_facts.statement_limit == "server setting":
        settings["statement_timeout"] = str(round(statement_timeout * 1000))
    if settings:
        arguments["server_settings"] = settings
    return arguments


def statement_limit_sql(dialect: Dialect, seconds: float) -> str:
    """The ``SET SESSION`` that limits each statement of a MySQL/MariaDB connection. Ask after
    the dialect's first connect, which tells MariaDB (``max_statement_time``, in seconds) from
    MySQL (``max_execution_time``: SELECT statements only, in whole milliseconds)."""
    if getattr(dialect, "is_mariadb", False):
        return f"SET SESSION max_statement_time = {seconds:f}"
    return f"SET SESSION max_execution_time = {round(seconds * 1000)}"


def is_statement_timeout(error: BaseException) -> bool:
    """The database stopped a statement that ran longer than its statement time limit.

    PostgreSQL's ``statement_timeout`` (SQLSTATE 57014), MariaDB's ``max_statement_time`` (1969),
    MySQL's ``max_execution_time`` (3024), and SQLite's "interrupted" (the progress handler of
    ``make_engine(statement_timeout=...)``).
    """
    if not isinstance(error, DBAPIError):
        return False
    original = error.orig
    if getattr(original, "sqlstate", None) == STATEMENT_TIMEOUT_SQLSTATE:
        return True
    if mysql_error_code(error) in STATEMENT_TIMEOUT_MYSQL_ERRORS:
        return True
    return isinstance(error, OperationalError) and str(original) == "interrupted"


CONNECTION_FAILURE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
"""PostgreSQL's SQLSTATEs (or their class) for a connection that failed or was ended: class 08
(connection exception), and the server shutting down or starting up (57P01-57P03)."""
CONNECTION_FAILURE_MYSQL_ERRORS = frozenset({2002, 2003, 2006, 2013, 2055})
"""MySQL/MariaDB client errors for a server that cannot be reached (2002, 2003) or a connection
lost (2006 "server has gone away", 2013 and 2055 "lost connection")."""


def is_connection_failure(error: BaseException) -> bool:
    """The database could not be reached, or the connection to it was lost: a connection
    refused, reset or timed out, a server shutting down. Retrying later may succeed.

    SQLAlchemy marks a connection it discarded for such an error (``connection_invalidated``).
    A failure to open a connection is raised by asyncpg as Python's own ``OSError`` (refused,
    ``TimeoutError``), which SQLAlchemy does not wrap; aiomysql's is an ``OperationalError``
    (2003). A statement time limit is not one: see ``is_statement_timeout``.
    """
    if isinstance(error, OSError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    if sqlstate.startswith(CONNECTION_FAILURE_SQLSTATES):
        return True
    return mysql_error_code(error) in CONNECTION_FAILURE_MYSQL_ERRORS


def lock_wait_options(backend: Backend, seconds: float) -> tuple[dict[str, Any], str | None]:
    """How long a writer waits for another's lock: ``(connect_args, statement)``.

    SQLite: the driver's busy ``timeout``, a connect argument. PostgreSQL: ``SET LOCAL
    lock_timeout`` in the transaction. MySQL/MariaDB: ``SET SESSION innodb_lock_wait_timeout``,
    whole seconds only (rounded; 0 means do not wait at all).
    """
    if backend == "sqlite":
        return {"timeout": seconds}, None
    if backend == "postgresql":
        return {}, f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'"
    return {}, f"SET SESSION innodb_lock_wait_timeout = {round(seconds)}"


async def raw_insert_many(
    conn: AsyncConnection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert ``rows`` with the driver's own ``executemany``, in one transaction: the baseline
    that the ORM and Core are measured against (notebook 04).

    Each driver has its own placeholders: asyncpg ``$1``, aiosqlite ``?``, aiomysql ``%s``.
    """
    backend = backend_of(conn)
    driver: Any = (await conn.get_raw_connection()).driver_connection  # untyped drivers
    positions = range(1, len(columns) + 1)
    marks = {
        "postgresql": [f"${n}" for n in positions],
        "sqlite": ["?" for _ in positions],
        "mysql": ["%s" for _ in positions],
    }[backend]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})"
    if backend == "postgresql":  # executemany is atomic on its own
        await driver.executemany(sql, rows)
    elif backend == "sqlite":  # a transaction begun explicitly (notebook 06)
        await driver.execute("BEGIN")
        await driver.executemany(sql, rows)
        await driver.commit()
    else:  # aiomysql rewrites an executemany INSERT into multi-row VALUES itself
        async with driver.cursor() as cursor:
            await cursor.executemany(sql, rows)
        await driver.commit()


def upsert(
    bind: Bind,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: Sequence[str],
    update: Sequence[str],
) -> Insert:
    """``INSERT`` ``rows``; where ``key`` (a unique constraint) exists, update ``update``.

    SQLite and PostgreSQL: ``ON CONFLICT (key) DO UPDATE``; MySQL/MariaDB: ``ON DUPLICATE KEY
    UPDATE`` (any unique key, so ``key`` must be the table's only one besides the primary key).
    """
    backend = backend_of(bind)
    if backend == "mysql":
        statement: Any = mysql.insert(table).values(list(rows))
        return statement.on_duplicate_key_update(  # type: ignore[no-any-return]
            {column: statement.inserted[column] for column in update}
        )
    dialect_insert = postgresql.insert if backend == "postgresql" else sqlite.insert
    statement = dialect_insert(table).values(list(rows))
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=list(key),
        set_={column: statement.excluded[column] for column in update},
    )


CHECK_VIOLATION_MYSQL_ERRORS = frozenset({4025, 3819})
"""A CHECK constraint failed: MariaDB's 4025 and MySQL's 3819, which PyMySQL (under aiomysql)
raises as ``OperationalError``, not ``IntegrityError``."""


def is_constraint_violation(error: BaseException) -> bool:
    """The database refused a row for a constraint: unique, foreign key, not null or CHECK.

    Every backend raises ``IntegrityError`` for most of these, but MySQL/MariaDB report a failed
    CHECK constraint as an ``OperationalError``.
    """
    if isinstance(error, IntegrityError):
        return True
    return isinstance(error, DBAPIError) and mysql_error_code(error) in CHECK_VIOLATION_MYSQL_ERRORS


def mysql_error_code(error: DBAPIError) -> int | None:
    """PyMySQL's error number: the first argument of the driver's exception (``None`` for
    another driver's)."""
    args: tuple[object, ...] = getattr(error.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_retryable_error(error: BaseException) -> bool:
    """A database error after which running the same transaction again may succeed."""
    if not isinstance(error, DBAPIError):
        return False
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    if mysql_error_code(error) in RETRYABLE_MYSQL_ERRORS:
        return True
    return isinstance(error, OperationalError) and "database is locked" in str(original)


def is_read_only_refusal(error: BaseException) -> bool:
    """A write refused because the server is a read-only replica."""
    if not isinstance(error, DBAPIError):
        return False
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return sqlstate == READ_ONLY_SQLSTATE or mysql_error_code(error) == READ_ONLY_MYSQL_ERROR


@contextmanager
def migration_lock(
    connection: Connection, name: str = MIGRATION_LOCK, *, wait: float = MIGRATION_WAIT
) -> Iterator[None]:
    """Hold a lock so that one process at a time migrates this database (use it in ``env.py``).

    Two deploys, or two app workers migrating at start-up, would otherwise both read "not yet
    upgraded" and both run the same migration; the second fails half-way (notebook 12 shows it).

    * PostgreSQL: ``pg_advisory_xact_lock``, held until the transaction ends. Alembic runs all
      migrations in one transaction there (transactional DDL), so the lock covers them all;
      a transaction-level lock also works behind PgBouncer's transaction pooling.
    * MySQL/MariaDB: ``GET_LOCK``, a named lock of the connection, released on the way out.
      DDL commits implicitly there, so no transaction could hold a lock across migrations.
      It waits at most ``wait`` seconds (MariaDB answers a negative wait, MySQL's "forever",
      with NULL at once: no lock), and its answer is checked.
    * SQLite: nothing to take. ``snippets.make_engine`` begins every transaction with ``BEGIN
      IMMEDIATE``, the database's write lock, and ``env.py`` runs the migrations in one
      transaction: the second process waits for the first (up to its busy timeout).

    Take it inside the transaction that runs the migrations and before Alembic reads the
    current version, so that the second process reads the version the first one wrote. The
    lock is the current schema's (PostgreSQL) or database's (MySQL/MariaDB): namespaces that
    migrate side by side do not wait for each other.

    Raises:
        TimeoutError: MySQL/MariaDB only, the lock was not free within ``wait`` seconds.
    """
    backend = backend_of(connection)
    if backend == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.' || :name))"),
            {"name": name},
        )
        yield
    elif backend == "mysql":
        taken = connection.execute(
            text("SELECT GET_LOCK(CONCAT(DATABASE(), '.', :name), :wait)"),
            {"name": name, "wait": wait},
        ).scalar()
        if taken != 1:
            raise TimeoutError(f"another process held the migration lock {name!r} for {wait:g} s")
        try:
            yield
        finally:
            connection.execute(
                text("SELECT RELEASE_LOCK(CONCAT(DATABASE(), '.', :name))"), {"name": name}
            )
    else:
        yield
