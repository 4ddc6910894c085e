"""Reads from a replica, writes to the primary, with one ``AsyncSession``.

``Replicas`` holds the two engines; ``Replicas.sessionmaker()`` makes SQLModel ``AsyncSession``
objects whose synchronous core is ``RoutingSession``: its ``get_bind`` sends every flush, every
``INSERT``/``UPDATE``/``DELETE`` and every ``SELECT ... FOR UPDATE`` to the primary, and other
``SELECT`` statements to the replica, except in a transaction that has already written: its
reads go to the primary until it ends, since only the primary has its uncommitted changes.
A session can be sent to the primary for everything with ``on_primary(session)`` (a read that
must see the latest data, e.g. right before a write that depends on it).

A replica is behind its primary by however long it takes to receive and apply the primary's
log. ``Replicas.position()`` is how far the primary has got (after a commit: a point that
includes it); ``Replicas.wait_for(position, within=...)`` waits, bounded, until the replica has
applied that much, and says whether it did: a caller that must read its own write sends the
read to the primary when it did not (``read_your_writes``).

A replica that is down does not take the reads down with it: ``Replicas.check()`` (call it
before a request's session, e.g. in a FastAPI dependency) tries the replica at most every
``check_every`` seconds, for at most ``check_within`` seconds; while it does not answer, reads
go to the primary. The change is logged once, when it happens, not per request.

The backend facts say how each server tells positions (PostgreSQL: WAL LSNs; MySQL/MariaDB:
GTIDs); SQLite has no replicas (``Replicas`` refuses it with a ``ValueError``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Delete, Insert, Select, Update, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import SessionTransaction
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.backends import facts

logger = logging.getLogger(__name__)

ROUTER_KEY = "replicas"
"""The key of ``Session.info`` that holds a routing session's ``Replicas``."""
PRIMARY_KEY = "replicas.primary"
"""The key of ``Session.info`` that, when true, sends all of a session's statements to the
primary (``on_primary``)."""


WROTE_KEY = "replicas.wrote"
"""The key of ``Session.info`` that is true while the session's transaction has written: its
reads then go to the primary, the only server that has its uncommitted changes."""


class RoutingSession(Session):
    """A SQLModel ``Session`` that picks the primary or the replica for each statement: the
    primary for writes, and for every read of a transaction that has written (a flush, or an
    ``INSERT``/``UPDATE``/``DELETE``), until it ends; the replica for the other reads."""

    def get_bind(self, mapper: Any = None, clause: Any = None, **kw: Any) -> Engine:
        replicas: Replicas = self.info[ROUTER_KEY]
        if self._flushing or writes(clause):
            self.info[WROTE_KEY] = True
            return replicas.primary.sync_engine
        if self.info.get(PRIMARY_KEY) or self.info.get(WROTE_KEY):
            return replicas.primary.sync_engine
        return replicas.reader().sync_engine


@event.listens_for(RoutingSession, "after_transaction_end")
def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the session's outermost transaction: committed or not
        session.info.pop(WROTE_KEY, None)


def writes(clause: Any) -> bool:
    """Whether a statement must run on the primary: it changes rows, locks them, or is
    anything but a ``SELECT`` (text, DDL: the primary, as the safe choice)."""
    if isinstance(clause, (Insert, Update, Delete)):
        return True
    if isinstance(clause, Select):
        return clause._for_update_arg is not None  # SELECT ... FOR UPDATE / FOR SHARE
    return True


@contextmanager
def on_primary(session: AsyncSession) -> Iterator[AsyncSession]:
    """Send everything ``session`` runs inside the block to the primary (reads included)."""
    before = session.info.get(PRIMARY_KEY, False)
    session.info[PRIMARY_KEY] = True
    try:
        yield session
    finally:
        session.info[PRIMARY_KEY] = before


