"""The guide's Alembic environment: Alembic's ``pyproject_async`` template, adapted.

Run from the command line (``alembic upgrade head``, ``make migrate``) it connects with the
guide's own engine factory; run from async code (``snippets.migrations.upgrade``) it uses the
connection it is given. What changed from the template, and why:

* **One URL.** The database is ``DATABASE_URL``, validated by ``snippets.config`` (the embedded
  SQLite file when unset): never a second, synchronous URL in a config file.
* **Namespaces.** ``-x namespace=NAME`` migrates one namespace of ``snippets.engine`` (its own
  SQLite file, PostgreSQL schema or MySQL/MariaDB database), created if missing, so that
  notebooks and tests migrate side by side without seeing each other.
* **A caller's connection and metadata.** ``config.attributes["connection"]`` (connection
  sharing) and ``config.attributes["target_metadata"]`` (a model set other than the guide's).
* **SQLite:** ``render_as_batch`` (SQLite's ALTER TABLE can add, rename and drop a column but
  not change one or add a constraint; batch mode copies the table instead) and one transaction
  for the whole run.
* **SQLModel types** rendered as plain SQLAlchemy (``snippets.migrations.render_sqlmodel_types``).
* **A lock** (``snippets.backends.migration_lock``): two processes never migrate at once.
* **A running event loop** (a notebook, an async app) gets a clear error instead of
  ``asyncio.run``'s, saying to pass a connection.
* **Logging** set up for the command line only: the template's ``fileConfig`` also disables
  every logger an application created before migrating from its own code (checked: a
  ``logging.getLogger("myapp")`` made before it has ``disabled == True`` after it).
"""

import asyncio
import logging
from contextlib import nullcontext
from typing import Any

from alembic import context
from alembic.util import CommandError
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from snippets.backends import (
    MIGRATION_WAIT,
    BackendFacts,
    backend_of,
    facts,
    lock_wait_options,
    migration_lock,
)
from snippets.config import DatabaseConfigError, database_url
from snippets.demo.models import metadata as guide_metadata
from snippets.engine import DatabaseUnreachableError, open_engine
from snippets.migrations import render_sqlmodel_types

config = context.config

target_metadata: MetaData = config.attributes.get("target_metadata", guide_metadata)
# A program passes config.attributes["namespace"]; the command line -x namespace=NAME.
namespace: str | None = config.attributes.get(
    "namespace", context.get_x_argument(as_dictionary=True).get("namespace")
)

if config.cmd_opts is not None:  # the alembic command line, not a program's own call
    logging.basicConfig(format="%(levelname)-5.5s [%(name)s] %(message)s")
    logging.getLogger("alembic").setLevel(logging.INFO)
    # An error is printed once, as "FAILED: ...", by the command line itself; not logged again.
    messaging = logging.getLogger("alembic.util.messaging")
    messaging.addHandler(logging.NullHandler())
    messaging.propagate = False


def options_for(backend: BackendFacts) -> dict[str, Any]:
    """The ``context.configure`` options every run shares, online or offline."""
    return {
        "target_metadata": target_metadata,
        "render_item": render_sqlmodel_types,
        # Alembic compares server defaults only when asked; a changed default is otherwise
        # invisible to autogenerate (notebook 12).
        "compare_server_default": True,
        # Where ALTER TABLE cannot change a column (SQLite), batch mode copies the table.
        "render_as_batch": not backend.alters_columns,
        # SQLite's DDL is transactional, though Alembic assumes not: one transaction for the
        # whole run, so that a failed migration leaves nothing half-done (notebook 12).
        "transactional_ddl": backend.transactional_ddl,
    }


def run_migrations_offline() -> None:
    """``--sql``: write the SQL instead of running it; only the URL's dialect is needed."""
    url = database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **options_for(facts(url)),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **options_for(facts(connection)))
    locked = config.attributes.get("migration_lock", True)  # False: notebook 12's demonstration
    with (
        context.begin_transaction(),
        migration_lock(connection, wait=MIGRATION_WAIT) if locked else nullcontext(),
    ):
        context.run_migrations()


async def run_async_migrations() -> None:
    """The command line: a short-lived engine of the guide's own (NullPool: one connection)."""
    try:
        # On SQLite the lock another migration holds is the database's write lock: wait for it
        # as long as migration_lock waits elsewhere, not the driver's default 5 s.
        waiting, _ = lock_wait_options(backend_of(database_url()), MIGRATION_WAIT)
        engine = await open_engine(namespace=namespace, poolclass=NullPool, connect_args=waiting)
    except (DatabaseConfigError, DatabaseUnreachableError) as error:
        raise CommandError(str(error)) from None  # one line on the command line, no traceback
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a program's own connection (snippets.migrations.upgrade)
        do_run_migrations(connection)
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop running: the command line, a script
        asyncio.run(run_async_migrations())
        return
    # The template would call asyncio.run() here and fail with "cannot be called from a running
    # event loop" (and a "never awaited" warning): say what to do instead.
    raise CommandError(
        "an event loop is already running (a notebook, an async application): run Alembic "
        "commands on a connection of your engine instead, e.g. "
        "await snippets.migrations.upgrade(engine, config)"
    )


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
