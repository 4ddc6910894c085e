"""Alembic on an async engine: commands run from async code, and the schema compared.

Alembic is synchronous code. Its commands run ``env.py``, which needs a connection; the async
template's ``env.py`` makes an engine of its own and calls ``asyncio.run`` to use it, which
fails inside a running event loop (a notebook, a FastAPI lifespan). The functions here open a
connection on *your* ``AsyncEngine`` and run the command in ``AsyncConnection.run_sync``:
``env.py`` finds the connection in ``config.attributes["connection"]`` (Alembic's connection
sharing recipe) and migrates through it, with no second engine and no second event loop.

Nothing here knows the guide's models or its migration scripts: the ``Config`` and the
``MetaData`` are always the caller's. ``migrations/env.py`` in the repository is the
environment these functions are written for; ``render_sqlmodel_types`` here and
``snippets.backends.migration_lock`` are the two pieces of it worth copying into yours.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator, TypeEngine

from snippets.tenants import Tenants


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


def use_scripts_in(config: Config, folder: str | PathLike[str]) -> Config:
    """Make ``config`` read and write revision scripts in ``folder`` instead of its own
    ``versions/`` (what ``version_locations`` does in a config file); returns ``config``."""
    config.set_main_option("path_separator", "os")  # one folder, whatever its name contains
    config.set_main_option("version_locations", str(folder))
    return config


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


async def upgrade_tenants(tenants: Tenants, config: Config, revision: str = "head") -> list[str]:
    """``upgrade`` every tenant ``tenants`` knows (``discover()`` them first), one after another,
    each on a connection of ``tenants.open_engine(tenant)``, so that its tables and its
    ``alembic_version`` are its schema's. Returns the tenants migrated, in order. A failure
    stops at that tenant, whose migration is rolled back where DDL is transactional; those
    before it stay upgraded, and a second run resumes (each is at its own revision). From the
    command line (for tenants of the ``DATABASE_URL`` engine), the same loop is
    ``alembic -x namespace=<tenants.namespace(tenant)> upgrade head`` per tenant."""
    done = []
    for tenant in tenants.names():
        engine = await tenants.open_engine(tenant, poolclass=NullPool)
        try:
            await upgrade(engine, config, revision)
        finally:
            await engine.dispose()
        done.append(tenant)
    return done


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
    already does. Each entry is a tuple such as ``("add_column", schema, table, Column)``, or,
    for changes to one existing column, a list of tuples such as ``("modify_default", ...)``.

    ``options`` are ``EnvironmentContext.configure`` options (``compare_server_default=True``,
    ``include_object=...``); the ``alembic_version`` table is never reported.
    """

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts=options)
        return list(compare_metadata(context, metadata))

    async with engine.connect() as connection:
        return await connection.run_sync(compare)
