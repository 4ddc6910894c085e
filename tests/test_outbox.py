"""The transactional outbox (``snippets.outbox``), without a broker: ``send`` records what it sends.

A message is committed with its transaction or not at all; the relay sends the committed ones,
oldest first, and deletes them; a send that fails leaves the whole batch to be sent again; two
relays at once never send one message twice (row locks skipped on PostgreSQL and MariaDB,
SQLite's one writer at a time).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import registry
from sqlmodel import SQLModel, func, select

from snippets.demo.models import Team
from snippets.outbox import OutboxMessage, relay_outbox
from snippets.session import make_sessionmaker
from snippets.tables import create_tables


class OwnRegistry(SQLModel, registry=registry()):
    """This module's table, on a registry of its own."""


class Outbox(OwnRegistry, OutboxMessage, table=True):
    __tablename__ = "test_outbox"


@pytest.fixture
async def outbox_engine(engine: AsyncEngine) -> AsyncEngine:
    await create_tables(engine, OwnRegistry.metadata)
    return engine


class Recorder:
    """A ``send`` that records each job, and can be made to fail or to wait."""

    def __init__(self, *, fail_at: int | None = None) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail_at = fail_at
        self.sending = asyncio.Event()  # set once the first job is being sent
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, task: str, arguments: dict[str, Any]) -> None:
        self.sending.set()
        await self.release.wait()
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise ConnectionError("the broker does not answer")
        self.sent.append((task, arguments))


async def waiting(engine: AsyncEngine) -> int:
    async with make_sessionmaker(engine)() as session:
        return (await session.exec(select(func.count()).select_from(Outbox))).one()


async def test_a_message_is_sent_only_when_its_transaction_commits(
    outbox_engine: AsyncEngine,
) -> None:
    sessions = make_sessionmaker(outbox_engine)
    async with sessions() as session:
        team = Team(name="Kept", headquarters="Here")
        session.add(team)
        await session.flush()
        session.add(Outbox(task="rename_team", arguments={"team_id": team.id, "name": "One"}))
        await session.commit()
    async with sessions() as session:
        session.add(Team(name="Rolled back", headquarters="Nowhere"))
        session.add(Outbox(task="rename_team", arguments={"team_id": 999, "name": "Never"}))
        await session.rollback()
    async with sessions() as session:
        session.add(Outbox(task="add_team", arguments={"name": "Two"}))
        await session.commit()

    send = Recorder()
    assert await relay_outbox(sessions, Outbox, send) == 2
    assert send.sent == [
        ("rename_team", {"team_id": team.id, "name": "One"}),
        ("add_team", {"name": "Two"}),
    ]  # oldest first; the rolled-back one never
    assert await waiting(outbox_engine) == 0  # deleted once sent
    assert await relay_outbox(sessions, Outbox, send) == 0


async def test_a_failed_send_leaves_the_whole_batch_to_be_sent_again(
    outbox_engine: AsyncEngine,
) -> None:
    sessions = make_sessionmaker(outbox_engine)
    async with sessions() as session:
        session.add_all(Outbox(task="add_team", arguments={"name": f"Team {n}"}) for n in range(3))
        await session.commit()

    send = Recorder(fail_at=2)
    with pytest.raises(ConnectionError):
        await relay_outbox(sessions, Outbox, send)
    assert await waiting(outbox_engine) == 3  # rolled back: none deleted
    send.fail_at = None
    assert await relay_outbox(sessions, Outbox, send) == 3
    names = [arguments["name"] for _, arguments in send.sent]
    # At least once: the two sent before the failure are sent again.
    assert names == ["Team 0", "Team 1", "Team 0", "Team 1", "Team 2"]


async def test_two_relays_at_once_send_each_message_once(outbox_engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(outbox_engine)
    async with sessions() as session:
        session.add_all(Outbox(task="add_team", arguments={"name": f"Team {n}"}) for n in range(5))
        await session.commit()

    send = Recorder()
    send.release.clear()
    first = asyncio.create_task(relay_outbox(sessions, Outbox, send))
    await asyncio.wait_for(send.sending.wait(), 10)  # the first relay holds the batch
    second = asyncio.create_task(relay_outbox(sessions, Outbox, send))
    await asyncio.sleep(0.2)  # the second skips the locked rows, or waits for SQLite's lock
    send.release.set()
    counts = await asyncio.gather(first, second)

    assert sorted(counts) == [0, 5]
    assert sorted(arguments["name"] for _, arguments in send.sent) == [
        f"Team {n}" for n in range(5)
    ]
