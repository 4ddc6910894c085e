"""Reusable, tested code of the executed guide to async SQLModel.

Each module is one idea, taught by a notebook:

* ``snippets.config`` and ``snippets.engine``: the URL and the engine (notebook 01);
* ``snippets.backends``: every difference between SQLite, PostgreSQL and MySQL/MariaDB;
* ``snippets.session``: the session factory (notebook 02);
* ``snippets.tables``: creating and inspecting tables (notebook 03);
* ``snippets.models``: the demo models, on a registry of their own (``snippets.models.metadata``),
  so that importing any module here adds nothing to an application's ``SQLModel.metadata``;
* ``snippets.crud``: CRUD helpers for the demo ``Hero`` (notebook 04);
* ``snippets.observe``: the statements an engine sends (notebook 04);
* ``snippets.loading``: relationship loading and N+1 measured (notebook 05);
* ``snippets.transactions``: an atomic transfer and a retry helper (notebook 06);
* ``snippets.pool``: pool settings, observation and sizing (notebook 07);
* ``snippets.api``: FastAPI plumbing for any models: lifespan, ``SessionDep``, 409 (notebook 08);
* ``snippets.heroes_api`` and ``snippets.heroes_page``: the demo JSON API and Air page;
* ``snippets.testing``: rollback-per-test sessions and an in-process API client (notebook 09);
* ``snippets.bulk``, ``snippets.bench`` and ``snippets.paging``: loading many rows, the ladder
  of ways to do it measured, and keyset pagination (notebook 10);
* ``snippets.concurrency``: bounded fan-out, finished commits, a timeout-safe session scope
  (notebook 11);
* ``snippets.migrations``: Alembic commands from async code, the schema compared with the
  models (notebook 12);
* ``snippets.notebook``: showing real source, and demonstrating errors, in the notebooks.
"""

from snippets.config import ENV_VAR, DatabaseConfigError, database_url
from snippets.engine import DatabaseUnreachableError, check_database, make_engine, open_engine
from snippets.session import make_sessionmaker
from snippets.tables import create_tables, drop_tables, table_names

__all__ = [
    "ENV_VAR",
    "DatabaseConfigError",
    "DatabaseUnreachableError",
    "check_database",
    "create_tables",
    "database_url",
    "drop_tables",
    "make_engine",
    "make_sessionmaker",
    "open_engine",
    "table_names",
]
