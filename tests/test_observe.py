"""The statement recorder sees exactly the statements sent, and stops when its block ends; the
log collector keeps a logger's messages for its block."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.demo.crud import insert_heroes
from snippets.demo.models import Hero
from snippets.lab.observe import logged, recorded_statements


async def test_records_each_statement_in_order(engine: AsyncEngine, session: AsyncSession) -> None:
    with recorded_statements(engine) as statements:
        await insert_heroes(session, [{"name": f"h{i}", "secret_name": "s"} for i in range(3)])
        await session.exec(select(Hero).where(Hero.name == "h1"))
        first = await session.get(Hero, 1)  # not in the identity map yet: one SELECT
        again = await session.get(Hero, 1)  # it is now (held by `first`): no statement
    assert again is first
    assert len(statements) == 3
    assert statements[0].startswith("INSERT INTO hero")
    assert statements[1].startswith("SELECT hero.")
    assert "WHERE hero.name =" in statements[1]
    assert "WHERE hero.id =" in statements[2]


async def test_stops_recording_after_the_block(engine: AsyncEngine, session: AsyncSession) -> None:
    with recorded_statements(engine) as statements:
        await session.exec(select(Hero))
    await session.exec(select(Hero))
    assert len(statements) == 1


async def test_recorders_nest(engine: AsyncEngine, session: AsyncSession) -> None:
    with recorded_statements(engine) as outer:
        await session.exec(select(Hero))
        with recorded_statements(engine) as inner:
            await session.exec(select(Hero))
    assert (len(outer), len(inner)) == (2, 1)


async def test_transaction_control_is_left_out_but_savepoints_are_kept(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    with recorded_statements(engine) as statements:
        await session.exec(select(Hero))  # autobegin: SQLite engines send BEGIN first
        async with session.begin_nested():
            await session.exec(select(Hero))
        await session.commit()
    assert statements[0].startswith("SELECT hero.")
    assert [s.split()[0] for s in statements] == ["SELECT", "SAVEPOINT", "SELECT", "RELEASE"]


def test_logged_keeps_a_loggers_messages_for_the_block_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = logging.getLogger("snippets.test_logged")
    with logged("snippets.test_logged") as messages:
        logger.warning("replica %s", "down")
        logger.debug("below the level")
    logger.warning("after the block")

    assert messages == ["WARNING replica down"]
    assert "replica down" not in capsys.readouterr().err  # kept, not printed
    assert logger.propagate  # as it was
    assert not logger.handlers
