"""What each way of loading relationships costs: statements and seconds (notebook 05)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from snippets.demo.loading import Strategy, teams_with_heroes
from snippets.lab.observe import recorded_statements
from snippets.session import make_sessionmaker


@dataclass(frozen=True)
class LoadMeasurement:
    """What loading every team with its heroes cost with one strategy."""

    strategy: Strategy
    statements: int
    seconds: float
    teams: int
    heroes: int


async def measure_loading(
    engine: AsyncEngine, strategy: Strategy, *, repeat: int = 3
) -> LoadMeasurement:
    """Load all teams with their heroes ``repeat`` times, each in a new session.

    Returns the statements sent by one load (they are the same every time) and the fastest
    run's wall-clock seconds.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    session_factory = make_sessionmaker(engine)
    best = float("inf")
    for _ in range(repeat):
        async with session_factory() as session:
            with recorded_statements(engine) as statements:
                started = time.perf_counter()
                teams = await teams_with_heroes(session, strategy)
                best = min(best, time.perf_counter() - started)
            heroes = sum(len(team.heroes) for team in teams)
    return LoadMeasurement(strategy, len(statements), best, len(teams), heroes)
