"""``DATABASE_URL`` validation: every unusable value gives one message naming the URL to use."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url
from sqlalchemy.pool import NullPool

from snippets import (
    ENV_VAR,
    DatabaseConfigError,
    DatabaseUnreachableError,
    config,
    database_url,
    make_engine,
    open_engine,
)
from snippets.config import SQLITE_DIR_VAR, redact
from snippets.pool import PoolConfigError

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sqlite:///app.db", "sqlite+aiosqlite:///app.db"),
        ("sqlite+pysqlite:///app.db", "sqlite+aiosqlite:///app.db"),
        (f"postgresql://u:{SECRET}@db:5432/app", "postgresql+asyncpg://u:***@db:5432/app"),
        (f"postgres://u:{SECRET}@db/app", "postgresql+asyncpg://u:***@db/app"),
        (f"postgres+asyncpg://u:{SECRET}@db/app", "postgresql+asyncpg://u:***@db/app"),
        (f"postgresql+psycopg2://u:{SECRET}@db/app", "postgresql+asyncpg://u:***@db/app"),
        (f"postgresql+psycopg://u:{SECRET}@db/app", "postgresql+asyncpg://u:***@db/app"),
        (f"mysql://u:{SECRET}@db:3306/app", "mysql+aiomysql://u:***@db:3306/app"),
        (f"mysql+pymysql://u:{SECRET}@db/app", "mysql+aiomysql://u:***@db/app"),
        (f"mysql+asyncmy://u:{SECRET}@db/app", "mysql+aiomysql://u:***@db/app"),
        (f"mariadb+mariadbconnector://u:{SECRET}@db/app", "mariadb+aiomysql://u:***@db/app"),
    ],
)
def test_sync_or_unnamed_driver_names_the_async_url(raw: str, expected: str) -> None:
    with pytest.raises(DatabaseConfigError) as caught:
        database_url(raw)
    message = str(caught.value)
    assert f"Use {expected!r} instead" in message
    assert SECRET not in message


def test_bare_postgresql_url_explains_sqlalchemy_21_default() -> None:
    with pytest.raises(DatabaseConfigError, match=r"psycopg, in SQLAlchemy 2\.1"):
        database_url("postgresql://u@db/app")


def test_postgres_scheme_is_called_out() -> None:
    with pytest.raises(DatabaseConfigError, match="it is 'postgresql'"):
        database_url("postgres://u@db/app")


@pytest.mark.parametrize(
    "raw",
    [f"mssql+aioodbc://sa:{SECRET}@db/app", "oracle+oracledb://u@db/app", "nosuch://x"],
)
def test_unsupported_backend(raw: str) -> None:
    match = "SQLite, PostgreSQL and MySQL/MariaDB only"
    with pytest.raises(DatabaseConfigError, match=match) as caught:
        database_url(raw)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "raw",
    [
        "not a url",
        f"user:{SECRET}@localhost/db",
        "://",
        f"postgresql+asyncpg//u:{SECRET}@h",
        # SQLAlchemy raises a plain ValueError for these two: a bad IPv6 host, a bad port.
        f"postgresql+asyncpg://u:{SECRET}@[::1:5432/db",
        f"postgresql+asyncpg://u:{SECRET}@db:port/app",
    ],
)
def test_malformed_value(raw: str) -> None:
    with pytest.raises(DatabaseConfigError, match="is not a valid database URL") as caught:
        database_url(raw)
    message = str(caught.value)
    assert "postgresql+asyncpg://user:password@host:5432/dbname" in message
    assert SECRET not in message


def test_redact_hides_password_in_unparseable_text() -> None:
    assert redact(f"postgresql+asyncpg//x + pg://u:{SECRET}@h/db") == (
        "postgresql+asyncpg//x + pg://u:***@h/db"
    )


def test_missing_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import asyncpg` fail exactly as when it is not installed.
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(DatabaseConfigError, match="pip install asyncpg") as caught:
        database_url(f"postgresql+asyncpg://u:{SECRET}@db/app")
    assert SECRET not in str(caught.value)


def test_missing_sqlite_folder(tmp_path: Path) -> None:
    with pytest.raises(DatabaseConfigError, match="does not exist"):
        database_url(f"sqlite+aiosqlite:///{tmp_path}/missing/app.db")


def test_unset_variable_means_embedded_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    url = database_url()
    assert url.drivername == "sqlite+aiosqlite"
    assert Path(url.database or "").parent == config.default_sqlite_dir()


def test_default_folder_is_created_and_follows_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A fresh clone has no build/: the default URL must work before anything made the folder.
    folder = tmp_path / "fresh" / "db"
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv(SQLITE_DIR_VAR, str(folder))
    url = database_url()
    assert Path(url.database or "") == folder / "guide.sqlite3"
    assert folder.is_dir()


def test_installed_package_default_follows_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Installed with `pip install .`, snippets lives in site-packages, with no pyproject.toml
    # beside it: the default file must not be written there.
    monkeypatch.delenv(SQLITE_DIR_VAR, raising=False)
    monkeypatch.setattr(config, "PROJECT_ROOT", tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    assert config.default_sqlite_dir() == tmp_path / "build" / "db"


def test_checkout_default_is_its_build_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SQLITE_DIR_VAR, raising=False)
    monkeypatch.chdir(config.PROJECT_ROOT / "notebooks")  # as a notebook's kernel does
    assert config.default_sqlite_dir() == config.PROJECT_ROOT / "build" / "db"


def test_an_application_elsewhere_keeps_its_database_in_its_own_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # An app beside an editable install of this checkout imports snippets from the checkout,
    # but works in its own folder: its SQLite file belongs there, not in the guide's build/.
    monkeypatch.delenv(SQLITE_DIR_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert (config.PROJECT_ROOT / "pyproject.toml").is_file()
    assert config.default_sqlite_dir() == tmp_path.resolve() / "build" / "db"


def test_an_argument_is_named_as_such_not_as_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(DatabaseConfigError) as caught:
        make_engine("sqlite://")
    assert str(caught.value).startswith("the URL 'sqlite://' names no driver")
    assert ENV_VAR not in str(caught.value)


def test_the_variable_is_named_when_it_is_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "sqlite://")
    with pytest.raises(DatabaseConfigError, match=r"^DATABASE_URL='sqlite://' names no driver"):
        database_url()


def test_empty_variable_means_embedded_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "")
    assert database_url().drivername == "sqlite+aiosqlite"


def test_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "postgresql+asyncpg://u@db:5432/app")
    assert database_url().render_as_string() == "postgresql+asyncpg://u@db:5432/app"


@pytest.mark.parametrize(
    "raw",
    [
        "sqlite+aiosqlite://",
        "sqlite+aiosqlite:///:memory:",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        "mysql+aiomysql://root@127.0.0.1:3306/test",
        "mariadb+aiomysql://root@127.0.0.1:3306/test",
    ],
)
def test_async_urls_are_accepted(raw: str) -> None:
    assert database_url(raw) == make_url(raw)


def test_make_engine_reports_config_error_not_sqlalchemy_internals() -> None:
    # Without validation SQLAlchemy raises NoSuchModuleError ("Can't load plugin") here.
    with pytest.raises(DatabaseConfigError, match="postgresql"):
        make_engine(f"postgres://u:{SECRET}@db/app")


@pytest.mark.parametrize(
    "raw",
    [
        f"postgresql+asyncpg://u:{SECRET}@db/app",
        f"postgresql+asyncpg://u@db/app?password={SECRET}",
        f"mysql+aiomysql://u@db/app?ssl=true&password={SECRET}",
        f"postgresql+asyncpg://u@db/app?sslpassword={SECRET}&sslmode=require",
        f"postgresql+asyncpg://u:ab@{SECRET}@db/app",  # an '@' in the password, unencoded
    ],
)
def test_a_shown_url_holds_no_secret_in_any_form(raw: str) -> None:
    shown = config.shown_url(make_url(raw))
    assert SECRET not in shown
    assert shown.startswith(raw.split("://")[0] + "://u")
    assert "db/app" in shown


def test_an_unencoded_at_in_the_password_is_refused_without_showing_it() -> None:
    with pytest.raises(DatabaseConfigError, match="%40") as caught:
        database_url(f"postgresql+asyncpg://u:ab@{SECRET}@db/app")
    assert SECRET not in str(caught.value)
    assert "ab" not in str(caught.value).split("'")[1]  # the URL shown: no part of the password


async def test_an_unreachable_server_does_not_show_a_query_string_password() -> None:
    with pytest.raises(DatabaseUnreachableError) as caught:
        await open_engine(f"postgresql+asyncpg://u@127.0.0.1:1/app?password={SECRET}")
    assert SECRET not in str(caught.value)
    assert "password=***" in str(caught.value)


@pytest.mark.parametrize("port", [0, 70000, 99999])
def test_a_port_out_of_range_is_one_clear_error(port: int) -> None:
    with pytest.raises(DatabaseConfigError, match=f"port {port} is not a TCP port"):
        database_url(f"postgresql+asyncpg://u:{SECRET}@db:{port}/app")


def test_invalid_pool_settings_are_refused_even_with_a_pool_class_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As alembic's env.py makes its engine (NullPool): DB_POOL_* is checked all the same."""
    monkeypatch.setenv("DB_POOL_SIZE", "many")
    with pytest.raises(PoolConfigError, match="DB_POOL_SIZE"):
        make_engine("postgresql+asyncpg://u@db/app", poolclass=NullPool)


async def test_a_query_parameter_the_driver_does_not_take_is_named_without_its_value() -> None:
    with pytest.raises(
        DatabaseConfigError, match="does not take the option 'sslpassword'"
    ) as caught:
        await open_engine(f"postgresql+asyncpg://u@127.0.0.1:1/app?sslpassword={SECRET}")
    assert SECRET not in str(caught.value)
