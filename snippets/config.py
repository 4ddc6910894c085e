"""Read and validate the database URL from the ``DATABASE_URL`` environment variable.

The guide runs on two backends: SQLite through ``aiosqlite`` (the default, no server) and
PostgreSQL through ``asyncpg``. Anything else, or a URL that names a synchronous driver, is
rejected here with one message that says which URL to write instead, before SQLAlchemy gets a
chance to fail deep inside its dialect loading. No message ever contains the password.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ENV_VAR = "DATABASE_URL"
"""The environment variable every notebook, test and snippet reads."""

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_DIR = PROJECT_ROOT / "build" / "db"
"""Where the default SQLite files live: ``build/db/`` in the checkout, ignored by git."""

# The async driver this guide uses for each backend, and the module that provides it.
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}

_POSTGRES_EXAMPLE = "postgresql+asyncpg://user:password@host:5432/dbname"
_SQLITE_EXAMPLE = "sqlite+aiosqlite:///path/to/file.db"


class DatabaseConfigError(ValueError):
    """The database URL cannot be used; the message says what to write instead."""


def redact(raw: str) -> str:
    """Hide the password in a URL-like string, even one SQLAlchemy cannot parse.

    Whatever stands between the first ``:`` of the user info and the last ``@`` is a password
    (it may itself contain ``@`` or ``:``), with or without a ``scheme://`` in front.
    """
    head, at, host = raw.rpartition("@")
    if not at:
        return raw
    scheme_end = head.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    user, colon, _ = head[start:].partition(":")
    return head[:start] + user + (":***" if colon else "") + at + host


def default_url() -> URL:
    """The URL used when ``DATABASE_URL`` is unset: a SQLite file under ``build/db/``."""
    return URL.create("sqlite+aiosqlite", database=str(DEFAULT_SQLITE_DIR / "guide.sqlite3"))


def database_url(raw: str | URL | None = None) -> URL:
    """Return the validated async URL from ``raw``, else ``DATABASE_URL``, else the default.

    Raises:
        DatabaseConfigError: the URL is malformed, names a synchronous or missing driver, or a
            backend this guide does not run on. The message names the URL to use instead.
    """
    if raw is None:
        raw = os.environ.get(ENV_VAR) or None
    if raw is None:
        return default_url()
    if isinstance(raw, URL):
        url = raw
    else:
        try:
            url = make_url(raw.strip())
        except ArgumentError:
            raise DatabaseConfigError(
                f"{ENV_VAR}={redact(raw)!r} is not a database URL. "
                f"Use {_SQLITE_EXAMPLE} or {_POSTGRES_EXAMPLE}."
            ) from None
    _check_driver(url)
    return url


def _check_driver(url: URL) -> None:
    scheme, _, driver = url.drivername.partition("+")
    shown = url.render_as_string(hide_password=True)
    if scheme in ("postgres", "postgresql"):
        backend = "postgresql"
        fix = url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=True)
    elif scheme == "sqlite":
        backend = "sqlite"
        fix = url.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=True)
    else:
        raise DatabaseConfigError(
            f"{ENV_VAR}={shown!r}: this guide runs on SQLite and PostgreSQL only. "
            f"Use {_SQLITE_EXAMPLE} or {_POSTGRES_EXAMPLE}."
        )
    expected = ASYNC_DRIVERS[backend]
    if scheme == "postgres":
        why = "uses the scheme 'postgres', which SQLAlchemy does not know (it is 'postgresql')"
    elif not driver:
        default = "pysqlite" if backend == "sqlite" else "psycopg, in SQLAlchemy 2.1"
        why = f"names no driver, so SQLAlchemy would pick its synchronous default ({default})"
    elif driver != expected:
        why = f"names the driver {driver!r}; this guide uses {expected!r} with asyncio"
    else:
        why = ""
    if why:
        raise DatabaseConfigError(f"{ENV_VAR}={shown!r} {why}. Use {fix!r} instead.")
    try:
        importlib.import_module(expected)
    except ImportError:
        raise DatabaseConfigError(
            f"{ENV_VAR}={shown!r} needs the {expected!r} package, which is not installed. "
            f"Install it with: pip install {expected}"
        ) from None
    if backend == "sqlite":
        _check_sqlite_path(url)


def is_sqlite_file(url: URL) -> bool:
    """True for a SQLite URL that names a file (not ``:memory:``, not a ``file:`` URI)."""
    database = url.database or ""
    return database not in ("", ":memory:") and not database.startswith("file:")


def _check_sqlite_path(url: URL) -> None:
    if not is_sqlite_file(url):
        return
    parent = Path(url.database or "").expanduser().parent
    if parent != DEFAULT_SQLITE_DIR and not parent.is_dir():
        raise DatabaseConfigError(
            f"{ENV_VAR}={url.render_as_string(hide_password=True)!r}: the folder {str(parent)!r} "
            "does not exist, so SQLite cannot create the database file there. Create the folder "
            "or point the URL at an existing one."
        )
