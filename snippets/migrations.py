"""Alembic on an async engine: commands run from async code, and the schema compared.

Alembic is synchronous code. Its commands run ``env.py``, which needs a connection; the async
template's ``env.py`` makes an engine of its own and calls ``asyncio.run`` to use it, which
fails inside a running event loop (a notebook, a FastAPI lifespan). The functions here open a
connection on *your* ``AsyncEngine`` and run the command in ``AsyncConnection.run_sync``:
``env.py`` finds the connection in ``config.attributes["connection"]`` (Alembic's connection
sharing recipe) and migrates through it, with no second engine and no second event loop.

Nothing here knows the guide's models or its migration scripts: the ``Config`` and the
``MetaData`` are always the caller's. ``migrations/env.py`` in the repository is the
environment these functions are written for; ``render_sqlmodel_types`` and ``migration_lock``
are the two pieces of it worth copying into yours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator, TypeEngine

from snippets.backends import backend_of

MIGRATION_LOCK = "alembic-migrations"
"""The name of the lock ``migration_lock`` takes (one per database or schema)."""


def render_sqlmodel_types(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """``render_item`` hook: write SQLModel's column types as the SQLAlchemy types they stand for.

    SQLModel maps ``str`` to ``sqlmodel.sql.sqltypes.AutoString`` (a ``TypeDecorator`` over
    ``String``). Autogenerate renders types it does not know by their module path and imports
    nothing for them, so a generated script says ``sqlmodel.sql.sqltypes.AutoString(length=100)``
    and fails with ``NameError: name 'sqlmodel' is not defined`` when it runs. Rendering the
    decorator's ``impl`` (``sa.String(length=100)``) keeps migration scripts plain SQLAlchemy:
    they do not depend on SQLModel, nor break when its internals move. Returns ``False`` (render
    as usual) for everything else.
    """
    if type_ == "type" and isinstance(obj, TypeDecorator) and _from_sqlmodel(obj):
        impl: TypeEngine[Any] = obj.impl_instance
        return f"sa.{impl!r}"
    return False


def _from_sqlmodel(type_: TypeEngine[Any]) -> bool:
    return type(type_).__module__.split(".")[0] == "sqlmodel"


@contextmanager
def migration_lock(connection: Connection, name: str = MIGRATION_LOCK) -> Iterator[None]:
    """Hold a lock so that one process at a time migrates this database (use it in ``env.py``).

    Two deploys, or two app workers migrating at start-up, would otherwise both read "not yet
    upgraded" and both run the same migration; the second fails half-way (notebook 12 shows it).

    * PostgreSQL: ``pg_advisory_xact_lock``, held until the transaction ends. Alembic runs all
      migrations in one transaction there (transactional DDL), so the lock covers them all;
      a transaction-level lock also works behind PgBouncer's transaction pooling.
    * MySQL/MariaDB: ``GET_LOCK``, a named lock of the connection, released on the way out.
      DDL commits implicitly there, so no transaction could hold a lock across migrations.
    * SQLite: nothing to take. ``snippets.make_engine`` begins every transaction with ``BEGIN
      IMMEDIATE``, the database's write lock, and ``env.py`` runs the migrations in one
      transaction: the second process waits for the first (up to its busy timeout).

    Take it inside the transaction that runs the migrations and before Alembic reads the
    current version, so that the second process reads the version the first one wrote.
    """
    backend = backend_of(connection)
    if backend == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
        yield
    elif backend == "mysql":
        # -1: wait as long as it takes; the first process may be running a long migration.
        connection.execute(text("SELECT GET_LOCK(:name, -1)"), {"name": name})
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    else:
        yield


async def run_command(
    engine: AsyncEngine,
    config: Config,
    alembic_command: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Run an Alembic command (``command.upgrade``, ``command.check``, ...) on one connection
    of ``engine``, from async code: ``await run_command(engine, config, command.upgrade, "head")``.

    The connection is handed to ``env.py`` in ``config.attributes["connection"]``; ``env.py``
    begins and commits the migrations' transaction itself, as it does from the command line.
    """

    def run(connection: Connection) -> Any:
        config.attributes["connection"] = connection
        try:
            return alembic_command(config, *args, **kwargs)
        finally:
            del config.attributes["connection"]

    async with engine.connect() as connection:
        return await connection.run_sync(run)


async def upgrade(engine: AsyncEngine, config: Config, revision: str = "head") -> None:
    """``alembic upgrade <revision>`` on ``engine``, from async code."""
    await run_command(engine, config, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, config: Config, revision: str) -> None:
    """``alembic downgrade <revision>`` on ``engine``, from async code."""
    await run_command(engine, config, command.downgrade, revision)


async def current_revisions(engine: AsyncEngine) -> tuple[str, ...]:
    """The revisions the database is at (``alembic current``): empty before the first upgrade.

    Reads the ``alembic_version`` table only; no ``env.py`` and no scripts are needed.
    """

    def read(connection: Connection) -> tuple[str, ...]:
        return MigrationContext.configure(connection).get_current_heads()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


async def schema_diff(engine: AsyncEngine, metadata: MetaData, **options: Any) -> list[Any]:
    """What autogenerate would write to make the database match ``metadata``: ``[]`` when it
    already does. Each entry is a tuple such as ``("add_column", schema, table, Column)``.

    ``options`` are ``EnvironmentContext.configure`` options (``compare_server_default=True``,
    ``include_object=...``); the ``alembic_version`` table is never reported.
    """

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts=options)
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        return await connection.run_sync(compare)
