"""The API and the Air page, end to end, each test inside a transaction that is rolled back."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.demo.heroes_api import MAX_PAGE, create_app
from snippets.demo.heroes_page import create_air_app
from snippets.demo.models import Hero
from snippets.testing import api_client, rollback_session


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with rollback_session(engine) as session:
        yield session


@pytest.fixture
async def client(engine: AsyncEngine, session: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    # The engine fixture created the tables. With create=True the lifespan would open a second
    # connection, which on SQLite waits for the write lock this test's transaction holds.
    async with api_client(create_app(engine, create=False), session) as client:
        yield client


async def post_hero(client: httpx.AsyncClient, **fields: object) -> httpx.Response:
    return await client.post("/heroes/", json={"secret_name": "secret", **fields})


async def test_create_then_read(client: httpx.AsyncClient) -> None:
    created = await post_hero(client, name="Deadpond", age=30)
    assert created.status_code == 201
    body = created.json()
    assert body == {
        "name": "Deadpond",
        "secret_name": "secret",
        "age": 30,
        "team_id": None,
        "id": body["id"],
    }
    read = await client.get(f"/heroes/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body


async def test_missing_hero_is_404(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/heroes/999"),
        await client.patch("/heroes/999", json={"age": 1}),
        await client.delete("/heroes/999"),
    ):
        assert response.status_code == 404
        assert response.json() == {"detail": "hero 999 not found"}


async def test_duplicate_name_is_409_and_the_session_recovers(client: httpx.AsyncClient) -> None:
    assert (await post_hero(client, name="Unique")).status_code == 201
    duplicate = await post_hero(client, name="Unique")
    assert duplicate.status_code == 409
    assert duplicate.json() == {"detail": "a hero named 'Unique' already exists"}
    assert (await post_hero(client, name="Next")).status_code == 201  # not a PendingRollbackError


@pytest.mark.parametrize(
    "payload",
    [
        {"name": "No secret"},
        {"name": "Negative", "secret_name": "s", "age": -1},
        {"name": "x" * 101, "secret_name": "s"},
        {"name": "Bad age", "secret_name": "s", "age": "old"},
    ],
)
async def test_invalid_input_is_422(client: httpx.AsyncClient, payload: dict[str, object]) -> None:
    response = await client.post("/heroes/", json=payload)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] in {
        "missing",
        "greater_than_equal",
        "string_too_long",
        "int_parsing",
    }


async def test_pagination_and_its_bounds(client: httpx.AsyncClient) -> None:
    for number in range(7):
        assert (await post_hero(client, name=f"Hero {number}")).status_code == 201
    first = (await client.get("/heroes/", params={"offset": 0, "limit": 3})).json()
    second = (await client.get("/heroes/", params={"offset": 3, "limit": 3})).json()
    last = (await client.get("/heroes/", params={"offset": 6, "limit": 3})).json()
    assert [h["name"] for h in first + second + last] == [f"Hero {n}" for n in range(7)]
    for params in ({"limit": 0}, {"limit": MAX_PAGE + 1}, {"offset": -1}, {"limit": "ten"}):
        assert (await client.get("/heroes/", params=params)).status_code == 422, params
    assert len((await client.get("/heroes/", params={"limit": MAX_PAGE})).json()) == 7


async def test_patch_changes_only_what_was_sent(client: httpx.AsyncClient) -> None:
    hero = (await post_hero(client, name="Spider-Boy", age=16)).json()
    patched = await client.patch(f"/heroes/{hero['id']}", json={"age": 17})
    assert patched.status_code == 200
    assert patched.json() == {**hero, "age": 17}
    cleared = await client.patch(f"/heroes/{hero['id']}", json={"age": None})
    assert cleared.json()["age"] is None
    refused = await client.patch(f"/heroes/{hero['id']}", json={"name": None})
    assert refused.status_code == 422
    assert (await client.get(f"/heroes/{hero['id']}")).json()["name"] == "Spider-Boy"


async def test_patch_to_a_taken_name_is_409(client: httpx.AsyncClient) -> None:
    await post_hero(client, name="First")
    second = (await post_hero(client, name="Second")).json()
    response = await client.patch(f"/heroes/{second['id']}", json={"name": "First"})
    assert response.status_code == 409
    assert (await client.get(f"/heroes/{second['id']}")).json()["name"] == "Second"


async def test_delete_is_204_then_404(client: httpx.AsyncClient) -> None:
    hero = (await post_hero(client, name="Gone")).json()
    deleted = await client.delete(f"/heroes/{hero['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.get(f"/heroes/{hero['id']}")).status_code == 404


async def test_team_with_heroes_is_eager_loaded(client: httpx.AsyncClient) -> None:
    team = await client.post("/teams/", json={"name": "Preventers", "headquarters": "Tower"})
    assert team.status_code == 201
    team_id = team.json()["id"]
    for name in ("Rusty-Man", "Tarantula"):
        assert (await post_hero(client, name=name, team_id=team_id)).status_code == 201
    response = await client.get(f"/teams/{team_id}")
    assert response.status_code == 200
    assert [h["name"] for h in response.json()["heroes"]] == ["Rusty-Man", "Tarantula"]
    assert (await client.get("/teams/404")).status_code == 404
    assert [t["name"] for t in (await client.get("/teams/")).json()] == ["Preventers"]
    duplicate = await client.post("/teams/", json={"name": "Preventers", "headquarters": "x"})
    assert duplicate.status_code == 409


async def test_unknown_team_is_422(client: httpx.AsyncClient) -> None:
    response = await post_hero(client, name="Lonely", team_id=12345)
    assert response.status_code == 422
    assert response.json() == {"detail": "team 12345 does not exist"}
    hero = (await post_hero(client, name="Joiner")).json()
    patched = await client.patch(f"/heroes/{hero['id']}", json={"team_id": 12345})
    assert patched.status_code == 422


async def test_each_test_leaves_the_database_empty(engine: AsyncEngine) -> None:
    async with rollback_session(engine) as session:
        async with api_client(create_app(engine, create=False), session) as client:
            assert (await post_hero(client, name="Temporary")).status_code == 201
        assert (await session.exec(select(func.count()).select_from(Hero))).one() == 1
    async with AsyncSession(engine) as fresh:
        assert (await fresh.exec(select(func.count()).select_from(Hero))).one() == 0


async def test_app_without_override_commits_for_real(engine: AsyncEngine) -> None:
    # The lifespan with a given engine: tables created, the engine left open for its owner.
    async with api_client(create_app(engine)) as client:
        assert (await post_hero(client, name="Persisted")).status_code == 201
    async with AsyncSession(engine) as session:
        assert (await session.exec(select(Hero.name))).all() == ["Persisted"]


async def test_air_page_lists_and_creates(engine: AsyncEngine, session: AsyncSession) -> None:
    async with api_client(create_air_app(engine, create=False), session) as client:
        empty = await client.get("/")
        assert empty.status_code == 200
        assert empty.headers["content-type"].startswith("text/html")
        assert "<h1>Heroes</h1>" in empty.text
        assert '<form action="/heroes" method="post">' in empty.text
        created = await client.post("/heroes", data={"name": "Air Hero", "secret_name": "Breeze"})
        assert created.status_code == 303
        assert created.headers["location"] == "/"
        listed = await client.get("/")
        assert "<li>Air Hero (Breeze)</li>" in listed.text
        duplicate = await client.post("/heroes", data={"name": "Air Hero", "secret_name": "x"})
        assert duplicate.status_code == 409
        assert "already exists" in duplicate.text
        missing = await client.post("/heroes", data={"name": "Half"})
        assert missing.status_code == 422


def test_tables_are_created_without_a_sync_driver() -> None:
    # The lifespan used run_sync on the async engine; no synchronous PostgreSQL driver is loaded.
    assert "psycopg2" not in sys.modules
    assert "psycopg" not in sys.modules
