"""Create async engines for SQLite (aiosqlite), PostgreSQL (asyncpg) and MySQL/MariaDB (aiomysql).

``make_engine`` is the factory: it validates the URL (see ``snippets.config``), bounds how long a
connection attempt may take, and on SQLite switches foreign-key enforcement on and lets
SQLAlchemy, not the driver, begin transactions (so that SAVEPOINTs and reads are transactional;
SQLite transactions take the write lock when they begin; ``AUTOCOMMIT`` still works). Like
``create_async_engine`` it connects lazily.

``open_engine`` is what notebooks and tests call: it also connects once, so that a wrong host or
a stopped server is reported within seconds as one clear ``DatabaseUnreachableError``, and it
can give its caller a *namespace* of its own, so that many notebooks and test workers share one
database without seeing each other's tables:

* on SQLite a namespace is a database file of its own (``build/db/guide.<namespace>.sqlite3``);
* on PostgreSQL it is a schema of its own, put first on the connection's ``search_path``;
* on MySQL/MariaDB it is a database of its own, ``<database>_<namespace>``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Dialect
from sqlalchemy.exc import DBAPIError, MissingGreenlet, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import await_, in_greenlet

from snippets.backends import connect_arguments, facts, statement_limit_sql
from snippets.config import DatabaseConfigError, database_url, is_sqlite_file, shown_url
from snippets.pool import PoolSettings

CONNECT_TIMEOUT = 5.0
"""Seconds a connection attempt may take before it is reported as unreachable."""

_NAMESPACE = re.compile(r"[a-z][a-z0-9_]{0,62}")


class DatabaseUnreachableError(ConnectionError):
    """The database did not accept a connection; the message says where and why."""


class LostConnectionResetFilter(logging.Filter):
    """The pool's "Exception during reset or similar" for a connection that was lost while lent
    (the server ended it, or the network): one line instead of a traceback, as the pool discards
    that connection anyway. ``make_engine`` installs one per dialect on its pool's logger."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(type(dialect).__name__)
        self.dialect = dialect

    def filter(self, record: logging.LogRecord) -> bool:
        error: Any = record.exc_info[1] if record.exc_info else None
        if (
            record.msg == "Exception during reset or similar"
            and isinstance(error, Exception)
            and self.dialect.is_disconnect(error, None, None)  # type: ignore[arg-type]
        ):
            record.msg = "A connection lost while lent was discarded on its return (%s)"
            record.args = (type(error).__name__,)  # never its message
            record.exc_info = record.exc_text = None
        return True


def _log_lost_connections_in_one_line(engine: AsyncEngine) -> None:
    pool_logger: Any = engine.pool.logger
    logger: logging.Logger = getattr(pool_logger, "logger", pool_logger)  # echo_pool wraps it
    name = type(engine.dialect).__name__
    if not any(getattr(each, "name", None) == name for each in logger.filters):
        logger.addFilter(LostConnectionResetFilter(engine.dialect))


def enable_sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
    """``connect`` event handler: SQLite enforces FOREIGN KEY constraints only when asked to.

    The setting is per connection, so it is made on every new one the pool opens.
    """
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


SQLITE_BEGIN = "BEGIN IMMEDIATE"
"""How ``make_engine`` begins SQLite transactions: taking the write lock at once (see below)."""


def begin_sqlite_transaction(conn: Connection) -> None:
    """``begin`` event handler: SQLAlchemy, not the ``sqlite3`` module, begins transactions.

    Python's ``sqlite3`` module (under aiosqlite too) runs in "legacy transaction control": it
    sends ``BEGIN`` only before INSERT/UPDATE/DELETE, never before a SELECT or a ``SAVEPOINT``.
    A ``SAVEPOINT`` sent first then opens a transaction of its own, and releasing it commits for
    real; reads run outside any transaction, so a read-modify-write loses concurrent updates.
    SQLAlchemy's documented recipe: the driver's handling off (``isolation_level = None``), and
    the transaction begun whenever SQLAlchemy begins one.

    ``BEGIN IMMEDIATE`` rather than a plain (deferred) ``BEGIN``: a deferred transaction that
    has read and then writes, while another writer is active, fails at once with "database is
    locked" (waiting could deadlock, so SQLite does not wait). An immediate one takes the write
    lock at its start: transactions run one after another, each waiting up to the busy timeout.

    Done at every begin rather than once per connection, because setting any isolation level
    turns the driver's handling back on, and that setting outlives the checkout. A connection in
    ``AUTOCOMMIT`` gets no ``BEGIN``: each statement commits on its own. Outside SQLAlchemy's
    async bridge (a lazy load in async code) it does nothing: no I/O can run there, and a failed
    begin would leave the pool to roll back a connection it cannot reach, logging a traceback;
    ``refuse_io_outside_greenlet`` raises the error instead, before the first statement.
    """
    if not in_greenlet() or conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return
    conn.connection.dbapi_connection.isolation_level = None  # type: ignore[union-attr]
    conn.exec_driver_sql(SQLITE_BEGIN)


