"""``make bench``: the bulk-loading ladder of notebook 10 at full size, on the current backend.

Runs every insert method of ``snippets.lab.bench`` on ``--rows`` rows (default 100,000; best of
``--repeats``) against ``DATABASE_URL`` (the SQLite default if unset), in a namespace of its
own, and writes ``build/bench/bulk.json`` (backend, versions, and per method: rows, seconds,
rows/s, ratio to the raw driver's ``executemany``, statements) and ``build/bench/bulk.png``.

The targets are checked here, not in a timed test: on PostgreSQL the recommended path
(``snippets.bulk.bulk_insert``) must reach at least 0.8x the raw driver's ``executemany``
throughput and at least 3x the ORM bulk insert's (with ``render_nulls=True``, its fast form).
A missed target makes the exit status 1. Other backends have no target; their figures are
written all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
from importlib.metadata import version
from pathlib import Path

from snippets import DatabaseConfigError, DatabaseUnreachableError, create_tables, open_engine
from snippets.backends import FACTS, backend_of, facts
from snippets.config import PROJECT_ROOT
from snippets.demo.models import Reading, metadata
from snippets.demo.seeding import reading_rows
from snippets.lab.bench import check_targets, measure_inserts, plot_throughput


async def run(rows: int, repeats: int, out: Path) -> int:
    engine = await open_engine(namespace="bench", fresh=True)
    try:
        await create_tables(engine, metadata)
        async with engine.connect() as conn:
            server = (await conn.exec_driver_sql(facts(engine).version_sql)).scalar_one()
        backend = backend_of(engine)
        print(f"Bulk-loading ladder: {rows:,} rows on {facts(engine).label}, best of {repeats}")
        results = await measure_inserts(engine, Reading, reading_rows(rows), repeats=repeats)
    finally:
        await engine.dispose()
    checked = check_targets(results, backend)
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, after the measurements)
    report = {
        "backend": backend,
        "server": str(server).split("\n")[0],
        "rows": rows,
        "repeats": repeats,
        "python": platform.python_version(),
        "versions": {
            name: version(name) for name in ("sqlalchemy", "sqlmodel", FACTS[backend].async_driver)
        },
        "results": [result.as_dict() for result in results],
        "targets": [
            {"name": t.name, "measured": round(t.measured, 3), "at_least": t.at_least, "met": t.met}
            for t in checked
        ],
    }
    (out / "bulk.json").write_text(json.dumps(report, indent=2) + "\n")
    figure = plot_throughput(results, f"{rows:,} rows into Reading, {facts(engine).label}")
    figure.savefig(out / "bulk.png", dpi=110)
    print(f"\n{'method':<44} {'rows':>8} {'seconds':>8} {'rows/s':>11} {'x raw':>6}")
    for r in results:
        print(
            f"{r.method:<44} {r.rows:>8} {r.seconds:>8.3f} {r.rows_per_s:>11,.0f} "
            f"{r.ratio_to_raw:>6.2f}"
        )
    for target in checked:
        verdict = "met" if target.met else "MISSED"
        print(
            f"target {target.name}: x{target.measured:.2f} (at least x{target.at_least}) {verdict}"
        )
    if not checked:
        print(f"(no targets on {facts(engine).label}: they are set for PostgreSQL)")
    print(f"wrote {out / 'bulk.json'} and {out / 'bulk.png'}")
    return 0 if all(target.met for target in checked) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "build" / "bench")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args.rows, args.repeats, args.out))
    except (DatabaseConfigError, DatabaseUnreachableError) as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
