"""Two databases in one application (``snippets.demo.billing``), on every backend.

One session with ``binds`` sends each model to its database and commits each in turn: a
connection lost between the two COMMITs leaves one database with its change and the other
without. The outbox instead commits the team and its message together and delivers the message
at least once; a second delivery changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.exc import PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets import open_engine
from snippets.demo.billing import (
    LeagueOutbox,
    LeagueOutboxModel,
    deliver_to,
    open_account,
    sign_up,
    two_database_sessions,
)
from snippets.demo.models import Account, Team, metadata
from snippets.lab.faults import watched_commits
from snippets.lab.observe import recorded_statements
from snippets.outbox import relay_outbox
from snippets.session import make_sessionmaker
from snippets.tables import create_tables


@pytest.fixture
async def databases(namespace: str) -> AsyncIterator[dict[str, AsyncEngine]]:
    league = await open_engine(namespace=f"{namespace}_league", fresh=True)
    billing = await open_engine(namespace=f"{namespace}_billing", fresh=True)
    await create_tables(league, metadata)
    await create_tables(league, LeagueOutboxModel.metadata)
    await create_tables(billing, metadata)
    yield {"league": league, "billing": billing}
    await league.dispose()
    await billing.dispose()


async def teams_named(sessions: async_sessionmaker[AsyncSession], name: str) -> int:
    async with sessions() as session:
        return (await session.exec(select(func.count()).where(Team.name == name))).one()


async def accounts_of(sessions: async_sessionmaker[AsyncSession], owner: str) -> int:
    async with sessions() as session:
        return (await session.exec(select(func.count()).where(Account.owner == owner))).one()


async def test_one_session_commits_each_database_in_turn(databases: dict[str, AsyncEngine]) -> None:
    sessions = two_database_sessions(databases["league"], databases["billing"])
    with (
        recorded_statements(databases["league"]) as on_league,
        recorded_statements(databases["billing"]) as on_billing,
        watched_commits(databases) as commits,
    ):
        async with sessions() as session:
            session.add(Team(name="Both", headquarters="Here"))
            session.add(Account(owner="Both", balance=0))
            await session.commit()

    assert any(s.startswith("INSERT INTO team") for s in on_league)
    assert not any("account" in s for s in on_league)
    assert any(s.startswith("INSERT INTO account") for s in on_billing)
    assert not any("team" in s for s in on_billing)
    assert sorted(commits.sent) == ["billing", "league"]  # one COMMIT each, in no set order
    assert await teams_named(sessions, "Both") == 1
    assert await accounts_of(sessions, "Both") == 1


async def test_a_connection_lost_between_the_two_commits_keeps_one_of_them(
    databases: dict[str, AsyncEngine],
) -> None:
    sessions = two_database_sessions(databases["league"], databases["billing"])
    with watched_commits(databases, lose=2) as commits:
        async with sessions() as session:
            session.add(Team(name="Half", headquarters="Here"))
            session.add(Account(owner="Half", balance=0))
            with pytest.raises(PendingRollbackError):
                await session.commit()

    assert commits.lost is not None
    assert len(commits.sent) == 1
    assert {commits.sent[0], commits.lost} == {"league", "billing"}
    saved = {"league": await teams_named(sessions, "Half")}
    saved["billing"] = await accounts_of(sessions, "Half")
    assert saved == {commits.sent[0]: 1, commits.lost: 0}


async def test_the_outbox_delivers_once_though_the_relay_loses_its_commit(
    databases: dict[str, AsyncEngine],
) -> None:
    league = make_sessionmaker(databases["league"])
    billing = make_sessionmaker(databases["billing"])
    await sign_up(league, "Outboxed")
    deliver = deliver_to(billing)

    # Billing opens the account, then the relay's COMMIT (deleting the message) is lost
    lost = watched_commits({"league": databases["league"]}, lose=1)
    with lost as commits, pytest.raises(PendingRollbackError):
        await relay_outbox(league, LeagueOutbox, deliver)
    assert commits.lost == "league"
    assert await accounts_of(billing, "Outboxed") == 1
    async with league() as session:
        assert (await session.exec(select(func.count()).select_from(LeagueOutbox))).one() == 1

    assert await relay_outbox(league, LeagueOutbox, deliver) == 1  # delivered again
    assert await accounts_of(billing, "Outboxed") == 1  # and still one account
    assert await relay_outbox(league, LeagueOutbox, deliver) == 0
    assert await open_account(billing, "Outboxed") is False


async def test_deliver_refuses_a_task_billing_does_not_have(
    databases: dict[str, AsyncEngine],
) -> None:
    deliver = deliver_to(make_sessionmaker(databases["billing"]))
    with pytest.raises(ValueError, match="billing has no task 'close_account'"):
        await deliver("close_account", {"owner": "Nobody"})
