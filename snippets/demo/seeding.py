"""Rows for the demo models: a league of teams, heroes and powers, and sensor readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.demo.models import Hero, Power, Team


async def seed_league(
    session: AsyncSession, *, teams: int, heroes_per_team: int, powers: int = 4
) -> None:
    """Add ``teams`` teams of ``heroes_per_team`` heroes; each hero has two of ``powers`` powers.

    Names are deterministic (``Team 007``, ``Hero 007-02``, ``Power 1``); flushes, never commits.
    """
    if powers < 2:
        raise ValueError("seed_league gives each hero two powers: powers must be >= 2")
    all_powers = [Power(name=f"Power {number}") for number in range(powers)]
    session.add_all(all_powers)
    for team_number in range(teams):
        team = Team(name=f"Team {team_number:03d}", headquarters=f"Tower {team_number}")
        session.add(team)
        for hero_number in range(heroes_per_team):
            first = (team_number + hero_number) % powers
            session.add(
                Hero(
                    name=f"Hero {team_number:03d}-{hero_number:02d}",
                    secret_name=f"Secret {team_number:03d}-{hero_number:02d}",
                    age=20 + (team_number + hero_number) % 50,
                    team=team,
                    powers=[all_powers[first], all_powers[(first + 1) % powers]],
                )
            )
    await session.flush()


def reading_rows(count: int, *, sensors: int = 50) -> list[dict[str, Any]]:
    """``count`` rows for the demo ``Reading``: one per second from 2026-01-01 UTC, a third of
    them with a note (the others ``None``, as real data has gaps)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "sensor": f"sensor-{i % sensors:03d}",
            "taken_at": start + timedelta(seconds=i),
            "value": round((i % 1000) * 0.37, 2),
            "note": None if i % 3 else f"check {i}",
        }
        for i in range(count)
    ]
