"""One schema per tenant: the same tables once per tenant, a session that sees one tenant only.

``Tenants(engine)`` creates, finds and drops tenants, and gives a session for one of them. On
PostgreSQL a tenant is a schema, on MySQL/MariaDB a database (what MySQL calls a schema), both
reached through the one engine: the session's ``execution_options`` carry a
``schema_translate_map`` (``{None: <the tenant's schema>}``), which SQLAlchemy 2.1 applies to
every statement the session runs (queries, flushes, lazy and eager loads alike), so a table
model with no schema of its own is read and written in the tenant's schema. On SQLite a tenant
is a file of its own beside the engine's, with an engine of its own.

A name that is not a tenant is an ``UnknownTenantError``, never the default schema: a session
is only ever made for a tenant this object has created or found (``discover()``).

A tenant is a namespace of ``snippets.engine`` (``prefix`` + its name), so whatever takes a
namespace reaches it: ``Tenants.open_engine(tenant)``, Alembic's ``-x namespace=...``, and
``snippets.migrations.upgrade_tenants``, which migrates every tenant's schema in turn.

Tenant names are lower-case letters, digits and ``_`` (they become part of a schema name).

PostgreSQL's alternative, row-level security: one set of tables with a tenant column, and a
policy that shows a role only the rows of the tenant its transaction names.
``row_level_security(table)`` gives the statements; ``tenant_rows(session, tenant)`` names the
tenant at the start of each of the session's transactions, for that transaction only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, MetaData, event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.backends import facts
from snippets.engine import delete_sqlite_files, make_engine, namespaced_url, open_engine
from snippets.tables import create_tables

TENANT_NAME = re.compile(r"[a-z][a-z0-9_]{0,29}")
SQL_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
TENANT_SETTING = "app.tenant"
"""The setting that names a transaction's tenant for row-level security."""


class UnknownTenantError(LookupError):
    """The name is not a tenant's (or not a valid tenant name at all)."""


def checked_tenant(tenant: str) -> str:
    """``tenant``, if it can be a tenant's name; else an ``UnknownTenantError``."""
    if not TENANT_NAME.fullmatch(tenant):
        raise UnknownTenantError(f"not a tenant name: {tenant[:40]!r}")
    return tenant


