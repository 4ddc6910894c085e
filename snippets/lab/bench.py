"""The bulk-loading ladder: every way to insert many rows, measured side by side (notebook 10,
``make bench``).

``INSERT_METHODS`` lists the ways, from the ORM's unit of work down to the driver's own
``executemany`` (the baseline every ratio is taken against) and the backends' bulk-load
commands (PostgreSQL's ``COPY``, MySQL/MariaDB's ``LOAD DATA LOCAL INFILE``).
``measure_inserts`` runs each on an emptied table, best of ``repeats``, and counts the
statements each sends. Each method takes ``(engine, model, rows)`` and works for any table
model whose rows are plain column values, not only the demo ``Reading``.

The slow rungs (one ``INSERT`` per row, or one statement compiled per chunk) run once, on a
sample of the rows, so that the ladder stays quick; their rows per second are comparable.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from snippets.backends import Backend, backend_of, raw_insert_many
from snippets.bulk import bulk_insert
from snippets.engine import make_engine
from snippets.lab.observe import recorded_statements
from snippets.session import make_sessionmaker

Rows = Sequence[dict[str, Any]]
Load = Callable[[AsyncEngine, type[SQLModel], Rows], Awaitable[None]]

RAW = "raw driver executemany"
"""The label of the baseline."""
RECOMMENDED = "snippets.bulk.bulk_insert"
ORM_BULK = "ORM bulk, render_nulls=True"


@dataclass(frozen=True)
class InsertMethod:
    label: str
    load: Load
    slow: bool = False
    """Measured once, on a sample: it costs a round trip or a compilation per row or chunk."""
    only: Backend | None = None
    """The backend this method exists on; ``None``: all."""


@dataclass(frozen=True)
class Measurement:
    method: str
    rows: int
    seconds: float
    """Best of the repeats."""
    rows_per_s: float
    ratio_to_raw: float
    """Throughput relative to the raw driver's ``executemany``: 2.0 is twice as fast."""
    statements: int
    """Statements SQLAlchemy's cursor events saw in one run (``COPY`` and raw calls: 0)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def table_of(model: type[SQLModel]) -> Any:
    return model.__table__  # type: ignore[attr-defined]


async def add_all(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """The unit of work: an object per row, flushed with its generated id fetched back."""
    async with make_sessionmaker(engine)() as session:
        session.add_all([model(**row) for row in rows])
        await session.commit()


async def orm_bulk(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """ORM bulk INSERT: no objects. Consecutive rows are batched only while the same columns
    are ``None``: every change of that pattern starts another statement."""
    async with make_sessionmaker(engine)() as session:
        await session.exec(insert(model), params=rows)
        await session.commit()


async def orm_bulk_render_nulls(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """ORM bulk INSERT sending ``None`` as NULL: one batch for all rows (but a column's
    server default no longer applies where a row says ``None``)."""
    async with make_sessionmaker(engine)() as session:
        statement = insert(model).execution_options(render_nulls=True)
        await session.exec(statement, params=rows)
        await session.commit()


async def core_executemany(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """Core: one ``INSERT`` with a list of parameter sets, run as the driver's executemany."""
    async with engine.begin() as conn:
        await conn.execute(insert(table_of(model)), list(rows))


