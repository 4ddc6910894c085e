"""A transactional outbox: a job written in the same transaction as its data, sent after it commits.

A job sent to a queue from inside a transaction can run before the commit (the worker sees
nothing), or after a rollback (for data that never existed); a job sent after the commit is
lost when sending fails. An outbox avoids both: the job is a row, added in the transaction
that writes its data, so both are committed or neither is, and a relay sends the committed
rows to the queue afterwards and deletes them.

* ``OutboxMessage``: the columns. Copy it next to your models and make a table of it on your
  own registry: ``class Outbox(MyModel, OutboxMessage, table=True): pass``.
* ``relay_outbox``: one pass: locks a batch of messages, oldest first (``SKIP LOCKED``, so that
  several relays share the work), sends each, and deletes the batch in the same transaction.
  A send that fails rolls the whole batch back, to be sent again: delivery is *at least once*,
  so a job must be harmless to run twice (an idempotency key, chapter 16).
* ``relay_forever``: the relay's loop, for a worker's start-up hook or a process of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import JSON, delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

logger = logging.getLogger(__name__)

Send = Callable[[str, dict[str, Any]], Awaitable[object]]
"""``send(task, arguments)``: puts one job on the queue (``await task.kiq(**arguments)``)."""


class OutboxMessage(SQLModel):
    """A job waiting to be sent: the task's name and its keyword arguments (JSON)."""

    id: int | None = Field(default=None, primary_key=True)
    task: str = Field(max_length=200)
    arguments: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


Message = TypeVar("Message", bound=OutboxMessage)


async def relay_outbox(
    sessions: async_sessionmaker[AsyncSession],
    outbox: type[Message],
    send: Send,
    *,
    batch: int = 100,
) -> int:
    """Send up to ``batch`` committed messages, oldest first, and delete them; return how many.

    The rows stay locked until the deletion commits, so a second relay skips them (``FOR UPDATE
    SKIP LOCKED``; SQLite, which has no row locks, runs one writer at a time anyway).
    """
    async with sessions() as session, session.begin():
        oldest_first = (
            select(outbox).order_by(col(outbox.id)).limit(batch).with_for_update(skip_locked=True)
        )
        messages = (await session.exec(oldest_first)).all()
        for message in messages:
            await send(message.task, message.arguments)
        if messages:
            sent = [message.id for message in messages]
            await session.exec(delete(outbox).where(col(outbox.id).in_(sent)))
    return len(messages)


async def relay_forever(
    sessions: async_sessionmaker[AsyncSession],
    outbox: type[Message],
    send: Send,
    *,
    idle: float = 0.2,
    batch: int = 100,
) -> None:
    """``relay_outbox`` until cancelled, waiting ``idle`` seconds when the outbox is empty.

    A failed pass (the broker or the database unreachable) is logged, by its error's class
    only (no message, which could hold a job's arguments), and retried after ``idle``.
    """
    while True:
        try:
            sent = await relay_outbox(sessions, outbox, send, batch=batch)
        except Exception as error:  # retried: the messages are still in the outbox
            logger.warning("outbox relay: %s; retrying in %s s", type(error).__name__, idle)
            sent = 0
        if not sent:
            await asyncio.sleep(idle)
