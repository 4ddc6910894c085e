"""Read and validate the database URL from the ``DATABASE_URL`` environment variable.

The guide runs on three backends: SQLite through ``aiosqlite`` (the default, no server),
PostgreSQL through ``asyncpg``, and MySQL/MariaDB through ``aiomysql``. Anything else, or a
URL that names a synchronous driver, is rejected here with one message that says which URL to
write instead, before SQLAlchemy gets a chance to fail deep inside its dialect loading. No
message ever contains the password.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from snippets.backends import FACTS, Backend

ENV_VAR = "DATABASE_URL"
"""The environment variable every notebook, test and snippet reads."""

SQLITE_DIR_VAR = "GUIDE_SQLITE_DIR"
"""The environment variable that chooses the folder of the default SQLite files."""

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The guide's checkout, when ``snippets`` is imported from one (notebooks, tests, tools)."""


_POSTGRES_EXAMPLE = "postgresql+asyncpg://user:password@host:5432/dbname"
_SQLITE_EXAMPLE = "sqlite+aiosqlite:///path/to/file.db"
_MYSQL_EXAMPLE = "mysql+aiomysql://user:password@host:3306/dbname"
_EXAMPLES = f"{_SQLITE_EXAMPLE}, {_POSTGRES_EXAMPLE} or {_MYSQL_EXAMPLE}"


class DatabaseConfigError(ValueError):
    """The database URL cannot be used; the message says what to write instead."""


_SECRET_PARAMETER = re.compile(r"([?&][^=&]*(?:pass|secret|token|key)[^=&]*=)[^&]*", re.I)
"""A query parameter that can hold a secret: ``?password=`` (asyncpg and aiomysql accept it),
``sslpassword``, ``token``, ``key``..."""


def redact(raw: str) -> str:
    """Hide the secrets of a URL-like string, even one SQLAlchemy cannot parse: its password
    and the value of every password-like query parameter become ``***``.

    Whatever stands between the first ``:`` of the user info and the last ``@`` is a password
    (it may itself contain ``@`` or ``:``), with or without a ``scheme://`` in front.
    """
    shown = _SECRET_PARAMETER.sub(r"\1***", raw)
    head, at, host = shown.rpartition("@")
    if not at:
        return shown
    scheme_end = head.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    user, colon, _ = head[start:].partition(":")
    return head[:start] + user + (":***" if colon else "") + at + host


def shown_url(url: URL) -> str:
    """``url`` as it may be printed, logged or stored: ``redact`` of its full text. (SQLAlchemy's
    ``hide_password=True`` leaves a query-string password, and the part after the first ``@``
    of a password that holds an unencoded one.)"""
    return redact(url.render_as_string(hide_password=False))


