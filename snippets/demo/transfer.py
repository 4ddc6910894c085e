"""A money transfer between the demo accounts that holds under concurrency (notebook 06).

``transfer`` moves money with two *conditional, atomic* ``UPDATE`` statements instead of
reading balances into Python and writing them back, so concurrent transfers cannot lose an
update; it touches the two rows in id order, so two opposite transfers cannot deadlock. It
runs inside the caller's transaction: both rows change, and the ledger row is written, or the
caller's rollback undoes all of it. Amounts are integer cents: a float cannot hold 0.10 exactly.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.demo.models import Account, Transfer


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
