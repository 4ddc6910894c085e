"""One schema per tenant (``snippets.tenants``), on every backend: a tenant's session never sees
another tenant's rows, through queries, relationships and eager loads alike, and a name that is
not a tenant is an error, never the default schema."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi import Depends, FastAPI
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import selectinload
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.api import TENANT_HEADER, tenant_session
from snippets.backends import facts
from snippets.config import PROJECT_ROOT, database_url
from snippets.demo.models import Hero, Team, metadata
from snippets.demo.shared_tables import SharedTablesModel, TenantTeam
from snippets.lab.server import application_role
from snippets.migrations import current_revisions, upgrade_tenants
from snippets.relationships import rel
from snippets.session import make_sessionmaker
from snippets.tables import create_tables
from snippets.tenants import Tenants, UnknownTenantError, row_level_security, tenant_rows


@pytest.fixture
async def tenants(engine: AsyncEngine, namespace: str) -> AsyncIterator[Tenants]:
    # The test's own prefix: tenants of parallel test workers never meet
    tenants = Tenants(engine, prefix=f"{namespace}_t_")
    for name in ("alpha", "beta"):
        await tenants.drop(name)  # left by an earlier run
        await tenants.create(name, metadata)
    yield tenants
    for name in tenants.names():
        await tenants.drop(name)
    await tenants.dispose()


async def add_league(tenants: Tenants, tenant: str, team: str, heroes: list[str]) -> None:
    async with tenants.session(tenant) as session:
        session.add(
            Team(
                name=team,
                headquarters="Here",
                heroes=[Hero(name=name, secret_name=name) for name in heroes],
            )
        )
        await session.commit()


async def test_each_tenant_sees_its_own_rows_only(tenants: Tenants) -> None:
    await add_league(tenants, "alpha", "Alpha team", ["Ann", "Abe"])
    await add_league(tenants, "beta", "Beta team", ["Bob"])

    for tenant, team, heroes in (("alpha", "Alpha team", 2), ("beta", "Beta team", 1)):
        async with tenants.session(tenant) as session:
            teams = (await session.exec(select(Team).options(selectinload(rel(Team.heroes))))).all()
            hero_count = (await session.exec(select(func.count()).select_from(Hero))).one()
        assert [t.name for t in teams] == [team]
        assert len(teams[0].heroes) == heroes == hero_count  # the eager load stayed in the tenant


async def test_a_lazy_load_and_a_get_stay_in_the_tenant(tenants: Tenants) -> None:
    await add_league(tenants, "alpha", "Alpha team", ["Ann"])
    await add_league(tenants, "beta", "Beta team", ["Bob"])
    async with tenants.session("beta") as session:
        hero = (await session.exec(select(Hero))).one()
        team = await hero.awaitable_attrs.team  # a lazy load, run by the session
        same_id_in_alpha = await session.get(Hero, hero.id)

    assert team is not None
    assert team.name == "Beta team"
    assert same_id_in_alpha is hero  # beta's identity map: alpha's row with that id is not read


async def test_a_name_that_is_not_a_tenant_is_refused(tenants: Tenants) -> None:
    with pytest.raises(UnknownTenantError, match="no such tenant"):
        tenants.session("gamma")
    with pytest.raises(UnknownTenantError, match="not a tenant name"):
        tenants.session("alpha; DROP TABLE team")
    with pytest.raises(UnknownTenantError, match="not a tenant name"):
        tenants.session("")


async def test_tenants_are_found_again_by_a_new_object(
    tenants: Tenants, engine: AsyncEngine, namespace: str
) -> None:
    again = Tenants(engine, prefix=f"{namespace}_t_")
    found = await again.discover()
    await again.dispose()

    if facts(engine).namespace_kind == "file":
        assert found == []  # files: only the object that created them knows them
    else:
        assert found == ["alpha", "beta"]


async def test_the_api_serves_the_tenant_its_header_names(tenants: Tenants) -> None:
    await add_league(tenants, "alpha", "Alpha team", ["Ann"])
    app = FastAPI()

    # Not in an annotation: this file's annotations are strings, which FastAPI resolves in the
    # module, where the local `tenants` does not exist
    TenantSession = Depends(tenant_session(tenants))

    @app.get("/teams")
    async def teams(session: AsyncSession = TenantSession) -> list[str]:
        return [team.name for team in (await session.exec(select(Team))).all()]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = {
            tenant: await client.get("/teams", headers={TENANT_HEADER: tenant} if tenant else {})
            for tenant in ("alpha", "beta", "gamma", "")
        }

    assert answers["alpha"].json() == ["Alpha team"]
    assert answers["beta"].json() == []
    assert answers["gamma"].status_code == 404
    assert answers[""].status_code == 400


async def test_migrations_upgrade_every_tenant_in_its_own_schema(
    engine: AsyncEngine, namespace: str
) -> None:
    tenants = Tenants(engine, prefix=f"{namespace}_m_")
    for name in ("north", "south"):
        await tenants.drop(name)
        await tenants.create(name)  # the schema only: the migrations make the tables
    config = Config(toml_file=PROJECT_ROOT / "pyproject.toml", stdout=io.StringIO())
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        migrated = await upgrade_tenants(tenants, config)
        again = await upgrade_tenants(tenants, config)  # nothing left to do: a no-op
        await add_league(tenants, "north", "North team", ["Nia"])
        revisions = {}
        for name in tenants.names():
            tenant_engine = await tenants.open_engine(name)
            revisions[name] = await current_revisions(tenant_engine)
            await tenant_engine.dispose()
        async with tenants.session("south") as session:
            south_teams = (await session.exec(select(Team))).all()
        default_revisions = await current_revisions(engine)
    finally:
        for name in ("north", "south"):
            await tenants.drop(name)
        await tenants.dispose()

    assert migrated == again == ["north", "south"]
    assert revisions == {"north": (head,), "south": (head,)}
    assert south_teams == []
    assert default_revisions == ()  # the test's own namespace was never migrated


needs_row_level_security = pytest.mark.skipif(
    not facts(database_url()).row_level_security,
    reason="row-level security is PostgreSQL's: run with DATABASE_URL=postgresql+asyncpg://...",
)


@pytest.fixture
async def shared_teams(engine: AsyncEngine, namespace: str) -> AsyncIterator[AsyncEngine]:
    """``tenant_team`` with rows of two tenants and its policy; an engine for a role that is
    neither superuser nor owner (the test's own, by its namespace, dropped afterwards)."""
    await create_tables(engine, SharedTablesModel.metadata)
    async with make_sessionmaker(engine)() as session:
        session.add_all(
            TenantTeam(tenant=tenant, name=name)
            for tenant, name in (("alpha", "A1"), ("alpha", "A2"), ("beta", "B1"))
        )
        await session.commit()
    async with engine.begin() as conn:
        for statement in row_level_security("tenant_team"):
            await conn.exec_driver_sql(statement)
    role = f"{namespace}_app"
    application = await application_role(engine, namespace, role)
    yield application
    await application.dispose()
    async with engine.begin() as conn:  # a role is the whole server's: not left behind
        await conn.exec_driver_sql(f"DROP OWNED BY {role}")
        await conn.exec_driver_sql(f"DROP ROLE {role}")


async def names_seen(sessions: async_sessionmaker[AsyncSession], tenant: str) -> list[str]:
    async with sessions() as session:
        tenant_rows(session, tenant)
        return sorted((await session.exec(select(TenantTeam.name))).all())


@needs_row_level_security
async def test_row_level_security_shows_each_tenant_its_rows_only(
    engine: AsyncEngine, shared_teams: AsyncEngine
) -> None:
    sessions = make_sessionmaker(shared_teams)
    assert await names_seen(sessions, "alpha") == ["A1", "A2"]
    assert await names_seen(sessions, "beta") == ["B1"]

    async with sessions() as session:
        tenant_rows(session, "alpha")
        session.add(TenantTeam(tenant="beta", name="Sneaked in"))
        with pytest.raises(DBAPIError, match="violates row-level security policy"):
            await session.commit()

    # The superuser who made the table is not held by the policy: it sees every tenant
    async with make_sessionmaker(engine)() as session:
        assert len((await session.exec(select(TenantTeam))).all()) == 3


@needs_row_level_security
async def test_row_level_security_without_the_tenant_fails_then_finds_nothing(
    shared_teams: AsyncEngine,
) -> None:
    sessions = make_sessionmaker(shared_teams)
    async with sessions() as session:
        with pytest.raises(DBAPIError, match="unrecognized configuration parameter"):
            await session.exec(select(TenantTeam))
    assert await names_seen(sessions, "beta") == ["B1"]
    # The same pooled connection, after a transaction that named a tenant: the setting is now
    # empty, not missing, and the query quietly finds nothing
    async with sessions() as session:
        assert (await session.exec(select(TenantTeam))).all() == []


def test_tenant_rows_refuses_a_name_that_cannot_be_a_tenant() -> None:
    with pytest.raises(UnknownTenantError, match="not a tenant name"):
        tenant_rows(AsyncSession(), "Robert'); DROP TABLE")


def test_row_level_security_refuses_a_name_it_would_write_into_sql_as_is() -> None:
    assert len(row_level_security("tenant_team")) == 3
    with pytest.raises(ValueError, match="not a plain lower-case SQL name"):
        row_level_security("team; DROP TABLE team")
    with pytest.raises(ValueError, match="not a plain lower-case SQL name"):
        row_level_security("tenant_team", setting="app.tenant')--")


async def test_tenant_rows_refuses_a_session_that_has_begun(engine: AsyncEngine) -> None:
    async with make_sessionmaker(engine)() as session:
        await session.connection()  # a transaction has begun, without the tenant
        with pytest.raises(ValueError, match="has begun a transaction without the tenant"):
            tenant_rows(session, "alpha")
