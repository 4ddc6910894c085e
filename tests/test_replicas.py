"""Reads from a real replica, writes to its primary (``snippets.replicas``).

The pairs are the ones ``make replica`` starts (``snippets.lab.replica_pair``). Where none
answers they are skipped with the command to run, unless ``REPLICA_URL`` is set (CI), where that
is a failure. SQLite has no replicas: only the tests without a server run there. The tests that
use a pair share it and pause its replica, so xdist runs them in one worker (``xdist_group``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import event, insert, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets import create_tables, make_engine
from snippets.api import routed_session
from snippets.backends import facts, is_read_only_refusal
from snippets.demo.models import Team, metadata
from snippets.lab.latency_proxy import LatencyProxy
from snippets.lab.replica_pair import START_COMMAND, open_pair, pair_available, replica_pair
from snippets.lab.timing import eventually
from snippets.replicas import Replicas, on_primary, read_your_writes, writes

PAIR = replica_pair()
pytestmark = pytest.mark.xdist_group("replicas")


def test_statements_that_change_or_lock_rows_go_to_the_primary() -> None:
    assert writes(insert(Team).values(name="A", headquarters="Here"))
    assert writes(select(Team).with_for_update())
    assert writes(text("SELECT 1"))  # not known to be a read: the safe choice
    assert not writes(select(Team))


async def test_sqlite_has_no_replicas() -> None:
    engine = make_engine("sqlite+aiosqlite://")
    with pytest.raises(ValueError, match="SQLite has no replicas"):
        Replicas(engine, engine)
    await engine.dispose()


needs_the_pair = pytest.mark.skipif(
    PAIR is None or not pair_available(PAIR),
    reason="SQLite has no replicas"
    if PAIR is None
    else f"no replica pair answers: start one with `{START_COMMAND}`",
)


@pytest.fixture
async def replicas(namespace: str) -> AsyncIterator[Replicas]:
    assert PAIR is not None
    replicas = await open_pair(PAIR, namespace, check_every=0)
    await create_tables(replicas.primary, metadata)
    assert await replicas.wait_for(await replicas.position(), within=30)
    yield replicas
    await replicas.replica.dispose()
    await replicas.primary.dispose()


class Recorded:
    """The statements on the ``team`` table each engine of a pair ran, by their first word."""

    def __init__(self, replicas: Replicas) -> None:
        self.by_engine: dict[str, list[str]] = {"primary": [], "replica": []}
        for name, engine in (("primary", replicas.primary), ("replica", replicas.replica)):
            event.listen(engine.sync_engine, "before_cursor_execute", self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            if re.search(r"\bteam\b", statement):
                self.by_engine[name].append(statement.split()[0].upper())

        return record


@pytest.fixture
def recorded(replicas: Replicas) -> Recorded:
    return Recorded(replicas)


@needs_the_pair
async def test_writes_go_to_the_primary_and_reads_to_the_replica(
    replicas: Replicas, recorded: Recorded
) -> None:
    async with replicas.sessionmaker()() as session:
        session.add(Team(name="Written", headquarters="Here"))
        await session.commit()
    assert await replicas.wait_for(await replicas.position(), within=30)
    async with replicas.sessionmaker()() as session:
        teams = (await session.exec(select(Team))).all()

    assert [team.name for team in teams] == ["Written"]
    assert "INSERT" in recorded.by_engine["primary"]
    assert "INSERT" not in recorded.by_engine["replica"]
    assert recorded.by_engine["replica"].count("SELECT") == 1


@needs_the_pair
async def test_on_primary_and_for_update_read_from_the_primary(
    replicas: Replicas, recorded: Recorded
) -> None:
    async with replicas.sessionmaker()() as session:
        with on_primary(session):
            await session.exec(select(Team))
        await session.exec(select(Team).with_for_update())
        await session.commit()

    assert recorded.by_engine["primary"].count("SELECT") == 2
    assert "SELECT" not in recorded.by_engine["replica"]


@needs_the_pair
async def test_the_replica_refuses_a_write(replicas: Replicas) -> None:
    with pytest.raises(DBAPIError) as refused:
        async with replicas.replica.begin() as conn:
            await conn.execute(insert(Team).values(name="Refused", headquarters="Here"))

    assert is_read_only_refusal(refused.value)


@needs_the_pair
async def test_a_paused_replica_misses_a_write_and_read_your_writes_reads_the_primary(
    replicas: Replicas,
) -> None:
    replication = facts(replicas.primary).replication
    assert replication is not None
    pause, resume = replication.pause_replay, replication.resume_replay
    async with replicas.replica.connect() as conn:
        await conn.execute(text(pause))
        await conn.commit()
    try:
        async with replicas.sessionmaker()() as session:
            session.add(Team(name="Unseen", headquarters="Here"))
            await session.commit()
        written_at = await replicas.position()

        async with replicas.sessionmaker()() as session:
            from_replica = (await session.exec(select(Team))).all()
            stays = await read_your_writes(session, replicas, written_at, within=0.2)
            after = (await session.exec(select(Team))).all()
        reached_while_paused = await replicas.reached(written_at)
        lag_while_paused = await replicas.lag_seconds()
    finally:
        async with replicas.replica.connect() as conn:
            await conn.execute(text(resume))
            await conn.commit()

    assert from_replica == []  # the replica has not applied the write
    assert not reached_while_paused
    # PostgreSQL: the age of the last write applied; MariaDB: unknown while replay is paused
    assert (lag_while_paused is not None) == replication.lag_known_while_paused
    assert lag_while_paused is None or lag_while_paused > 0
    assert stays is False  # so the session's reads went to the primary
    assert [team.name for team in after] == ["Unseen"]
    assert await replicas.wait_for(written_at, within=30)  # replay resumed: it catches up
    assert await eventually(replicas.lag_seconds, lambda lag: lag == 0, within=30) == 0
    async with replicas.sessionmaker()() as session:
        assert await read_your_writes(session, replicas, written_at) is True
        assert [team.name for team in (await session.exec(select(Team))).all()] == ["Unseen"]


@needs_the_pair
async def test_reads_go_to_the_primary_while_the_replica_does_not_answer(
    namespace: str, replicas: Replicas, caplog: pytest.LogCaptureFixture
) -> None:
    assert PAIR is not None
    with LatencyProxy(PAIR[1]) as proxy:
        replica = make_engine(proxy.url, namespace=namespace, connect_timeout=1)
        routed = Replicas(replicas.primary, replica, check_every=0, check_within=1)
        recorded = Recorded(routed)
        caplog.set_level(logging.WARNING, logger="snippets.replicas")
        proxy.freeze()  # the kernel accepts connections; nothing answers: a hung server
        checks = [await routed.check() for _ in range(3)]
        async with routed.sessionmaker()() as session:
            await session.exec(select(Team))
        proxy.thaw()  # answers again within a few checks (the thawed proxy has a backlog)
        back = await eventually(routed.check, lambda answers: answers)
        await replica.dispose()

    assert checks == [False, False, False]
    assert recorded.by_engine["primary"].count("SELECT") == 1
    assert back is True
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages  # once when it went down, once when it came back
    assert "does not answer (TimeoutError)" in messages[0]
    assert "answers again" in messages[1]


@needs_the_pair
async def test_the_api_reads_from_the_replica_and_writes_to_the_primary(
    replicas: Replicas, recorded: Recorded
) -> None:
    app = FastAPI()
    # Not in an annotation: this file's annotations are strings, which FastAPI resolves in the
    # module, where the local `replicas` does not exist
    RoutedSession = Depends(routed_session(replicas))

    @app.post("/teams/{name}")
    async def add(name: str, session: AsyncSession = RoutedSession) -> None:
        session.add(Team(name=name, headquarters="Here"))
        await session.commit()

    @app.get("/teams")
    async def teams(session: AsyncSession = RoutedSession) -> list[str]:
        return [team.name for team in (await session.exec(select(Team))).all()]

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        (await client.post("/teams/Posted")).raise_for_status()
        assert await replicas.wait_for(await replicas.position(), within=30)
        listed = (await client.get("/teams")).json()

    assert listed == ["Posted"]
    assert recorded.by_engine["primary"] == ["INSERT"]
    assert recorded.by_engine["replica"] == ["SELECT"]


@needs_the_pair
async def test_a_transaction_that_wrote_reads_its_own_changes_from_the_primary(
    replicas: Replicas, recorded: Recorded
) -> None:
    async with replicas.sessionmaker()() as session:
        session.add(Team(name="Uncommitted", headquarters="Here"))
        await session.flush()  # on the primary, in this transaction
        in_transaction = [team.name for team in (await session.exec(select(Team))).all()]
        await session.rollback()
        after_rollback = (await session.exec(select(Team))).all()

    assert in_transaction == ["Uncommitted"]  # the primary had it
    assert after_rollback == []
    assert recorded.by_engine["primary"] == ["INSERT", "SELECT"]
    assert recorded.by_engine["replica"] == ["SELECT"]  # a new transaction reads the replica
