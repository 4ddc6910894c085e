"""A team's own application, with its own ``Hero`` table, reusing the guide's helpers.

Teams copy snippets next to their own models, often with the same table names as the guide's
demo. This module is such an application: it imports every module of ``snippets`` first, then
declares its own ``Hero`` in the global ``SQLModel.metadata``, serves it with the reusable API
plumbing, and tests it the usual ways (``api_client``, ``rollback_session``, Starlette's
``TestClient``). The guide's demo tables must stay out of its metadata and its database.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

import snippets
from snippets import open_engine, table_names
from snippets.api import commit_or_conflict, database_lifespan
from snippets.engine import make_engine
from snippets.tables import create_tables
from snippets.testing import api_client, rollback_session

REUSED_MODULES = [
    importlib.import_module(f"snippets.{info.name}")
    for info in pkgutil.iter_modules(snippets.__path__)
]
GUIDE_TABLES = {"team", "power", "heropowerlink", "account", "transfer"}


class Hero(SQLModel, table=True):
    """The team's own hero: same table name as the guide's, other columns."""

    id: int | None = Field(default=None, primary_key=True)
    alias: str = Field(max_length=50, unique=True)
    rank: int = 0


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """The team's own session dependency (not the guide's ``get_session``)."""
    async with request.app.state.sessionmaker() as session:
        yield session


Db = Annotated[AsyncSession, Depends(get_db)]


def create_team_app(
    engine: AsyncEngine | Callable[[], Awaitable[AsyncEngine]], *, create: bool = True
) -> FastAPI:
    lifespan = database_lifespan(engine, metadata=SQLModel.metadata if create else None)
    app = FastAPI(lifespan=lifespan)

    @app.post("/heroes", status_code=201)
    async def add(hero: Hero, db: Db) -> Hero:
        db.add(hero)
        await commit_or_conflict(db, f"alias {hero.alias!r} is taken")
        return hero

    @app.get("/heroes/{hero_id}")
    async def read(hero_id: int, db: Db) -> Hero:
        hero = await db.get(Hero, hero_id)
        if hero is None:
            raise HTTPException(status_code=404)
        return hero

    return app


def test_reusing_every_snippet_adds_none_of_the_guides_tables() -> None:
    assert len(REUSED_MODULES) >= 10
    assert set(SQLModel.metadata.tables) == {"hero"}
    assert set(SQLModel.metadata.tables["hero"].columns.keys()) == {"id", "alias", "rank"}


async def test_own_crud_through_the_reused_plumbing(namespace: str) -> None:
    app = create_team_app(lambda: open_engine(namespace=f"{namespace}_own", fresh=True))
    async with api_client(app) as client:
        created = await client.post("/heroes", json={"alias": "Deadpond", "rank": 3})
        assert created.status_code == 201
        hero_id = created.json()["id"]
        assert (await client.get(f"/heroes/{hero_id}")).json() == {
            "id": hero_id,
            "alias": "Deadpond",
            "rank": 3,
        }
        duplicate = await client.post("/heroes", json={"alias": "Deadpond"})
        assert duplicate.status_code == 409
        assert (await client.get("/heroes/999")).status_code == 404
        # Only the team's table exists in its database: none of the guide's demo tables.
        assert await table_names(app.state.engine) == ["hero"]


async def test_own_session_dependency_overridden_with_a_rolled_back_session(
    namespace: str,
) -> None:
    engine = await open_engine(namespace=f"{namespace}_own", fresh=True)
    try:
        await create_tables(engine, SQLModel.metadata)
        async with rollback_session(engine) as session:
            # create=False: on SQLite a second connection would wait for this test's write lock.
            app = create_team_app(engine, create=False)
            async with api_client(app, session, dependency=get_db) as client:
                assert (await client.post("/heroes", json={"alias": "Temp"})).status_code == 201
            assert [h.alias for h in (await session.exec(select(Hero))).all()] == ["Temp"]
        async with rollback_session(engine) as session:
            assert (await session.exec(select(Hero))).all() == []  # rolled back, commit included
        assert not GUIDE_TABLES & set(await table_names(engine))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("run", [1, 2])
def test_starlette_testclient_twice_on_one_module_level_app(namespace: str, run: int) -> None:
    # TestClient runs the app on an event loop of its own, a new one per `with` block. The
    # engine is opened inside the lifespan, on that loop, so each block gets fresh connections.
    app = create_team_app(lambda: open_engine(namespace=f"{namespace}_tc", fresh=True))
    for attempt in range(2):
        with TestClient(app) as client:
            created = client.post("/heroes", json={"alias": f"Run {run}.{attempt}"})
            assert created.status_code == 201, created.text
            assert client.get(f"/heroes/{created.json()['id']}").status_code == 200


def test_make_engine_is_not_tied_to_the_guides_models() -> None:
    # Building an engine registers only connection events: no metadata, no tables.
    engine = make_engine("sqlite+aiosqlite://")
    assert set(SQLModel.metadata.tables) == {"hero"}
    engine.sync_engine.dispose()
