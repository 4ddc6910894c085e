"""Create, drop and list tables through an ``AsyncEngine``.

``MetaData.create_all`` is synchronous code; ``AsyncConnection.run_sync`` runs it on the async
connection (in a greenlet), so no second, synchronous engine or driver is needed.

The metadata is always the caller's: ``SQLModel.metadata`` for an application's own models,
``snippets.demo.models.metadata`` for the guide's demo models. Nothing here assumes either.
"""

from __future__ import annotations

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from snippets.backends import migration_lock

CREATE_TABLES_LOCK = "create_tables"


def _require_async_engine(engine: object, function: str) -> None:
    if not isinstance(engine, AsyncEngine):
        raise TypeError(
            f"{function}() needs an AsyncEngine (from create_async_engine or "
            f"snippets.make_engine), got {type(engine).__name__}. With a synchronous Engine, "
            "call metadata.create_all(engine) / drop_all(engine) directly."
        )


async def create_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    """Create every table of ``metadata`` that does not exist yet (existing ones are kept).

    Several processes may call it at once: they take turns (``migration_lock``).

    Raises:
        TypeError: ``engine`` is not an ``AsyncEngine``.
    """
    _require_async_engine(engine, "create_tables")
    async with engine.begin() as conn:
        await conn.run_sync(_create_all_in_turn, metadata)


def _create_all_in_turn(conn: Connection, metadata: MetaData) -> None:
    # create_all checks which tables exist, then creates the others: two processes doing it at
    # once (the lifespans of two uvicorn workers) both create, and one fails. The migration
    # lock makes the second wait, then find the tables.
    with migration_lock(conn, CREATE_TABLES_LOCK):
        metadata.create_all(conn)


async def drop_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    """Drop every table of ``metadata`` that exists, dependents first; other tables are kept.

    Raises:
        TypeError: ``engine`` is not an ``AsyncEngine``.
    """
    _require_async_engine(engine, "drop_tables")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)


def _table_names(conn: Connection) -> list[str]:
    return sorted(inspect(conn).get_table_names())


async def table_names(engine: AsyncEngine) -> list[str]:
    """The tables in the engine's database (its current schema on PostgreSQL), sorted."""
    _require_async_engine(engine, "table_names")
    async with engine.connect() as conn:
        return await conn.run_sync(_table_names)
