"""Reusable, tested code of the executed guide to async SQLModel.

Each module is one idea, taught by a notebook:

* ``snippets.config`` and ``snippets.engine``: the URL and the engine (notebook 01);
* ``snippets.session``: the session factory (notebook 02);
* ``snippets.tables``: creating and inspecting tables (notebook 03);
* ``snippets.models`` and ``snippets.crud``: the shared models and CRUD helpers (notebook 04).
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
