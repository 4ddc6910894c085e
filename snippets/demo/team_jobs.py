"""What the demo's jobs do to the database, whichever queue runs them (chapters 16 and 17).

Plain async functions of a session: a Celery task runs them on its worker process's loop, a
taskiq task with the session it was given. The session's transaction is theirs to commit.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from snippets.demo.models import Team


async def rename_team(session: AsyncSession, team_id: int, name: str) -> str:
    """Rename a team: ``"renamed"``, or ``"no such team"`` when this session cannot see it (not
    committed yet, rolled back, or never written)."""
    team = await session.get(Team, team_id)
    if team is None:
        return "no such team"
    team.name = name
    await session.commit()
    return "renamed"