def default_sqlite_dir() -> Path:
    """The folder of the default SQLite files, chosen in this order:

    1. ``GUIDE_SQLITE_DIR``, when set;
    2. ``build/db/`` of the guide's checkout, when the process works inside that checkout (its
       notebooks, tests and tools);
    3. otherwise ``build/db/`` under the current working directory: an application that
       imports ``snippets`` (installed, or an editable install of a checkout elsewhere) keeps
       its database in its own folder, never in ``site-packages`` or in the guide's checkout.
    """
    configured = os.environ.get(SQLITE_DIR_VAR, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    here = Path.cwd().resolve()
    if (PROJECT_ROOT / "pyproject.toml").is_file() and here.is_relative_to(PROJECT_ROOT):
        return PROJECT_ROOT / "build" / "db"
    return here / "build" / "db"


def default_url() -> URL:
    """The URL used when ``DATABASE_URL`` is unset: ``guide.sqlite3`` in ``default_sqlite_dir()``.

    The folder is created here: the default has to work on a fresh clone, whoever connects.
    """
    folder = default_sqlite_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return URL.create("sqlite+aiosqlite", database=str(folder / "guide.sqlite3"))


def database_url(raw: str | URL | None = None) -> URL:
    """Return the validated async URL from ``raw``, else ``DATABASE_URL``, else the default.

    Raises:
        DatabaseConfigError: the URL is malformed, names a synchronous or missing driver, or a
            backend this guide does not run on. The message names the URL to use instead, and
            where the URL came from (the argument, or ``DATABASE_URL``).
    """
    origin = "the URL"
    if raw is None:
        raw = os.environ.get(ENV_VAR) or None
        origin = ENV_VAR
    if raw is None:
        return default_url()
    if isinstance(raw, URL):
        url = raw
    else:
        try:
            url = make_url(raw.strip())
        except (ArgumentError, ValueError) as error:  # a bad port or IPv6 host is a ValueError
            detail = "" if isinstance(error, ArgumentError) else f" ({error})"
            raise DatabaseConfigError(
                f"{_label(origin, redact(raw))} is not a valid database URL{detail}. "
                f"Use {_EXAMPLES}."
            ) from None
    _check_driver(url, origin)
    if url.port is not None and not 0 < url.port < 65536:
        raise DatabaseConfigError(
            f"{_label(origin, shown_url(url))}: port {url.port} is not a TCP port (1 to 65535). "
            f"Use {_EXAMPLES}."
        )
    if url.host and "@" in url.host:
        raise DatabaseConfigError(
            f"{_label(origin, shown_url(url))}: the password holds an '@', which ends it early "
            "(the rest is read as the host). Percent-encode it as %40, or set the password "
            "in a way that needs no URL (PGPASSWORD, a .pgpass or option file)."
        )
    return url


def _label(origin: str, shown: str) -> str:
    return f"{ENV_VAR}={shown!r}" if origin == ENV_VAR else f"{origin} {shown!r}"


def _check_driver(url: URL, origin: str = "the URL") -> None:
    scheme, _, driver = url.drivername.partition("+")
    shown = _label(origin, shown_url(url))
    backend: Backend
    if scheme in ("postgres", "postgresql"):
        backend, fixed_scheme = "postgresql", "postgresql"
    elif scheme == "sqlite":
        backend, fixed_scheme = "sqlite", "sqlite"
    elif scheme in ("mysql", "mariadb"):  # the same driver; mariadb:// refuses a MySQL server
        backend, fixed_scheme = "mysql", scheme
    else:
        raise DatabaseConfigError(
            f"{shown}: this guide runs on SQLite, PostgreSQL and MySQL/MariaDB only. "
            f"Use {_EXAMPLES}."
        )
    expected = FACTS[backend].async_driver
    fix = shown_url(url.set(drivername=f"{fixed_scheme}+{expected}"))
    if scheme == "postgres":
        why = "uses the scheme 'postgres', which SQLAlchemy does not know (it is 'postgresql')"
    elif not driver:
        default = FACTS[backend].sync_default
        why = f"names no driver, so SQLAlchemy would pick its synchronous default ({default})"
    elif driver != expected:
        why = f"names the driver {driver!r}; this guide uses {expected!r} with asyncio"
    else:
        why = ""
    if why:
        raise DatabaseConfigError(f"{shown} {why}. Use {fix!r} instead.")
    try:
        importlib.import_module(expected)
    except ImportError:
        raise DatabaseConfigError(
            f"{shown} needs the {expected!r} package, which is not installed. "
            f"Install it with: pip install {expected}"
        ) from None
    if not FACTS[backend].has_server:
        _check_sqlite_path(url, shown)


def is_sqlite_file(url: URL) -> bool:
    """True for a SQLite URL that names a file (not ``:memory:``, not a ``file:`` URI)."""
    database = url.database or ""
    return database not in ("", ":memory:") and not database.startswith("file:")


def _check_sqlite_path(url: URL, shown: str) -> None:
    if not is_sqlite_file(url):
        return
    parent = Path(url.database or "").expanduser().parent
    if not parent.is_dir():
        raise DatabaseConfigError(
            f"{shown}: the folder {str(parent)!r} "
            "does not exist, so SQLite cannot create the database file there. Create the folder "
            "or point the URL at an existing one."
        )
