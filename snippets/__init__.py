"""Reusable, tested code of the executed guide to async SQLModel: the code a team copies.

Three layers, one folder each:

* ``snippets`` (this package): code to copy into an application, next to its own models. It
  never imports the two below, nor IPython, matplotlib or Air (``tests/test_layers.py``).
* ``snippets.demo``: the guide's demo domain (heroes, teams, accounts, the demo API and page).
* ``snippets.lab``: the notebooks' instruments (showing source and errors, timing, statement
  recording, the bulk ladder, pool load and sweep, slow statements, killed connections).

The reusable modules, each one idea taught by a notebook:

* ``snippets.config`` and ``snippets.engine``: the URL and the engine (notebook 01);
* ``snippets.backends``: every difference between SQLite, PostgreSQL and MySQL/MariaDB;
* ``snippets.session``: the session factory (notebook 02);
* ``snippets.tables``: creating and inspecting tables (notebook 03);
* ``snippets.relationships``: relationship attributes typed for loader options (notebook 05);
* ``snippets.transactions``: a retry helper for transactions (notebook 06);
* ``snippets.pool``: pool settings from the environment, validated (notebook 07);
* ``snippets.api``: FastAPI plumbing for any models: lifespan, ``SessionDep``, 409 (notebook 08);
* ``snippets.testing``: rollback-per-test sessions and an in-process API client (notebook 09);
* ``snippets.bulk`` and ``snippets.paging``: loading many rows, and keyset pagination
  (notebook 10);
* ``snippets.concurrency``: bounded fan-out, finished commits, a timeout-safe session scope
  (notebook 11);
* ``snippets.migrations``: Alembic commands from async code, the schema compared with the
  models (notebook 12).
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