def refuse_io_outside_greenlet(conn: Connection, *args: Any) -> None:
    """``before_execute`` guard: no statement is sent outside SQLAlchemy's async bridge.

    A lazy load or an expired attribute read in async code tries to run a statement from a
    plain attribute access, where nothing can be awaited. SQLAlchemy then raises
    ``MissingGreenlet`` when the driver is called: as it is on asyncpg, wrapped in a
    ``StatementError`` on aiosqlite and aiomysql, and on aiosqlite only after the driver's
    cursor coroutine was created, so that Python later warns on stderr that it "was never
    awaited". Raising the same error here, before any driver call, leaves nothing behind and is
    the same on every backend.
    """
    if not in_greenlet():
        raise MissingGreenlet(
            "greenlet_spawn has not been called; can't call await_() here. Was IO attempted in "
            "an unexpected place? (a lazy load or an expired attribute read in async code: "
            "load it up front, or await it)"
        )


class SQLiteStatementDeadline:
    """A statement time limit for SQLite, which has no server to enforce one.

    SQLite calls a connection's *progress handler* every ``STEPS`` virtual-machine steps; a
    handler that returns true interrupts the statement, which fails with ``OperationalError:
    interrupted`` and leaves the connection usable. ``arm`` (a ``before_cursor_execute``
    handler) starts the clock of each statement and ``disarm`` (``after_cursor_execute``) stops
    it: statements are limited, not the time between them. (The aiosqlite dialect fetches a
    result's rows before ``after_cursor_execute``, so fetching counts as part of the statement.)
    """

    STEPS = 1000
    """Virtual-machine steps between two calls of the handler (a few microseconds)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def install(self, dbapi_connection: Any, connection_record: Any) -> None:
        """``connect`` handler: give each new connection a deadline and the handler."""
        deadline = [float("inf")]
        connection_record.info["statement_deadline"] = deadline
        handler = partial(_past, deadline)
        await_(dbapi_connection.driver_connection.set_progress_handler(handler, self.STEPS))

    def arm(self, conn: Connection, *args: Any) -> None:
        """``before_cursor_execute`` handler: this statement may run ``seconds`` from now."""
        conn.connection.info["statement_deadline"][0] = time.monotonic() + self.seconds

    def disarm(self, conn: Connection, *args: Any) -> None:
        """``after_cursor_execute`` handler: the statement is done; no limit until the next."""
        conn.connection.info["statement_deadline"][0] = float("inf")


def _past(deadline: list[float]) -> bool:
    return time.monotonic() > deadline[0]


def _limit_statement_time(engine: AsyncEngine, seconds: float) -> None:
    """The connection-level half of ``make_engine(statement_timeout=...)``, where the limit is
    not a server setting sent at connect time (``snippets.backends.connect_arguments``)."""
    how = facts(engine).statement_limit
    if how == "progress handler":
        deadline = SQLiteStatementDeadline(seconds)
        event.listen(engine.sync_engine, "connect", deadline.install)
        event.listen(engine.sync_engine, "before_cursor_execute", deadline.arm)
        event.listen(engine.sync_engine, "after_cursor_execute", deadline.disarm)
    elif how == "session variable":

        def set_session_limit(dbapi_connection: Any, connection_record: Any) -> None:
            # Runs after the dialect's own first-connect handler, which read the server version.
            cursor = dbapi_connection.cursor()
            cursor.execute(statement_limit_sql(engine.dialect, seconds))
            cursor.close()

        event.listen(engine.sync_engine, "connect", set_session_limit)


def namespaced_url(url: URL, namespace: str | None) -> URL:
    """The URL of ``namespace``: on SQLite its own file beside the configured one
    (``guide.sqlite3`` -> ``guide.<namespace>.sqlite3``), on MySQL/MariaDB its own database
    (``test`` -> ``test_<namespace>``).

    PostgreSQL URLs are returned unchanged (a PostgreSQL namespace is a schema, not a URL), and
    so are in-memory SQLite URLs, whose database already belongs to one engine alone.
    """
    kind = facts(url).namespace_kind
    if namespace is None or kind == "schema":
        return url
    if kind == "database":
        return url.set(database=f"{url.database or 'guide'}_{namespace}")
    if not is_sqlite_file(url):
        return url
    path = Path(url.database or "")
    return url.set(database=str(path.with_name(f"{path.stem}.{namespace}{path.suffix}")))


def make_engine(
    url: str | URL | None = None,
    *,
    namespace: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    statement_timeout: float | None = None,
    **engine_kwargs: Any,
) -> AsyncEngine:
    """Create an ``AsyncEngine`` for ``url`` (default: ``DATABASE_URL``, else a SQLite file).

    Args:
        url: an async URL; ``None`` reads ``DATABASE_URL``.
        namespace: isolate this engine's tables (see the module docstring). Lower-case letters,
            digits and ``_``, starting with a letter. ``open_engine`` creates a PostgreSQL schema
            or a MySQL/MariaDB database; with ``make_engine`` alone it must already exist.
        connect_timeout: seconds a new connection may take (asyncpg's ``timeout``, aiomysql's
            ``connect_timeout``).
        statement_timeout: seconds any one statement may run before the database stops it
            with an error (``snippets.backends.is_statement_timeout`` recognises it), the
            connection staying usable: PostgreSQL's ``statement_timeout`` setting, MariaDB's
            ``max_statement_time`` (MySQL's ``max_execution_time``, which limits SELECTs only),
            and on SQLite a progress handler (``SQLiteStatementDeadline``). Set it below any
            client-side timeout: notebook 11 shows why.
        engine_kwargs: passed to ``create_async_engine`` (``echo``, ``pool_size``, ...). Pool
            options not given here come from ``DB_POOL_SIZE`` and the other variables of
            ``snippets.pool.PoolSettings``, where set. ``hide_parameters`` is ``True`` unless
            given (SQLAlchemy's default is ``False``): bound values, which can be personal data
            or secrets, never reach a log line (``echo``) or an exception's message; pass
            ``hide_parameters=False`` to see them while developing.

    Raises:
        DatabaseConfigError: the URL is not usable; the message says which one to write.
        PoolConfigError: a ``DB_POOL_*`` variable is not valid; the message names it.
        ValueError: the namespace is not a valid name.
    """
    resolved = namespaced_url(database_url(url), _checked(namespace))
    backend_facts = facts(resolved)
    pooled = backend_facts.has_server or is_sqlite_file(resolved)
    pool_settings = PoolSettings.from_env()  # checked even where unused: a bad value is an error
    if pooled and "poolclass" not in engine_kwargs:  # a queue pool: the settings apply to it
        engine_kwargs = {**pool_settings.engine_kwargs(only_set=True), **engine_kwargs}
    engine_kwargs.setdefault("hide_parameters", True)
    connect_args = connect_arguments(
        resolved,
        engine_kwargs.pop("connect_args", {}),
        connect_timeout=connect_timeout,
        search_path=namespace,
        statement_timeout=statement_timeout,
    )
    engine = create_async_engine(resolved, connect_args=connect_args, **engine_kwargs)
    # Events of an AsyncEngine are registered on the sync engine it wraps.
    if not backend_facts.enforces_foreign_keys:
        # The PRAGMA must run outside a transaction: inside one SQLite ignores it.
        event.listen(engine.sync_engine, "connect", enable_sqlite_foreign_keys)
    # An engine made in AUTOCOMMIT (an engine of its own for reads, snippets.api) gets no
    # BEGIN: each statement commits on its own, as the driver's autocommit mode has it.
    made_in_autocommit = engine_kwargs.get("isolation_level") == "AUTOCOMMIT"
    if backend_facts.driver_begins_transactions and not made_in_autocommit:
        event.listen(engine.sync_engine, "begin", begin_sqlite_transaction)
    if statement_timeout is not None:
        _limit_statement_time(engine, statement_timeout)
    _log_lost_connections_in_one_line(engine)
    # On every backend a lazy load is one clean MissingGreenlet; where the driver's dialect
    # does not make it one, this guard raises it before the driver is called.
    if not backend_facts.refuses_io_outside_greenlet:
        event.listen(engine.sync_engine, "before_execute", refuse_io_outside_greenlet)
    return engine


async def open_engine(
    url: str | URL | None = None,
    *,
    namespace: str | None = None,
    fresh: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
    **engine_kwargs: Any,
) -> AsyncEngine:
    """``make_engine``, then connect once to prove the database answers.

    Args:
        fresh: start the namespace empty: delete its SQLite file, or drop and recreate its
            PostgreSQL schema or MySQL/MariaDB database. Requires ``namespace``.

    Raises:
        DatabaseConfigError: the URL is not usable.
        DatabaseUnreachableError: no connection within ``connect_timeout`` seconds, or the
            server refused it (wrong host, port, user, password or database name).
    """
    if fresh and namespace is None:
        raise ValueError("fresh=True needs a namespace: it would otherwise empty a shared database")
    engine = make_engine(url, namespace=namespace, connect_timeout=connect_timeout, **engine_kwargs)
    kind = facts(engine).namespace_kind
    if fresh and kind == "file" and is_sqlite_file(engine.url):
        delete_sqlite_files(Path(engine.url.database or ""))
    if namespace is not None and kind == "database":
        # The namespace's database must exist before the engine can connect to it.
        server = make_engine(url, connect_timeout=connect_timeout, poolclass=NullPool)
        try:
            await _checked_ping(server, connect_timeout)
            await _prepare_database(server, engine.url.database or "", fresh=fresh)
        finally:
            await server.dispose()
    try:
        await _checked_ping(engine, connect_timeout)
    except (DatabaseUnreachableError, DatabaseConfigError):
        await engine.dispose()
        raise
    if namespace is not None and kind == "schema":
        await _prepare_schema(engine, namespace, fresh=fresh)
    return engine


async def _checked_ping(engine: AsyncEngine, connect_timeout: float) -> None:
    try:
        await asyncio.wait_for(ping(engine), timeout=connect_timeout)
    except TypeError as exc:
        # A query parameter of the URL is passed to the driver's connect() as a keyword.
        option = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if option is None:
            raise
        raise DatabaseConfigError(
            f"{shown_url(engine.url)}: {engine.url.get_driver_name()} does not take the option "
            f"{option.group(1)!r} given in the URL's query string. Remove it, or use an option "
            f"of {engine.url.get_driver_name()}'s connect()."
        ) from None
    except (TimeoutError, OSError, SQLAlchemyError) as exc:
        shown = shown_url(engine.url)
        raise DatabaseUnreachableError(
            f"Could not connect to {shown} within {connect_timeout:g} s ({_reason(exc)}). "
            "Check that the server is running and that host, port, user, password and "
            "database name are right, or unset DATABASE_URL to use the embedded SQLite default."
        ) from None


async def _prepare_database(server: AsyncEngine, database: str, *, fresh: bool) -> None:
    async with server.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if fresh:
            await conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database}`")
        await conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")


async def ping(engine: AsyncEngine) -> None:
    """Run ``SELECT 1`` on a connection of ``engine``'s pool, outside any transaction; raises
    what the driver raises when the database does not answer (``snippets.api.readiness``)."""
    async with engine.connect() as conn:
        # No transaction: on SQLite one would wait for another writer's lock (BEGIN IMMEDIATE)
        # and a busy database would look unreachable.
        try:
            await conn.execution_options(isolation_level="AUTOCOMMIT")  # a round trip on aiomysql
            await conn.execute(text("SELECT 1"))
        except asyncio.CancelledError:
            # Stopped midway, the connection is in no known state: discarded, not given back
            # to the pool, whose reset (a ROLLBACK) would fail on it and log a traceback.
            await conn.invalidate()
            raise


async def _prepare_schema(engine: AsyncEngine, schema: str, *, fresh: bool) -> None:
    async with engine.begin() as conn:
        # Two processes creating the same schema at once can collide on the catalog's unique
        # index even with IF NOT EXISTS; a transaction-scoped advisory lock serialises them.
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
        if fresh:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


def _checked(namespace: str | None) -> str | None:
    if namespace is not None and not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"namespace {namespace!r} must be lower-case letters, digits and '_', "
            "start with a letter, and be at most 63 characters"
        )
    return namespace


def delete_sqlite_files(path: Path) -> None:
    """Delete a SQLite database file and its journal, WAL and shared-memory files."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = (str(original).strip().splitlines() or [""])[0]
    return f"{type(original).__name__}: {first_line}" if first_line else type(original).__name__


async def check_database(
    url: str | URL | None = None, *, connect_timeout: float = CONNECT_TIMEOUT
) -> URL:
    """Connect once and let go: a start-up check that fails fast with one clear message.

    Returns:
        The validated URL (render it with ``hide_password=True`` before printing).

    Raises:
        DatabaseConfigError: the URL is not usable.
        DatabaseUnreachableError: the database did not answer within ``connect_timeout``.
    """
    engine = await open_engine(url, connect_timeout=connect_timeout)
    await engine.dispose()
    return engine.url