class Replicas:
    """A primary and a replica of it, and how to read from the replica safely."""

    def __init__(
        self,
        primary: AsyncEngine,
        replica: AsyncEngine,
        *,
        check_every: float = 5.0,
        check_within: float = 2.0,
    ) -> None:
        replication = facts(primary).replication
        if replication is None:
            raise ValueError(f"{facts(primary).label} has no replicas: use one engine")
        self._sql = replication
        self.primary = primary
        self.replica = replica
        self.check_every = check_every
        self.check_within = check_within
        self.replica_answers = True
        self._checked_at = float("-inf")

    def reader(self) -> AsyncEngine:
        """The engine reads go to: the replica, or the primary while the replica is down."""
        return self.replica if self.replica_answers else self.primary

    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """Sessions that route their statements (``RoutingSession``), values kept after commit
        as ``make_sessionmaker``'s."""
        return async_sessionmaker(
            class_=AsyncSession,
            sync_session_class=RoutingSession,
            expire_on_commit=False,
            info={ROUTER_KEY: self},
        )

    async def check(self) -> bool:
        """Try the replica if the last try is ``check_every`` seconds old (a failed connection
        takes at most the engine's connect timeout); log when it goes down or comes back.
        Returns whether reads go to the replica."""
        now = time.monotonic()
        if now - self._checked_at < self.check_every:
            return self.replica_answers
        self._checked_at = now
        try:
            # Bounded as a whole: a pooled connection to a hung server would wait forever
            async with asyncio.timeout(self.check_within), self.replica.connect() as conn:
                await conn.execute(text("SELECT 1"))
            answers = True
        except (DBAPIError, OSError, TimeoutError) as error:
            answers = False
            reason = type(error.orig if isinstance(error, DBAPIError) else error).__name__
        if answers != self.replica_answers:
            if answers:
                logger.warning("replica answers again: reads go to it")
            else:
                logger.warning("replica does not answer (%s): reads go to the primary", reason)
        self.replica_answers = answers
        return answers

    async def position(self) -> str:
        """How far the primary's log has got: after a commit, a position that includes it."""
        async with self.primary.connect() as conn:
            return str((await conn.execute(text(self._sql.primary_position))).scalar_one())

    async def replica_position(self) -> str:
        """How far the replica has applied the primary's log."""
        async with self.replica.connect() as conn:
            return str((await conn.execute(text(self._sql.replica_position))).scalar_one())

    async def lag_seconds(self) -> float | None:
        """How many seconds the replica is behind, as it reports it; ``None`` when it does not
        know (MySQL/MariaDB while its applier is stopped). A figure for a dashboard: to read
        your own writes, compare positions (``wait_for``), not seconds."""
        async with self.replica.connect() as conn:
            row = (await conn.execute(text(self._sql.lag_seconds))).one()
        lag = row._mapping[self._sql.lag_column]
        return None if lag is None else float(lag)

    async def reached(self, position: str) -> bool:
        """Whether the replica has applied the primary's log up to ``position``."""
        statement = text(self._sql.replica_reached)
        async with self.replica.connect() as conn:
            return bool((await conn.execute(statement, {"position": position})).scalar_one())

    async def wait_for(self, position: str, *, within: float, every: float = 0.01) -> bool:
        """Wait until the replica has applied ``position``, asking every ``every`` seconds for at
        most ``within`` seconds; ``False`` if it has not by then. A replica that refuses the
        question is asked again: it may not have a database the primary has just created."""
        deadline = time.monotonic() + within
        while True:
            try:
                if await self.reached(position):
                    return True
            except (DBAPIError, OSError, TimeoutError):
                pass  # not answering, or not yet the namespace's database (MySQL/MariaDB)
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(every)


async def read_your_writes(
    session: AsyncSession, replicas: Replicas, position: str | None, *, within: float = 0.5
) -> bool:
    """Make ``session`` see a write committed at ``position`` (``None``: no write to see): its
    reads stay on the replica if the replica has applied it within ``within`` seconds, else they
    go to the primary. Returns whether they stay on the replica."""
    if position is None or not replicas.replica_answers:
        return replicas.replica_answers
    caught_up = await replicas.wait_for(position, within=within)
    if not caught_up:
        session.info[PRIMARY_KEY] = True
    return caught_up
