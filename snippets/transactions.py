"""Transactions that hold under concurrency: a money transfer and a retry helper (notebook 06).

``transfer`` moves money with two *conditional, atomic* ``UPDATE`` statements instead of
reading balances into Python and writing them back, so concurrent transfers cannot lose an
update; it touches the two rows in id order, so two opposite transfers cannot deadlock. It
runs inside the caller's transaction: both rows change, and the ledger row is written, or the
caller's rollback undoes all of it.

``run_in_transaction`` runs a unit of work in a fresh session and commits it, retrying with
exponential backoff and jitter when the database asks for a retry: a PostgreSQL serialization
failure or deadlock, a MySQL/MariaDB deadlock, SQLite's "database is locked", or an
optimistic-concurrency conflict.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from sqlalchemy import update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.backends import is_retryable_error
from snippets.models import Account, Transfer

T = TypeVar("T")

IsolationLevel = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]


class TransferError(ValueError):
    """A transfer that must not happen; nothing was changed."""


class InsufficientFunds(TransferError):
    pass


class AccountNotFound(TransferError):
    pass


async def transfer(
    session: AsyncSession, *, reference: str, from_id: int, to_id: int, amount: int
) -> Transfer:
    """Move ``amount`` cents from one account to another, inside the caller's transaction.

    Raises:
        TransferError: a non-positive amount or the same account twice (before any SQL);
            ``AccountNotFound`` or ``InsufficientFunds`` (after which the caller must roll
            back: the other row may already be changed in this transaction).
        IntegrityError: ``reference`` was already used: the transfer was applied before.
    """
    if amount <= 0:
        raise TransferError(f"amount must be positive, got {amount}")
    if from_id == to_id:
        raise TransferError("cannot transfer from an account to itself")

    async def debit() -> None:
        result = await session.exec(
            update(Account)
            .where(col(Account.id) == from_id, col(Account.balance) >= amount)
            .values(balance=col(Account.balance) - amount, version=col(Account.version) + 1)
        )
        if result.rowcount != 1:
            if await session.get(Account, from_id) is None:
                raise AccountNotFound(f"no account {from_id}")
            raise InsufficientFunds(f"account {from_id} has less than {amount}")

    async def credit() -> None:
        result = await session.exec(
            update(Account)
            .where(col(Account.id) == to_id)
            .values(balance=col(Account.balance) + amount, version=col(Account.version) + 1)
        )
        if result.rowcount != 1:
            raise AccountNotFound(f"no account {to_id}")

    # Lock the two rows in a fixed order: opposite transfers then wait instead of deadlocking.
    for step in (debit, credit) if from_id < to_id else (credit, debit):
        await step()
    record = Transfer(
        reference=reference, from_account_id=from_id, to_account_id=to_id, amount=amount
    )
    session.add(record)
    await session.flush()
    return record


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
) -> tuple[T, int]:
    """Run ``work(session)`` in a new session and commit; retry when ``is_retryable``.

    Each attempt gets a fresh session (the failed one's state is discarded with it). Between
    attempts it sleeps ``base_delay * 2**n``, capped at ``max_delay``, times a random factor in
    [0.5, 1) so that colliding transactions do not collide again in lockstep.

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
                await session.rollback()
                if attempt == attempts or not is_retryable(error):
                    raise
        delay = min(max_delay, base_delay * 2 ** (attempt - 1))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # jitter, not cryptography
    raise AssertionError("unreachable: the loop returns or raises")