class Tenants:
    """The tenants of one database, each a schema (a database on MySQL/MariaDB, a file on
    SQLite) named ``prefix`` + the tenant's name."""

    def __init__(self, engine: AsyncEngine, *, prefix: str = "tenant_") -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", prefix):
            raise ValueError(f"a tenant prefix is lower-case letters, digits and _: {prefix!r}")
        self.engine = engine
        self.prefix = prefix
        self._kind = facts(engine).namespace_kind
        self._known: set[str] = set()
        self._engines: dict[str, AsyncEngine] = {}  # SQLite: a file, so an engine, per tenant

    def namespace(self, tenant: str) -> str:
        """``tenant``'s namespace of ``snippets.engine`` (``prefix`` + name), within this
        object's engine's: ``open_engine`` and ``upgrade_tenants`` reach the tenant by it. A bad
        name is an ``UnknownTenantError``."""
        return f"{self.prefix}{checked_tenant(tenant)}"

    def schema(self, tenant: str) -> str:
        """The schema ``tenant``'s tables are in: its namespace's schema on PostgreSQL, its
        database on MySQL/MariaDB (``test`` -> ``test_<namespace>``), its file on SQLite."""
        url = namespaced_url(self.engine.url, self.namespace(tenant))
        return self.namespace(tenant) if self._kind == "schema" else url.database or ""

    def names(self) -> list[str]:
        """The tenants this object knows of, sorted."""
        return sorted(self._known)

    def _engine_of(self, tenant: str) -> AsyncEngine:
        if self._kind != "file":
            return self.engine
        if tenant not in self._engines:
            url = namespaced_url(self.engine.url, self.namespace(tenant))
            self._engines[tenant] = make_engine(url)
        return self._engines[tenant]

    def _options(self, tenant: str) -> dict[str, object]:
        if self._kind == "file":
            return {}
        return {"schema_translate_map": {None: self.schema(tenant)}}

    async def open_engine(self, tenant: str, **engine_kwargs: Any) -> AsyncEngine:
        """An engine of ``tenant``'s own namespace (its schema first on PostgreSQL's
        ``search_path``, its database on MySQL/MariaDB, its file on SQLite), created if
        missing: what Alembic migrates a tenant through (``upgrade_tenants``)."""
        return await open_engine(self.engine.url, namespace=self.namespace(tenant), **engine_kwargs)

    async def create(self, tenant: str, metadata: MetaData | None = None) -> None:
        """Create ``tenant``'s schema, and ``metadata``'s tables in it where given (idempotent);
        without ``metadata``, migrations create them (``upgrade_tenants``)."""
        await (await self.open_engine(tenant)).dispose()  # creates the schema where missing
        if metadata is not None:
            engine = self._engine_of(tenant)
            await create_tables(engine.execution_options(**self._options(tenant)), metadata)
        self._known.add(tenant)

    async def drop(self, tenant: str) -> None:
        """Drop ``tenant``'s schema and everything in it (on SQLite: delete its file)."""
        schema = self.schema(tenant)
        self._known.discard(tenant)
        if self._kind == "file":
            url = namespaced_url(self.engine.url, self.namespace(tenant))
            engine = self._engines.pop(tenant, None)
            if engine is not None:
                await engine.dispose()
            delete_sqlite_files(Path(url.database or ""))
            return
        cascade = " CASCADE" if self._kind == "schema" else ""
        keyword = "SCHEMA" if self._kind == "schema" else "DATABASE"
        async with self.engine.begin() as conn:
            await conn.execute(text(f"DROP {keyword} IF EXISTS {schema}{cascade}"))

    async def discover(self) -> list[str]:
        """Find the tenants that exist in the database (e.g. at start-up), and know them."""
        if self._kind == "file":
            return self.names()  # files are found by create(); a server lists its schemas
        head = self.schema("a")[:-1]  # the schema name of any tenant, less the tenant's name
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :p"
                ),
                {"p": head.replace("_", r"\_") + "%"},
            )
            found = [name[len(head) :] for (name,) in rows.all()]
        self._known.update(name for name in found if TENANT_NAME.fullmatch(name))
        return self.names()

    def session(self, tenant: str) -> AsyncSession:
        """A session that reads and writes ``tenant``'s tables only; values kept after commit
        as ``make_sessionmaker``'s. An unknown tenant is an ``UnknownTenantError``."""
        self.schema(tenant)  # a bad name fails here
        if tenant not in self._known:
            raise UnknownTenantError(f"no such tenant: {tenant!r}")
        return AsyncSession(
            self._engine_of(tenant),
            expire_on_commit=False,
            execution_options=self._options(tenant),
        )

    async def dispose(self) -> None:
        """Close the engines this object opened (SQLite's, one per tenant)."""
        for engine in self._engines.values():
            await engine.dispose()
        self._engines.clear()


def row_level_security(
    table: str, *, column: str = "tenant", setting: str = TENANT_SETTING
) -> list[str]:
    """PostgreSQL statements that show and let write only the rows of ``table`` whose ``column``
    is the tenant the transaction's ``setting`` names (``tenant_rows``). ``FORCE`` makes the
    table's owner obey the policy too; superusers and ``BYPASSRLS`` roles never do, so the
    application must connect as a role that is neither. Without the setting a query fails
    (``unrecognized configuration parameter``) on a connection that never had it, and finds no
    rows on one that had it in an earlier transaction (it is then empty, not missing)."""
    for name in (table, column, setting):  # they go into the SQL as they are
        if not SQL_NAME.fullmatch(name):
            raise ValueError(f"not a plain lower-case SQL name: {name!r}")
    same_tenant = f"{column} = current_setting('{setting}')"
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_tenant_rows ON {table} "
        f"USING ({same_tenant}) WITH CHECK ({same_tenant})",
    ]


def tenant_rows(
    session: AsyncSession, tenant: str, *, setting: str = TENANT_SETTING
) -> AsyncSession:
    """Make every transaction of ``session`` name ``tenant`` first (PostgreSQL), for that
    transaction only (``set_config(..., true)``, as ``SET LOCAL``): the connection goes back to
    the pool without it, so the next session that gets it cannot inherit the tenant. Call it
    before the session's first statement."""
    checked_tenant(tenant)
    if session.in_transaction():
        raise ValueError("tenant_rows: the session has begun a transaction without the tenant")
    name_the_tenant = text("SELECT set_config(:setting, :tenant, true)")

    def set_tenant(_: Session, __: SessionTransaction, connection: Connection) -> None:
        connection.execute(name_the_tenant, {"setting": setting, "tenant": tenant})

    event.listen(session.sync_session, "after_begin", set_tenant)
    return session
