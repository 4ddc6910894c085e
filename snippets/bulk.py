"""Load many rows fast, on every backend, with one helper: ``bulk_insert`` (notebook 10).

``await bulk_insert(target, Model, rows)`` inserts ``rows`` (mappings of column name to value,
any iterable, a generator included) into ``Model``'s table, in batches of ``batch_size``, and
returns how many it inserted. It takes the fastest correct path of the backend:

* PostgreSQL: binary ``COPY`` through asyncpg's ``copy_records_to_table``, several times faster
  than any ``INSERT``;
* SQLite and MySQL/MariaDB: Core's ``await conn.execute(insert(table), batch)``, which the
  driver runs as one ``executemany`` (aiomysql rewrites it into multi-row ``VALUES``). A
  hand-made ``executemany`` measured no faster (notebook 10).

On PostgreSQL the values copied are what SQLAlchemy itself would send: each column's bind
processor runs (SQLModel's aware-datetime check, JSON serialisation, ...) and Python-side
column defaults are filled in for missing keys; a table with an SQL-expression default is
loaded with Core instead. Every row must have the first row's keys (Core would silently fill
a missing one). What it does not do: build ORM objects, or fetch generated ids (use
``insert(...).returning(...)`` for that).

Atomicity: given an ``AsyncEngine``, the whole load is one transaction, committed at the end;
given an ``AsyncConnection`` or an ``AsyncSession``, it runs in that transaction and the caller
commits. If any row fails (a constraint, a bad value), the error is raised as SQLAlchemy's
(``IntegrityError``, ``DataError``, ``StatementError``, ...) and a rollback leaves nothing of the
load behind, on every backend.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from sqlalchemy import Table, event, insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from snippets.backends import backend_of, facts

Method = Literal["auto", "copy", "executemany"]
BulkTarget = AsyncEngine | AsyncConnection | AsyncSession

DEFAULT_BATCH_SIZE = 1_000
"""Rows per ``executemany``, or per batch fed to ``COPY``: memory grows with it, speed hardly
does past a thousand (on PostgreSQL smaller batches overlap better with the server's work);
notebook 10 sweeps it."""


async def bulk_insert(
    target: BulkTarget,
    table: Table | Any,
    rows: Iterable[Mapping[str, Any]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    method: Method = "auto",
) -> int:
    """Insert ``rows`` into ``table`` (a ``Table`` or a table model) and return how many.

    Args:
        target: an engine (the load is one transaction of its own, committed), or a connection
            or session whose transaction it joins (the caller commits or rolls back).
        table: a ``Table``, or a model class with a ``__table__`` (a SQLModel ``table=True``).
        rows: mappings with the same keys; an iterable is consumed one batch at a time.
        batch_size: rows sent per ``COPY`` or ``executemany``.
        method: ``"auto"`` (``COPY`` on PostgreSQL, else ``executemany``), or either by name.

    Raises:
        ValueError: a row's keys differ from the first row's, a key is not a column, or
            ``method="copy"`` off PostgreSQL.
        sqlalchemy.exc.StatementError: a value that a column's type refuses (before sending).
        sqlalchemy.exc.DBAPIError: what the database refused (``IntegrityError``, ...), or a
            connection lost midway (``connection_invalidated`` set; nothing was inserted).
    """
    resolved: Table = table if isinstance(table, Table) else table.__table__
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if isinstance(target, AsyncEngine):
        async with target.begin() as conn:
            return await _load(conn, resolved, rows, batch_size, method)
    conn = await target.connection() if isinstance(target, AsyncSession) else target
    return await _load(conn, resolved, rows, batch_size, method)


async def _load(
    conn: AsyncConnection,
    table: Table,
    rows: Iterable[Mapping[str, Any]],
    batch_size: int,
    method: Method,
) -> int:
    copies = facts(conn).copies_rows
    if method == "copy" and not copies:
        raise ValueError(f"COPY is PostgreSQL's; this connection is {backend_of(conn)}")
    batches = _batches(rows, batch_size)
    first = next(batches, None)
    if first is None:
        return 0
    keys = list(first[0])
    unknown = [key for key in keys if key not in table.c]
    if unknown:
        raise ValueError(f"not columns of {table.name}: {', '.join(unknown)}")
    all_batches = itertools.chain([first], batches)
    defaults = _python_defaults(table, keys)
    if not copies or method == "executemany" or defaults is None:
        # Core's executemany: as fast as a hand-made one (measured in notebook 10), and it
        # applies every kind of default. A table with an SQL-expression default lands here too.
        return await _load_with_core(conn, table, keys, all_batches, batch_size)
    prepare = _row_preparer(conn, table, keys, defaults)
    columns = [*keys, *defaults]
    driver: Any = (await conn.get_raw_connection()).driver_connection  # asyncpg's, untyped
    await _begin_driver_transaction(conn, driver)
    inserted = 0

    async def records() -> AsyncIterator[tuple[Any, ...]]:
        # One COPY for the whole load, fed batch by batch: asyncpg sends each batch while the
        # next is prepared, and the server writes while Python prepares.
        nonlocal inserted
        for number, batch in enumerate(all_batches):
            values = prepare(batch, number * batch_size)
            for value in values:
                yield value
            inserted += len(values)

    await _copy(conn, driver, table, columns, records())
    return inserted


def _batches(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[Sequence[Mapping[str, Any]]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _python_defaults(table: Table, keys: Sequence[str]) -> dict[str, Callable[[], Any]] | None:
    """For each column missing from ``keys`` with a Python-side default, a function giving its
    value (as Core would fill it in); ``None`` if one's default is an SQL expression or a
    sequence, which only Core can render."""
    defaults: dict[str, Callable[[], Any]] = {}
    for column in table.c:
        default = column.default
        if column.key in keys or default is None:
            continue
        if default.is_scalar:
            defaults[column.key] = functools.partial(_same, default.arg)  # type: ignore[attr-defined]
        elif default.is_callable:
            # SQLAlchemy wraps a default of no arguments to take the execution context.
            defaults[column.key] = functools.partial(default.arg, None)  # type: ignore[attr-defined]
        else:  # an SQL expression or a Sequence
            return None
    return defaults


def _same(value: Any) -> Any:
    return value


def _row_preparer(
    conn: AsyncConnection,
    table: Table,
    keys: Sequence[str],
    defaults: Mapping[str, Callable[[], Any]],
) -> Callable[[Sequence[Mapping[str, Any]], int], list[tuple[Any, ...]]]:
    """A function turning a batch of mappings into the tuples the driver gets: each column's
    bind processor applied, column by column, as SQLAlchemy would apply it per row."""
    dialect = conn.dialect
    columns = [*keys, *defaults]
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
    ]
    get = itemgetter(*keys)

    def prepare(batch: Sequence[Mapping[str, Any]], offset: int) -> list[tuple[Any, ...]]:
        _check_keys(batch, keys, offset)
        picked = list(map(get, batch)) if len(keys) > 1 else [(get(r),) for r in batch]
        by_column: list[Sequence[Any]] = list(zip(*picked, strict=True))
        by_column += [[make() for _ in batch] for make in defaults.values()]
        for position, process in enumerate(processors):
            if process is not None:
                try:
                    by_column[position] = [process(value) for value in by_column[position]]
                except (TypeError, ValueError) as error:
                    raise StatementError(
                        f"column {columns[position]!r}: {error}",
                        f"bulk_insert into {table.name}",
                        None,
                        error,
                    ) from error
        return list(zip(*by_column, strict=True))

    return prepare


async def _load_with_core(
    conn: AsyncConnection,
    table: Table,
    keys: Sequence[str],
    batches: Iterable[Sequence[Mapping[str, Any]]],
    batch_size: int,
) -> int:
    inserted = 0
    for number, batch in enumerate(batches):
        _check_keys(batch, keys, number * batch_size)
        await conn.execute(insert(table), list(batch))
        inserted += len(batch)
    return inserted


def _check_keys(batch: Sequence[Mapping[str, Any]], keys: Sequence[str], offset: int) -> None:
    """Every row has the first row's keys: Core would otherwise fill a missing one with NULL
    (or its default) without a word, or ignore an extra one."""
    expected = set(keys)
    if set(map(len, batch)) == {len(keys)} and all(map(expected.issuperset, batch)):
        return
    index = next(i for i, row in enumerate(batch) if row.keys() != expected)
    raise ValueError(
        f"row {offset + index} has keys {sorted(batch[index])}; every row needs "
        f"the first row's: {sorted(keys)}"
    )


async def _begin_driver_transaction(conn: AsyncConnection, driver: Any) -> None:
    """Make sure asyncpg has begun the transaction that SQLAlchemy's connection is in.

    SQLAlchemy's asyncpg adapter sends ``BEGIN`` lazily, with the first statement. ``COPY`` is
    sent to asyncpg directly, so without a statement first it would run (and commit) on its
    own, outside the caller's transaction. In ``AUTOCOMMIT`` there is no transaction to join.
    """
    options = conn.sync_connection.get_execution_options()  # type: ignore[union-attr]
    if not driver.is_in_transaction() and options.get("isolation_level") != "AUTOCOMMIT":
        await conn.exec_driver_sql("SELECT 1")


async def _copy(
    conn: AsyncConnection,
    driver: Any,
    table: Table,
    columns: Sequence[str],
    values: AsyncIterator[tuple[Any, ...]],
) -> None:
    import asyncpg  # only here: the other backends never need it

    statement = f"COPY {table.name} ({', '.join(columns)})"
    copying = asyncio.ensure_future(
        driver.copy_records_to_table(
            table.name, schema_name=table.schema, columns=list(columns), records=values
        )
    )

    def stop_copying(_: object) -> None:
        # asyncpg 0.32's COPY, paused while the socket drains, waits forever once the
        # connection is gone (nothing resumes it): end it when asyncpg sees the connection end.
        copying.cancel()

    driver.add_termination_listener(stop_copying)
    try:
        try:
            await copying
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not driver.is_closed() or (current is not None and current.cancelling()):
                raise  # cancelled by the caller, not by a lost connection
            raise ConnectionResetError("the connection was lost during COPY") from None
        finally:
            driver.remove_termination_listener(stop_copying)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
        # Raised as SQLAlchemy raises the same error from an INSERT, so callers need one except.
        kind: type[DBAPIError] = DBAPIError
        if isinstance(error, asyncpg.IntegrityConstraintViolationError):
            kind = IntegrityError
        elif isinstance(error, asyncpg.DataError):
            kind = DataError
        lost = driver.is_closed()
        if lost:
            # SQLAlchemy did not see this error, so it would still ROLLBACK on the dead
            # connection, and raise *that* failure ("the underlying connection is closed")
            # in place of this one. Invalidated, the connection is not used again.
            await conn.invalidate()
        raise kind(statement, None, error, connection_invalidated=lost) from error


def set_sqlite_pragmas(engine: AsyncEngine, **pragmas: str) -> None:
    """Run ``PRAGMA name=value`` on every new connection of a SQLite ``engine``.

    For bulk loads: ``journal_mode="WAL"`` (readers no longer block the writer, and a commit
    writes the log, not the database; it stays set in the file) and ``synchronous="NORMAL"``
    (in WAL mode a power cut may lose the last commits, never corrupt the file) or ``"OFF"``
    (a crash of the machine may corrupt it). Notebook 10 measures what each saves.

    Connections already in the pool keep their settings: call it before the engine's first
    connection (``make_engine`` connects lazily), or ``await engine.dispose()`` after it
    (``open_engine`` has connected once).
    """
    if not facts(engine).has_pragmas:
        raise ValueError("PRAGMAs are SQLite's")
    for name, value in pragmas.items():
        if not (name.isidentifier() and value.replace("-", "").isalnum()):
            raise ValueError(f"not a PRAGMA setting: {name}={value}")

    def apply(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for name, value in pragmas.items():
            cursor.execute(f"PRAGMA {name}={value}")
        cursor.close()

    event.listen(engine.sync_engine, "connect", apply)
