"""CRUD helpers on the configured backend: every helper, its edge cases, and what it leaves."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.backends import facts
from snippets.demo.crud import (
    count_heroes,
    create_hero,
    delete_hero,
    delete_heroes_older_than,
    get_hero,
    get_hero_by_name,
    insert_heroes,
    list_heroes,
    update_hero,
    upsert_heroes,
)
from snippets.demo.models import HeroCreate, HeroUpdate


def rows(count: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"name": f"hero-{i:04d}", "secret_name": f"secret-{i}", "age": i % 90}
        for i in range(start, start + count)
    ]


async def test_create_assigns_id_and_get_reads_it_back(session: AsyncSession) -> None:
    hero = await create_hero(session, HeroCreate(name="Deadpond", secret_name="Dive Wilson"))
    await session.commit()
    assert hero.id is not None
    session.expunge_all()  # force a real SELECT instead of the identity map
    loaded = await get_hero(session, hero.id)
    assert loaded is not None
    assert loaded.name == "Deadpond"
    assert loaded.age is None
    assert await get_hero(session, hero.id + 1000) is None


async def test_get_by_name(session: AsyncSession) -> None:
    await create_hero(session, HeroCreate(name="Rusty-Man", secret_name="Tommy", age=48))
    found = await get_hero_by_name(session, "Rusty-Man")
    assert found is not None
    assert found.age == 48
    assert await get_hero_by_name(session, "nobody") is None


async def test_duplicate_name_raises_integrity_error_then_session_recovers(
    session: AsyncSession,
) -> None:
    await create_hero(session, HeroCreate(name="Unique", secret_name="a"))
    await session.commit()
    with pytest.raises(IntegrityError):
        await create_hero(session, HeroCreate(name="Unique", secret_name="b"))
    await session.rollback()
    assert await count_heroes(session) == 1


def test_models_validate_input() -> None:
    with pytest.raises(ValidationError):
        HeroCreate(name="x", secret_name="y", age=-1)
    with pytest.raises(ValidationError):
        HeroUpdate(name="n" * 101)


async def test_list_pages_in_id_order_and_filters(session: AsyncSession) -> None:
    await insert_heroes(session, rows(25))
    first = await list_heroes(session, offset=0, limit=10)
    second = await list_heroes(session, offset=10, limit=10)
    last = await list_heroes(session, offset=20, limit=10)
    assert [len(first), len(second), len(last)] == [10, 10, 5]
    ids = [hero.id for hero in first + second + last]
    assert ids == sorted(ids)
    assert len(set(ids)) == 25
    assert await list_heroes(session, offset=25) == []
    assert all((hero.age or 0) >= 20 for hero in await list_heroes(session, min_age=20))
    assert len(await list_heroes(session, min_age=20)) == 5
    with pytest.raises(ValueError, match="offset and limit"):
        await list_heroes(session, offset=-1)


async def test_count(session: AsyncSession) -> None:
    assert await count_heroes(session) == 0
    assert await insert_heroes(session, rows(7)) == 7
    assert await count_heroes(session) == 7
    assert await insert_heroes(session, []) == 0


async def test_update_applies_only_fields_that_were_set(session: AsyncSession) -> None:
    hero = await create_hero(session, HeroCreate(name="Spider-Boy", secret_name="Pedro", age=16))
    await update_hero(session, hero, HeroUpdate(age=17))
    await session.commit()
    session.expunge_all()
    assert hero.id is not None
    reloaded = await get_hero(session, hero.id)
    assert reloaded is not None
    assert (reloaded.name, reloaded.secret_name, reloaded.age) == ("Spider-Boy", "Pedro", 17)
    # Setting a field to None explicitly *is* applied: "set" is not the same as "not None".
    await update_hero(session, reloaded, HeroUpdate(age=None))
    assert reloaded.age is None


async def test_delete_one_and_bulk(session: AsyncSession) -> None:
    await insert_heroes(session, rows(10))
    target = await get_hero_by_name(session, "hero-0003")
    assert target is not None
    assert target.id is not None
    assert await delete_hero(session, target.id) is True
    assert await delete_hero(session, target.id) is False
    assert await delete_heroes_older_than(session, 6) == 3  # ages 7, 8, 9
    assert await count_heroes(session) == 6


async def test_upsert_inserts_new_and_updates_existing(session: AsyncSession) -> None:
    assert await upsert_heroes(session, rows(3)) == 3
    changed = [{"name": "hero-0001", "secret_name": "new", "age": 50}, *rows(1, start=3)]
    # One update and one insert: MySQL/MariaDB count the updated row twice.
    assert await upsert_heroes(session, changed) == facts(session.get_bind()).upsert_update_rows + 1
    await session.commit()
    session.expunge_all()
    assert await count_heroes(session) == 4
    updated = await get_hero_by_name(session, "hero-0001")
    assert updated is not None
    assert (updated.secret_name, updated.age) == ("new", 50)
    assert await upsert_heroes(session, []) == 0


async def test_bulk_insert_is_visible_to_orm_queries(session: AsyncSession) -> None:
    await insert_heroes(session, rows(500))
    await session.commit()
    assert await count_heroes(session) == 500
    hero = await get_hero_by_name(session, "hero-0499")
    assert hero is not None
    assert hero.secret_name == "secret-499"
