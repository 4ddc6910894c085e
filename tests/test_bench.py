"""The bulk-loading ladder (``snippets.lab.bench``), ``make bench`` (``tools/bench.py``) and
SQLite's load PRAGMAs, on the configured backend. Timings are recorded, never asserted: the
targets are checked by the benchmark itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from snippets.backends import backend_of
from snippets.bulk import bulk_insert, set_sqlite_pragmas
from snippets.demo.models import Reading
from snippets.demo.seeding import reading_rows
from snippets.lab.bench import (
    INSERT_METHODS,
    ORM_BULK,
    RAW,
    RECOMMENDED,
    InsertMethod,
    Measurement,
    Rows,
    check_targets,
    count_rows,
    measure_inserts,
)

PROJECT = Path(__file__).resolve().parent.parent


# `engine`: conftest.py's, an empty namespace with the demo tables (Reading among them).


async def test_every_method_of_this_backend_stores_its_rows(engine: AsyncEngine) -> None:
    rows = reading_rows(300)
    lines: list[str] = []
    results = await measure_inserts(engine, Reading, rows, repeats=1, progress=lines.append)
    backend = backend_of(engine)
    expected = [m.label for m in INSERT_METHODS if m.only in (None, backend)]
    assert [r.method for r in results] == expected
    assert len(lines) == len(expected)
    by_method = {r.method: r for r in results}
    assert by_method[RAW].ratio_to_raw == pytest.approx(1.0)
    assert by_method[RAW].statements == 0  # the driver directly: no SQLAlchemy statement
    assert by_method[ORM_BULK].statements == 1
    assert by_method["ORM bulk: exec(insert(Model), params=rows)"].statements > 1
    for method in INSERT_METHODS:
        if method.label in by_method:
            assert by_method[method.label].rows == (30 if method.slow else 300)
    # measure_inserts checked the count after each run; the last one's rows are still there
    assert await count_rows(engine, Reading) == (30 if INSERT_METHODS[-1].slow else 300)


async def test_a_method_that_loses_rows_is_reported(engine: AsyncEngine) -> None:
    async def loses_one(engine: AsyncEngine, model: type[SQLModel], rows: Rows) -> None:
        await bulk_insert(engine, model, rows[:-1])

    broken = [InsertMethod(RAW, loses_one)]  # named as the baseline, so ratios can be taken
    with pytest.raises(AssertionError, match="9 rows stored, not 10"):
        await measure_inserts(engine, Reading, reading_rows(10), methods=broken, progress=None)


def measurement(method: str, rows_per_s: float) -> Measurement:
    return Measurement(method, 100, 100 / rows_per_s, rows_per_s, 0.0, 1)


def test_targets_are_set_for_postgresql_only() -> None:
    results = [measurement(RAW, 100), measurement(RECOMMENDED, 250), measurement(ORM_BULK, 90)]
    assert check_targets(results, "sqlite") == []
    assert check_targets(results, "mysql") == []
    recommended_vs_raw, recommended_vs_orm = check_targets(results, "postgresql")
    assert recommended_vs_raw.measured == pytest.approx(2.5)
    assert recommended_vs_raw.met
    assert recommended_vs_orm.measured == pytest.approx(250 / 90)
    assert not recommended_vs_orm.met  # 2.8 < 3


def test_make_bench_writes_json_and_plot(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "tools/bench.py", "--rows", "400", "--repeats", "1", "--out", tmp_path],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    report = json.loads((tmp_path / "bulk.json").read_text())
    assert report["rows"] == 400
    assert {r["method"] for r in report["results"]} >= {RAW, RECOMMENDED, ORM_BULK}
    assert all(r["rows_per_s"] > 0 and r["seconds"] > 0 for r in report["results"])
    assert (tmp_path / "bulk.png").read_bytes().startswith(b"\x89PNG")
    assert "wrote" in finished.stdout
    if report["backend"] == "postgresql":
        assert len(report["targets"]) == 2
        # the exit status follows the targets (400 rows are too few to hold them to it)
        assert finished.returncode == (0 if all(t["met"] for t in report["targets"]) else 1)
    else:
        assert report["targets"] == []
        assert finished.returncode == 0, finished.stderr


def test_make_bench_reports_a_bad_url_in_one_line(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "tools/bench.py", "--out", tmp_path],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": "postgresql://user:secret@localhost/db"},
    )
    assert finished.returncode == 2
    assert "Traceback" not in finished.stderr
    assert "secret" not in finished.stderr
    assert "postgresql+asyncpg://" in finished.stderr


async def test_sqlite_pragmas_apply_to_new_connections(engine: AsyncEngine) -> None:
    if backend_of(engine) != "sqlite":
        with pytest.raises(ValueError, match="SQLite's"):
            set_sqlite_pragmas(engine, synchronous="OFF")
        return
    set_sqlite_pragmas(engine, journal_mode="WAL", synchronous="OFF")
    await engine.dispose()  # connections opened from now on get the PRAGMAs
    async with engine.connect() as conn:
        journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
        synchronous = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
    assert (journal, synchronous) == ("wal", 0)
    with pytest.raises(ValueError, match="not a PRAGMA setting"):
        set_sqlite_pragmas(engine, synchronous="OFF; DROP TABLE reading")
