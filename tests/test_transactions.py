"""Transfers, the retry helper, real retryable failures, and a concurrent stress test."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from snippets import database_url, make_sessionmaker, open_engine
from snippets.backends import (
    FACTS,
    backend_of,
    is_connection_failure,
    is_constraint_violation,
    is_retryable_error,
)
from snippets.demo.models import Account, Transfer
from snippets.demo.transfer import AccountNotFound, InsufficientFunds, TransferError, transfer
from snippets.lab.observe import recorded_statements
from snippets.lab.server import kill_connections
from snippets.transactions import IsolationLevel, is_retryable, run_in_transaction

# Collected after pytest_configure has validated DATABASE_URL, so this cannot fail here.
BACKEND = backend_of(database_url())
LOCKS_ROWS = FACTS[BACKEND].locks_rows
only_postgresql = pytest.mark.skipif(
    BACKEND != "postgresql",
    reason="PostgreSQL behaviour: a serialization failure (SQLite has no REPEATABLE READ;"
    " MySQL/MariaDB's applies the write to the latest row, notebook 06)",
)
only_row_locks = pytest.mark.skipif(
    not LOCKS_ROWS, reason="needs row locks (PostgreSQL, MySQL/MariaDB); SQLite locks the database"
)
only_sqlite = pytest.mark.skipif(
    BACKEND != "sqlite",
    reason="SQLite behaviour (PostgreSQL and MySQL/MariaDB lock rows, not the database)",
)

Sessions = async_sessionmaker[AsyncSession]


async def open_accounts(engine: AsyncEngine, *balances: int) -> Sessions:
    sessions = make_sessionmaker(engine)
    async with sessions() as session, session.begin():
        session.add_all(Account(owner=f"owner-{i}", balance=b) for i, b in enumerate(balances))
    return sessions


async def balances(sessions: Sessions) -> dict[int, int]:
    async with sessions() as session:
        accounts = (await session.exec(select(Account).order_by(Account.id))).all()
        return {account.id or 0: account.balance for account in accounts}


async def test_transfer_moves_money_and_records_it(engine: AsyncEngine) -> None:
    sessions = await open_accounts(engine, 1000, 500)
    async with sessions() as session, session.begin():
        record = await transfer(session, reference="t-1", from_id=1, to_id=2, amount=300)
    assert record.id is not None
    assert await balances(sessions) == {1: 700, 2: 800}
    async with sessions() as session:
        versions = (await session.exec(select(Account.version).order_by(Account.id))).all()
    assert versions == [2, 2]  # atomic updates bump the optimistic version too


@pytest.mark.parametrize(
    ("from_id", "to_id", "amount", "message"),
    [(1, 2, 0, "positive"), (1, 2, -5, "positive"), (1, 1, 10, "itself")],
)
async def test_invalid_transfer_sends_no_sql(
    engine: AsyncEngine, from_id: int, to_id: int, amount: int, message: str
) -> None:
    sessions = await open_accounts(engine, 100, 100)
    async with sessions() as session:
        with recorded_statements(engine) as statements, pytest.raises(TransferError, match=message):
            await transfer(session, reference="x", from_id=from_id, to_id=to_id, amount=amount)
    assert statements == []


@pytest.mark.parametrize(
    ("from_id", "to_id", "amount", "error"),
    [
        (1, 2, 101, InsufficientFunds),  # debit runs first
        (2, 1, 101, InsufficientFunds),  # credit of account 1 runs first, then is rolled back
        (1, 99, 10, AccountNotFound),
        (99, 1, 10, AccountNotFound),
    ],
)
async def test_failed_transfer_changes_nothing(
    engine: AsyncEngine, from_id: int, to_id: int, amount: int, error: type[Exception]
) -> None:
    sessions = await open_accounts(engine, 100, 100)
    with pytest.raises(error):
        async with sessions() as session, session.begin():
            await transfer(session, reference="x", from_id=from_id, to_id=to_id, amount=amount)
    assert await balances(sessions) == {1: 100, 2: 100}
    async with sessions() as session:
        assert (await session.exec(select(func.count()).select_from(Transfer))).one() == 0


async def test_same_reference_cannot_be_applied_twice(engine: AsyncEngine) -> None:
    sessions = await open_accounts(engine, 100, 100)
    async with sessions() as session, session.begin():
        await transfer(session, reference="once", from_id=1, to_id=2, amount=10)
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            await transfer(session, reference="once", from_id=1, to_id=2, amount=10)
    assert await balances(sessions) == {1: 90, 2: 110}


async def test_database_refuses_negative_balance(engine: AsyncEngine) -> None:
    sessions = await open_accounts(engine, 5)
    # IntegrityError, except on MySQL/MariaDB: an OperationalError there (is_constraint_violation)
    with pytest.raises(DBAPIError, match="balance_not_negative") as refused:
        async with sessions() as session, session.begin():
            await session.exec(text("UPDATE account SET balance = -1"))
    assert is_constraint_violation(refused.value)


class FakeDriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (StaleDataError("0 rows matched"), True),
        (DBAPIError("UPDATE", {}, FakeDriverError("40001")), True),
        (DBAPIError("UPDATE", {}, FakeDriverError("40P01")), True),
        (DBAPIError("UPDATE", {}, FakeDriverError("23505")), False),
        (OperationalError("UPDATE", {}, Exception("database is locked")), True),
        (OperationalError("UPDATE", {}, Exception("disk I/O error")), False),
        (InsufficientFunds("no"), False),
        (ValueError("no"), False),
    ],
)
def test_is_retryable(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


def failing(times: int, error: Exception) -> Callable[[AsyncSession], Awaitable[str]]:
    calls = {"count": 0}

    async def work(session: AsyncSession) -> str:
        calls["count"] += 1
        session.add(Account(owner=f"try-{calls['count']}", balance=1))
        await session.flush()
        if calls["count"] <= times:
            raise error
        return "done"

    return work


async def test_run_in_transaction_retries_then_commits_once(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    result, attempts = await run_in_transaction(
        sessions, failing(2, StaleDataError("conflict")), base_delay=0.001
    )
    assert (result, attempts) == ("done", 3)
    async with sessions() as session:  # only the successful attempt's row was committed
        assert (await session.exec(select(Account.owner))).all() == ["try-3"]


async def test_run_in_transaction_does_not_retry_other_errors(engine: AsyncEngine) -> None:
    work = failing(1, InsufficientFunds("no"))
    with pytest.raises(InsufficientFunds):
        await run_in_transaction(make_sessionmaker(engine), work, base_delay=0.001)
    with pytest.raises(StaleDataError):
        await run_in_transaction(
            make_sessionmaker(engine), failing(5, StaleDataError("x")), attempts=3, base_delay=0
        )
    with pytest.raises(ValueError, match="attempts"):
        await run_in_transaction(make_sessionmaker(engine), work, attempts=0)


async def test_optimistic_conflict_raises_stale_data_then_retry_applies_both(
    engine: AsyncEngine,
) -> None:
    sessions = await open_accounts(engine, 100)
    async with sessions() as first, sessions() as second:
        # Each reads in a transaction of its own that ends, as a web request would (on SQLite an
        # open transaction holds the write lock). With expire_on_commit=False the objects stay.
        mine = await first.get(Account, 1)
        await first.commit()
        theirs = await second.get(Account, 1)
        await second.commit()
        assert mine is not None
        assert theirs is not None
        mine.balance += 10
        await first.commit()
        theirs.balance += 20  # based on the stale balance of 100
        with pytest.raises(StaleDataError):
            await second.commit()

    async def add_twenty(session: AsyncSession) -> None:
        account = await session.get(Account, 1)
        assert account is not None
        account.balance += 20

    await run_in_transaction(sessions, add_twenty)
    assert await balances(sessions) == {1: 130}


@only_postgresql
async def test_serialization_failure_is_retried(engine: AsyncEngine, namespace: str) -> None:
    sessions = await open_accounts(engine, 100)
    interfering = await open_engine(namespace=namespace)
    seen: list[int] = []

    async def withdraw(session: AsyncSession) -> None:
        account = await session.get(Account, 1)  # the REPEATABLE READ snapshot starts here
        assert account is not None
        seen.append(account.balance)
        if len(seen) == 1:  # first attempt: another transaction changes the row meanwhile
            async with interfering.begin() as conn:
                await conn.execute(text("UPDATE account SET balance = balance + 1"))
        await session.exec(text("UPDATE account SET balance = balance - 10"))

    try:
        _, attempts = await run_in_transaction(
            sessions, withdraw, isolation_level="REPEATABLE READ", base_delay=0.001
        )
    finally:
        await interfering.dispose()
    assert attempts == 2
    assert seen == [100, 101]
    assert await balances(sessions) == {1: 91}


@only_sqlite
async def test_database_is_locked_is_retried(engine: AsyncEngine, namespace: str) -> None:
    await open_accounts(engine, 100)
    impatient = await open_engine(namespace=namespace, connect_args={"timeout": 0.05})
    sessions = make_sessionmaker(impatient)

    async def withdraw(session: AsyncSession) -> None:
        await session.exec(text("UPDATE account SET balance = balance - 10"))

    try:
        async with engine.connect() as holder:
            await holder.execute(text("UPDATE account SET balance = balance + 1"))  # write lock
            with pytest.raises(OperationalError, match="database is locked"):
                await run_in_transaction(sessions, withdraw, attempts=1)
            retrying = asyncio.create_task(
                run_in_transaction(sessions, withdraw, attempts=20, base_delay=0.02)
            )
            await asyncio.sleep(0.2)
            await holder.commit()
        _, attempts = await retrying
    finally:
        await impatient.dispose()
    assert attempts > 1
    assert await balances(make_sessionmaker(engine)) == {1: 91}


@only_row_locks
async def test_a_real_deadlock_is_detected_and_retried(engine: AsyncEngine) -> None:
    # Two transactions lock accounts 1 and 2 in opposite orders: the database detects the
    # deadlock (PostgreSQL 40P01, MySQL/MariaDB 1213), kills one, and the helper retries it.
    sessions = await open_accounts(engine, 100, 100)
    both_hold_their_first_row = asyncio.Barrier(2)
    failures: list[DBAPIError] = []

    def crossing(first: int, second: int) -> Callable[[AsyncSession], Awaitable[None]]:
        tries = 0

        async def work(session: AsyncSession) -> None:
            nonlocal tries
            tries += 1
            try:
                await session.exec(
                    text(f"UPDATE account SET balance = balance - 1 WHERE id = {first}")
                )
                if tries == 1:
                    await asyncio.wait_for(both_hold_their_first_row.wait(), timeout=5)
                await session.exec(
                    text(f"UPDATE account SET balance = balance + 1 WHERE id = {second}")
                )
            except DBAPIError as error:
                failures.append(error)
                raise

        return work

    outcomes = await asyncio.wait_for(
        asyncio.gather(
            run_in_transaction(sessions, crossing(1, 2)),
            run_in_transaction(sessions, crossing(2, 1)),
        ),
        timeout=30,
    )
    assert sorted(attempts for _, attempts in outcomes) == [1, 2]
    assert len(failures) == 1
    assert is_retryable_error(failures[0])
    assert "deadlock" in str(failures[0].orig).lower()
    assert await balances(sessions) == {1: 100, 2: 100}


STRESS_ISOLATION: list[IsolationLevel | None] = [None]
if LOCKS_ROWS:
    STRESS_ISOLATION += ["REPEATABLE READ", "SERIALIZABLE"]


@pytest.mark.parametrize("isolation_level", STRESS_ISOLATION)
async def test_concurrent_transfers_keep_the_books_balanced(
    engine: AsyncEngine, isolation_level: IsolationLevel | None
) -> None:
    accounts, start, count, concurrency = 8, 1_000, 240, 16
    sessions = await open_accounts(engine, *[start] * accounts)
    rng = random.Random(20261122)
    plan = [
        (f"t-{n}", *rng.sample(range(1, accounts + 1), 2), rng.randint(1, 400))
        for n in range(count)
    ]
    gate = asyncio.Semaphore(concurrency)
    applied: set[str] = set()
    refused: set[str] = set()
    attempts_used: list[int] = []

    async def one(reference: str, from_id: int, to_id: int, amount: int) -> None:
        async def work(session: AsyncSession) -> Transfer:
            return await transfer(
                session, reference=reference, from_id=from_id, to_id=to_id, amount=amount
            )

        async with gate:
            try:
                _, attempts = await run_in_transaction(
                    sessions, work, isolation_level=isolation_level, attempts=30
                )
            except InsufficientFunds:
                refused.add(reference)
            else:
                applied.add(reference)
                attempts_used.append(attempts)

    await asyncio.wait_for(asyncio.gather(*(one(*p) for p in plan)), timeout=120)

    assert applied | refused == {reference for reference, *_ in plan}
    assert not applied & refused
    final = await balances(sessions)
    assert sum(final.values()) == accounts * start  # no money created or destroyed
    assert all(balance >= 0 for balance in final.values())
    async with sessions() as session:
        ledger = (await session.exec(select(Transfer))).all()
    assert sorted(t.reference for t in ledger) == sorted(applied)  # each applied exactly once
    expected = dict.fromkeys(range(1, accounts + 1), start)
    for entry in ledger:
        expected[entry.from_account_id] -= entry.amount
        expected[entry.to_account_id] += entry.amount
    assert final == expected
    assert len(applied) > count // 2, "most transfers should have found the money"


@pytest.mark.skipif(
    not FACTS[backend_of(database_url())].has_server, reason="SQLite has no connection to lose"
)
@pytest.mark.parametrize("idempotent", [True, False])
async def test_a_lost_connection_is_retried_only_for_work_that_may_run_twice(
    engine: AsyncEngine, idempotent: bool
) -> None:
    sessions = await open_accounts(engine, 100, 0)
    ended: list[int] = []

    async def transfer_whose_first_connection_is_ended(session: AsyncSession) -> Transfer:
        if not ended:  # the first attempt: its connection ended from outside, as by a restart
            connection = await session.connection()
            query = FACTS[backend_of(engine)].connection_id_sql
            connection_id = (await connection.exec_driver_sql(str(query))).scalar_one()
            ended.append(await kill_connections(engine, [connection_id]))
        return await transfer(session, reference="lost-1", from_id=1, to_id=2, amount=30)

    work = transfer_whose_first_connection_is_ended
    if idempotent:  # transfer is: its unique reference refuses a second application
        _, attempts = await run_in_transaction(sessions, work, idempotent=True, base_delay=0.001)
        assert attempts == 2
        assert await balances(sessions) == {1: 70, 2: 30}
    else:
        with pytest.raises(DBAPIError) as raised:
            await run_in_transaction(sessions, work, base_delay=0.001)
        assert is_connection_failure(raised.value), repr(raised.value)
        assert await balances(sessions) == {1: 100, 2: 0}
    assert ended == [1]
