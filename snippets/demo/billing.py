"""Chapter 18's two databases: teams in the league's database, their accounts in billing's.

A team that signs up in the league must get an account in billing. ``two_database_sessions``
binds each model to its database: one session, two connections, so two transactions and two
COMMITs, with nothing that makes them one. ``sign_up`` is the pattern to use instead: the team
and an outbox message in one league transaction; ``relay_outbox`` (``snippets.outbox``) then
delivers the message to billing with ``deliver_to``, at least once, and ``open_account`` makes a
second delivery harmless (the account's owner is unique).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import registry
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.demo.models import Account, Hero, Team, Transfer
from snippets.outbox import OutboxMessage, Send

OPEN_ACCOUNT = "open_account"
"""The one task of the league's outbox: ``{"owner": <the team's name>}``."""


class LeagueOutboxModel(SQLModel, registry=registry()):
    """A registry of its own: the outbox table is made only where chapter 18 asks for it."""


class LeagueOutbox(LeagueOutboxModel, OutboxMessage, table=True):
    """Messages for billing, written in the league's transactions."""

    __tablename__ = "league_outbox"


def two_database_sessions(
    league: AsyncEngine, billing: AsyncEngine
) -> async_sessionmaker[AsyncSession]:
    """Sessions that send each model's statements to its own database (``binds``)."""
    return async_sessionmaker(
        binds={
            Team: league,
            Hero: league,
            LeagueOutbox: league,
            Account: billing,
            Transfer: billing,
        },
        class_=AsyncSession,
        expire_on_commit=False,
    )


async def sign_up(league: async_sessionmaker[AsyncSession], name: str) -> Team:
    """Add the team, and the message that asks billing for its account, in one transaction."""
    async with league() as session:
        team = Team(name=name, headquarters="Signed up")
        session.add(team)
        session.add(LeagueOutbox(task=OPEN_ACCOUNT, arguments={"owner": name}))
        await session.commit()
    return team


async def open_account(billing: async_sessionmaker[AsyncSession], owner: str) -> bool:
    """Open ``owner``'s account; ``False`` if it was open already (a message delivered twice):
    the unique owner makes a second delivery change nothing."""
    async with billing() as session:
        session.add(Account(owner=owner, balance=0))
        try:
            await session.commit()
        except IntegrityError:
            return False
    return True


def deliver_to(billing: async_sessionmaker[AsyncSession]) -> Send:
    """The relay's ``send``: apply a league message to billing."""

    async def deliver(task: str, arguments: dict[str, Any]) -> None:
        if task != OPEN_ACCOUNT:
            raise ValueError(f"billing has no task {task!r}")
        await open_account(billing, **arguments)

    return deliver