async def core_returning(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """Core with the generated ids back: ``insertmanyvalues`` batches of 1,000 rows."""
    table = table_of(model)
    async with engine.begin() as conn:
        result = await conn.execute(insert(table).returning(table.c.id), list(rows))
        ids = result.scalars().all()
    assert len(ids) == len(rows)


async def core_values_chunks(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """``insert().values([...])``: one multi-row statement per 1,000 rows, each compiled anew."""
    table = table_of(model)
    async with engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            await conn.execute(insert(table).values(list(rows[start : start + 1000])))


async def recommended_bulk_insert(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """The rung this guide recommends, ``snippets.bulk.bulk_insert``: COPY on PostgreSQL, Core's
    executemany elsewhere."""
    await bulk_insert(engine, model, rows)


def _as_tuples(rows: Rows) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The first row's keys, and each row's values in that order: what a driver takes."""
    columns = list(rows[0])
    return columns, [tuple(row[column] for column in columns) for row in rows]


async def raw_executemany(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """The driver's own ``executemany``, values as they are: the baseline."""
    columns, values = _as_tuples(rows)
    async with engine.connect() as conn:
        await raw_insert_many(conn, table_of(model).name, columns, values)


async def raw_copy(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """asyncpg's binary ``COPY``, values as they are (PostgreSQL)."""
    columns, values = _as_tuples(rows)
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        await driver.copy_records_to_table(table_of(model).name, records=values, columns=columns)


async def raw_load_data(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
    """``LOAD DATA LOCAL INFILE`` from a tab-separated file (MySQL/MariaDB). The client must
    allow it (``local_infile=True``: a server could then ask for any file the client can read)
    and the server too (``local_infile=ON``)."""
    columns = list(rows[0])
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as file:
        for row in rows:
            file.write("\t".join(_tsv_field(row[column]) for column in columns) + "\n")
    loader = make_engine(engine.url, connect_args={"local_infile": True}, pool_size=1)
    try:
        async with loader.begin() as conn:
            await conn.exec_driver_sql(
                f"LOAD DATA LOCAL INFILE '{file.name}' INTO TABLE {table_of(model).name} "
                f"({', '.join(columns)})"
            )
    finally:
        await loader.dispose()
        os.unlink(file.name)


def _tsv_field(value: Any) -> str:
    """A value as ``LOAD DATA`` reads it: NULL is ``\\N``; backslash, tab and newline escaped;
    an aware datetime in UTC without its offset (``DATETIME`` has none)."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime) and value.utcoffset() is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    text = value.isoformat(" ") if isinstance(value, datetime) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


INSERT_METHODS: list[InsertMethod] = [
    InsertMethod("session.add_all + commit", add_all, slow=True),
    InsertMethod("ORM bulk: exec(insert(Model), params=rows)", orm_bulk, slow=True),
    InsertMethod(ORM_BULK, orm_bulk_render_nulls),
    InsertMethod("Core: execute(insert(table), rows)", core_executemany),
    InsertMethod("Core + RETURNING id", core_returning),
    InsertMethod("Core: insert().values(chunk of 1000)", core_values_chunks, slow=True),
    InsertMethod(RECOMMENDED, recommended_bulk_insert),
    InsertMethod(RAW, raw_executemany),
    InsertMethod("raw COPY (asyncpg)", raw_copy, only="postgresql"),
    InsertMethod("raw LOAD DATA LOCAL INFILE", raw_load_data, only="mysql"),
]


async def empty(engine: AsyncEngine, model: type[SQLModel]) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(table_of(model)))


async def count_rows(engine: AsyncEngine, model: type[SQLModel]) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(table_of(model))
        return int((await conn.execute(query)).scalar_one())


async def measure_inserts(
    engine: AsyncEngine,
    model: type[SQLModel],
    rows: Rows,
    *,
    repeats: int = 3,
    sample: int | None = None,
    methods: Sequence[InsertMethod] = INSERT_METHODS,
    progress: Callable[[str], None] | None = print,
) -> list[Measurement]:
    """Run each method that exists on ``engine``'s backend; best of ``repeats`` (slow methods:
    once, on the first ``sample`` rows, default a tenth). Each run starts from an empty table
    and must leave exactly its rows in it."""
    backend = backend_of(engine)
    sample = sample or max(1, len(rows) // 10)
    timings: dict[str, tuple[int, float, int]] = {}
    for method in methods:
        if method.only not in (None, backend):
            continue
        batch = rows[:sample] if method.slow else rows
        best = float("inf")
        statements = 0
        for _ in range(1 if method.slow else repeats):
            await empty(engine, model)
            with recorded_statements(engine) as sent:
                started = time.perf_counter()
                await method.load(engine, model, batch)
                best = min(best, time.perf_counter() - started)
            statements = len(sent)
            stored = await count_rows(engine, model)
            if stored != len(batch):
                raise AssertionError(f"{method.label}: {stored} rows stored, not {len(batch)}")
        timings[method.label] = (len(batch), best, statements)
        if progress:
            progress(f"{method.label:<44} {len(batch):>7} rows {len(batch) / best:>11,.0f} rows/s")
    raw_rate = timings[RAW][0] / timings[RAW][1]
    return [
        Measurement(label, count, seconds, count / seconds, count / seconds / raw_rate, sent)
        for label, (count, seconds, sent) in timings.items()
    ]


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    at_least: float

    @property
    def met(self) -> bool:
        return self.measured >= self.at_least


TARGETS: dict[Backend, tuple[tuple[str, str, float], ...]] = {
    "postgresql": ((RECOMMENDED, RAW, 0.8), (RECOMMENDED, ORM_BULK, 3.0)),
}
"""Throughput floors, ``(method, baseline, at least this ratio)``, set for PostgreSQL only: the
recommended path (``bulk_insert``, COPY there) at least 0.8x the raw driver's ``executemany`` and
at least 3x the ORM bulk insert in its fast form (``render_nulls=True``)."""


def check_targets(results: Sequence[Measurement], backend: Backend) -> list[Target]:
    """``TARGETS`` of ``backend``, each with the ratio measured in ``results``."""
    rate = {result.method: result.rows_per_s for result in results}
    return [
        Target(f"{method} / {baseline}", rate[method] / rate[baseline], floor)
        for method, baseline, floor in TARGETS.get(backend, ())
    ]


def plot_throughput(results: Sequence[Measurement], title: str) -> Any:
    """A horizontal bar chart of rows/s with each method's ratio to the raw driver."""
    import matplotlib.pyplot as plt  # the notebooks' extra, not the package's dependencies

    fig, ax = plt.subplots(figsize=(8, 0.4 * len(results) + 1.2))
    labels = [result.method for result in results]
    rates = [result.rows_per_s for result in results]
    colours = ["#dd8452" if result.method == RAW else "#4c72b0" for result in results]
    ax.barh(labels, rates, color=colours)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("rows per second (log scale, higher is better)")
    ax.set_title(title, fontsize=10)
    for index, result in enumerate(results):
        ax.text(result.rows_per_s, index, f" x{result.ratio_to_raw:.2f}", va="center")
    ax.set_xlim(min(rates) / 2, max(rates) * 4)
    fig.tight_layout()
    return fig
