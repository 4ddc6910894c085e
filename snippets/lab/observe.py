"""See what reaches the database: record the SQL statements an engine sends; count the
rollbacks SQLAlchemy asks of the driver (``driver_rollbacks``); and what a logger says
(``logged``), kept for the cell instead of printed on stderr.

The recorder is a ``before_cursor_execute`` event on ``engine.sync_engine`` (events of an
``AsyncEngine`` are registered on the synchronous engine it wraps). One ``executemany`` call
counts as one statement, as it is one round of the driver's API.

The ``BEGIN IMMEDIATE`` that SQLite engines from ``snippets.engine.make_engine`` send
themselves is left out: asyncpg begins a transaction through its own API and MySQL/MariaDB
begin one implicitly, so no cursor event sees a ``BEGIN`` there; leaving SQLite's out makes the
counts the same on every backend. ``SAVEPOINT`` and the like are recorded.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def recorded_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Collect, in order, every statement ``engine`` executes inside the ``with`` block.

    Whitespace is folded to single spaces so statements compare and print on one line::

        with recorded_statements(engine) as statements:
            await session.exec(select(Hero))
        assert len(statements) == 1
    """
    statements: list[str] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        folded = " ".join(statement.split())
        if not folded.startswith("BEGIN"):
            statements.append(folded)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


@asynccontextmanager
async def driver_rollbacks(engine: AsyncEngine) -> AsyncIterator[list[object]]:
    """Collect the driver connections SQLAlchemy rolls back inside the block: a session's
    close, a connection returned to the pool. No cursor event sees these: SQLAlchemy calls the
    ``rollback()`` of its adapter of the driver's connection, which aiomysql sends as a
    ``ROLLBACK``, aiosqlite hands to its thread, and asyncpg sends only inside a transaction.

    The adapter's class (found on one of ``engine``'s connections) is patched for the block,
    so run nothing else on that driver meanwhile::

        async with driver_rollbacks(engine) as rolled_back:
            await session.close()
        assert len(rolled_back) == 1
    """
    async with engine.connect() as conn:
        adapter: Any = type((await conn.get_raw_connection()).dbapi_connection)
    rolled_back: list[object] = []
    rollback = adapter.rollback

    def counted(adapted_connection: object) -> None:
        rolled_back.append(adapted_connection)
        rollback(adapted_connection)

    adapter.rollback = counted
    try:
        yield rolled_back
    finally:
        adapter.rollback = rollback


@contextmanager
def logged(name: str, level: int = logging.INFO) -> Iterator[list[str]]:
    """Collect the messages logger ``name`` logs at ``level`` or above inside the block, as
    ``"LEVEL message"`` lines, instead of letting them reach stderr."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(f"{record.levelname} {record.getMessage()}")

    logger = logging.getLogger(name)
    handler = Collect(level)
    before = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = before
