"""Transactions that hold under concurrency: a retry helper (notebook 06).

``run_in_transaction`` runs a unit of work in a fresh session and commits it, retrying with
exponential backoff and jitter when the database asks for a retry: a PostgreSQL serialization
failure or deadlock, a MySQL/MariaDB deadlock, SQLite's "database is locked", or an
optimistic-concurrency conflict; and, for work that says it may run twice, a lost connection.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.backends import is_connection_failure, is_retryable_error

T = TypeVar("T")

IsolationLevel = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]


def is_retryable(error: BaseException) -> bool:
    """Whether running the same transaction again may succeed: a version conflict, or what
    ``snippets.backends.is_retryable_error`` says (a PostgreSQL serialization failure or
    deadlock, a MySQL/MariaDB deadlock or lock wait timeout, SQLite's "database is locked")."""
    return isinstance(error, StaleDataError) or is_retryable_error(error)


async def run_in_transaction(
    session_factory: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    isolation_level: IsolationLevel | None = None,
    attempts: int = 5,
    base_delay: float = 0.01,
    max_delay: float = 0.5,
    idempotent: bool = False,
) -> tuple[T, int]:
    """Run ``work(session)`` in a new session and commit; retry when ``is_retryable``.

    Each attempt gets a fresh session (the failed one's state is discarded with it). Between
    attempts it sleeps ``base_delay * 2**n``, capped at ``max_delay``, times a random factor in
    [0.5, 1) so that colliding transactions do not collide again in lockstep.

    ``idempotent=True`` also retries a lost connection (``backends.is_connection_failure``: a
    server restarted, a connection ended, a network cut). Say so only of work that can safely
    run again: when the connection is lost during the ``COMMIT``, nobody knows whether it
    landed. ``snippets.demo.transfer`` is such work: its unique reference makes a second
    application fail with ``IntegrityError`` instead of moving the money twice.

    Returns:
        ``work``'s result and the number of attempts it took.

    Raises:
        The last error when it is not retryable or ``attempts`` are used up.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        async with session_factory() as session:
            try:
                if isolation_level is not None:
                    # Must be set before the transaction's first statement.
                    await session.connection(execution_options={"isolation_level": isolation_level})
                result = await work(session)
                await session.commit()
                return result, attempt
            except Exception as error:
                await _roll_back(session)
                retryable = is_retryable(error) or (idempotent and is_connection_failure(error))
                if attempt == attempts or not retryable:
                    raise
        delay = min(max_delay, base_delay * 2 ** (attempt - 1))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter, not cryptography
    raise AssertionError("unreachable: the loop returns or raises")


async def _roll_back(session: AsyncSession) -> None:
    """Roll back, unless the connection is gone: the server has dropped the transaction
    already, and the error that reached the caller is the lost connection, not this."""
    try:
        await session.rollback()
    except DBAPIError as error:
        if not is_connection_failure(error):
            raise
