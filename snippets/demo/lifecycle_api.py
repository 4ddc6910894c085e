"""A request followed through FastAPI: when its session commits and closes, and what happens to
the objects it returns (notebook 15).

Three ways to create a team, the same but for *where* the commit is:

* ``POST /teams/commit-after-response``: a ``yield`` dependency that commits after the
  endpoint, in FastAPI's default *request* scope: since FastAPI 0.118 that exit code runs
  after the response has been sent, so a client can read its write back before it is there;
* ``POST /teams/commit-before-response``: the same dependency with ``scope="function"``
  (FastAPI 0.121): its exit runs when the endpoint returns, before the response is sent;
* ``POST /teams``: the guide's way (``snippets.api.SessionDep``): the endpoint commits, the
  dependency only closes the session.

The dependency's exit does ``WORK_AFTER_YIELD`` seconds of other work before its commit (what
an audit record or a cache update would take), so that a client reading its write back at once
finds it missing. ``GET /teams/{id}`` reads a team back. The app also records the order of
events, whatever the timing: ``GET /events`` lists ``"response sent <path>"`` (recorded by the
``RecordResponses`` middleware once a response's last byte is handed to the server) and
``"committed <path>"`` (recorded by the dependency), in the order they happened.

And two ways to get a response wrong after a commit, with their fixes:

* ``POST /teams/expired``: a session with SQLAlchemy's default ``expire_on_commit=True``
  returns the committed table object: FastAPI reads an expired object, whose attributes are
  gone, and answers ``201 {}``. ``POST /teams/refreshed`` refreshes it first;
  ``snippets.session.make_sessionmaker`` does not expire at all.
* ``GET /teams/{id}/lazy``: a response model with the team's heroes, from a team loaded
  without them: the relationship is loaded lazily *while FastAPI serialises*, outside any
  ``await``, and the request fails with ``MissingGreenlet`` (a 500). ``GET /teams/{id}/heroes``
  loads them up front with ``selectinload``; ``/heroes/refreshed`` with ``session.refresh(team,
  ["heroes"])``, ``/heroes/awaited`` with ``await team.awaitable_attrs.heroes`` (``AsyncAttrs``),
  and ``/heroes/columns`` selects the columns the response needs, with no ORM object at all.

And work after the response, with ``BackgroundTasks`` (a rename of the team, sent as a job):

* ``POST /teams/{id}/rename-later/function-scope``: the job gets the request's session and
  team; with ``scope="function"`` that session is closed before the job runs, the team is
  detached, and the rename is silently not written;
* ``POST /teams/{id}/rename-later/request-scope``: the same in the default scope: it works,
  the job holding the request's session (and its place at the gate) until it ends;
* ``POST /teams/{id}/rename-later``: the guide's way, ``snippets.api.run_in_own_session``: the
  job gets the team's id and a session of its own; a failure is logged in one line.

The naive jobs print ``rename of team <id> done`` when they end.

And rows streamed as JSON Lines, ``pace`` seconds apart (the time a slow client takes to read
each, or work done per row):

* ``GET /teams.jsonl``: ``stream_scalars`` in the request's session: a pooled connection is
  held for as long as the stream lasts, and given back when the client hangs up (the stream
  is cancelled, the result closed, then the session);
* ``GET /teams.events``: the same as Server-Sent Events, from an async generator endpoint with
  FastAPI's ``EventSourceResponse``: the same connection held;
* ``GET /teams-page.jsonl?limit=N``: a bounded page read before the response, in a
  ``scope="function"`` session, then streamed from memory: the connection is back in the pool
  before the first line is sent;
* ``GET /pool``: how many of the pool's connections are checked out right now.

And errors at the boundary, answered by ``snippets.api.add_database_error_handlers``:

* ``POST /teams`` with a name taken, ``POST /heroes`` with a team that does not exist: 409;
* ``GET /slow?seconds=S``: a statement of ``S`` seconds, stopped by the engine's statement
  time limit (``LIFECYCLE_STATEMENT_TIMEOUT`` seconds, if set): 503 with ``Retry-After``;
* any request while the database cannot be reached: 503 with ``Retry-After``; one whose
  server has stopped answering, at the request deadline (``LIFECYCLE_REQUEST_DEADLINE``
  seconds, if set: ``snippets.api.RequestDeadline``);
* ``GET /ready``: ``snippets.api.readiness``, 200 or 503 within its timeout;
* ``GET /process``: the id of the worker process that answered (``uvicorn --workers N``).

``create_app()`` takes ``DATABASE_URL`` and the namespace of ``LIFECYCLE_NAMESPACE`` (default
``lifecycle``) at start-up, so that ``uvicorn --factory`` can serve it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.sse import EventSourceResponse
from sqlalchemy import select as select_columns
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from snippets.api import (
    ReadSessionDep,
    RequestDeadline,
    SessionDep,
    add_database_error_handlers,
    database_lifespan,
    get_session,
    readiness,
    run_in_own_session,
)
from snippets.demo.models import (
    Hero,
    HeroCreate,
    HeroPublic,
    Team,
    TeamCreate,
    TeamPublic,
    TeamPublicWithHeroes,
    metadata,
)
from snippets.engine import open_engine
from snippets.lab.server import slow_statement

NAMESPACE_VARIABLE = "LIFECYCLE_NAMESPACE"
STATEMENT_TIMEOUT_VARIABLE = "LIFECYCLE_STATEMENT_TIMEOUT"
REQUEST_DEADLINE_VARIABLE = "LIFECYCLE_REQUEST_DEADLINE"
EVENTS_KEPT = 1000
"""How many of the latest events ``GET /events`` can list."""
WORK_AFTER_YIELD = 0.5
"""Seconds of other work the committing dependency does after the endpoint, before committing."""


async def session_committed_on_exit(request: Request) -> AsyncIterator[AsyncSession]:
    """A pattern many applications use (not the guide's): commit after the endpoint."""
    async with request.app.state.sessionmaker() as session:
        yield session
        await asyncio.sleep(WORK_AFTER_YIELD)  # an audit record, a cache update...
        await session.commit()
        request.app.state.events.append(f"committed {request.url.path}")


class RecordResponses:
    """ASGI middleware: appends ``"response sent <path>"`` to ``events`` once the last chunk of a
    response's body has been handed to the server."""

    def __init__(self, app: ASGIApp, events: deque[str]) -> None:
        self.app = app
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.events.append(f"response sent {scope['path']}")

        await self.app(scope, receive, sending)


CommitsAfterResponse = Annotated[AsyncSession, Depends(session_committed_on_exit)]
CommitsBeforeResponse = Annotated[
    AsyncSession, Depends(session_committed_on_exit, scope="function")
]


ClosedBeforeTasks = Annotated[AsyncSession, Depends(get_session, scope="function")]


class Rename(SQLModel):
    name: str = Field(max_length=100)


async def rename_with_request_objects(session: AsyncSession, team: Team, name: str) -> None:
    """A background job written the naive way: the request's session and ORM object."""
    team.name = name
    await session.commit()
    print(f"rename of team {team.id} done", flush=True)


async def rename_team(session: AsyncSession, team_id: int, name: str) -> None:
    """A background job written the guide's way: an id, and the job's own session."""
    team = await session.get(Team, team_id)
    if team is not None:
        team.name = name


JSON_LINES = "application/jsonl"
Pace = Annotated[float, Query(ge=0, le=1)]


def _line(team: Team) -> str:
    return json.dumps(TeamPublic.model_validate(team).model_dump()) + "\n"


async def _paced(lines: Iterable[str], pace: float) -> AsyncIterator[str]:
    for line in lines:
        yield line
        await asyncio.sleep(pace)


async def streamed_teams(session: AsyncSession, pace: float) -> AsyncIterator[Team]:
    """Every team, read through ``stream_scalars``, ``pace`` seconds apart: the session's
    connection is held until the last one."""
    result = await session.stream_scalars(select(Team).order_by(Team.id))  # type: ignore[arg-type]
    try:
        async for team in result:
            yield team
            await asyncio.sleep(pace)
    finally:
        await result.close()  # also when the client hangs up: the stream is cancelled


async def rename_later_the_naive_way(
    session: AsyncSession, team_id: int, name: str, tasks: BackgroundTasks
) -> dict[str, str]:
    team = await _team_or_404(session, team_id)
    tasks.add_task(rename_with_request_objects, session, team, name)
    return {"status": "accepted"}


async def _team_or_404(session: AsyncSession, team_id: int) -> Team:
    team = await session.get(Team, team_id)
    if team is None:
        raise HTTPException(status_code=404, detail="Team not found")
    return team


def create_app(engine: AsyncEngine | None = None, *, namespace: str | None = None) -> FastAPI:
    """The app; ``engine`` (the caller's) or one opened at start-up in ``namespace``."""

    async def open_namespace() -> AsyncEngine:
        chosen = namespace or os.environ.get(NAMESPACE_VARIABLE, "lifecycle")
        limit = os.environ.get(STATEMENT_TIMEOUT_VARIABLE)
        return await open_engine(
            namespace=chosen, statement_timeout=float(limit) if limit else None
        )

    app = FastAPI(lifespan=database_lifespan(engine or open_namespace, metadata=metadata))
    add_database_error_handlers(app)
    if deadline := os.environ.get(REQUEST_DEADLINE_VARIABLE):
        app.add_middleware(RequestDeadline, seconds=float(deadline))
    app.get("/ready")(readiness)
    app.state.events = deque(maxlen=EVENTS_KEPT)  # a long-running server keeps the latest
    app.add_middleware(RecordResponses, events=app.state.events)

    @app.get("/events")
    async def events(path: str) -> list[str]:
        """What happened for ``path``, in order: responses sent and commits."""
        return [event for event in app.state.events if event.endswith(f" {path}")]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/process")
    async def process() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.get("/slow")
    async def slow(
        request: Request, session: ReadSessionDep, seconds: float = Query(ge=0, le=30)
    ) -> dict[str, int]:
        # The backend's slow statement (pg_sleep, SLEEP, a long count on SQLite).
        await session.execute(slow_statement(request.app.state.engine, seconds))
        return {"slept": 1}

    @app.post("/heroes", status_code=201)
    async def create_hero(data: HeroCreate, session: SessionDep) -> HeroPublic:
        hero = Hero.model_validate(data)
        session.add(hero)
        await session.commit()  # a team that does not exist: IntegrityError, answered 409
        return HeroPublic.model_validate(hero)

    @app.post("/teams/commit-after-response", status_code=201)
    async def create_committed_after(data: TeamCreate, session: CommitsAfterResponse) -> TeamPublic:
        team = Team.model_validate(data)
        session.add(team)
        await session.flush()  # the id, before the dependency commits
        return TeamPublic.model_validate(team)

    @app.post("/teams/commit-before-response", status_code=201)
    async def create_committed_before(
        data: TeamCreate, session: CommitsBeforeResponse
    ) -> TeamPublic:
        team = Team.model_validate(data)
        session.add(team)
        await session.flush()
        return TeamPublic.model_validate(team)

    @app.post("/teams", status_code=201)
    async def create_team(data: TeamCreate, session: SessionDep) -> TeamPublic:
        team = Team.model_validate(data)
        session.add(team)
        await session.commit()
        return TeamPublic.model_validate(team)

    @app.get("/teams/{team_id}")
    async def read_team(team_id: int, session: ReadSessionDep) -> TeamPublic:
        return TeamPublic.model_validate(await _team_or_404(session, team_id))

    @app.post("/teams/{team_id}/rename-later/function-scope", status_code=202)
    async def rename_later_detached(
        team_id: int, rename: Rename, session: ClosedBeforeTasks, tasks: BackgroundTasks
    ) -> dict[str, str]:
        return await rename_later_the_naive_way(session, team_id, rename.name, tasks)

    @app.post("/teams/{team_id}/rename-later/request-scope", status_code=202)
    async def rename_later_attached(
        team_id: int, rename: Rename, session: SessionDep, tasks: BackgroundTasks
    ) -> dict[str, str]:
        return await rename_later_the_naive_way(session, team_id, rename.name, tasks)

    @app.post("/teams/{team_id}/rename-later", status_code=202)
    async def rename_later(
        team_id: int, rename: Rename, request: Request, tasks: BackgroundTasks
    ) -> dict[str, str]:
        sessions = request.app.state.sessionmaker
        tasks.add_task(run_in_own_session, sessions, rename_team, team_id, rename.name)
        return {"status": "accepted"}

    @app.get("/pool")
    async def pool(request: Request) -> dict[str, int]:
        return {"checked_out": request.app.state.engine.pool.checkedout()}

    @app.get("/teams.jsonl")
    async def stream_teams(session: SessionDep, pace: Pace = 0.0) -> StreamingResponse:
        lines = (_line(team) async for team in streamed_teams(session, pace))
        return StreamingResponse(lines, media_type=JSON_LINES)

    @app.get("/teams.events", response_class=EventSourceResponse)
    async def team_events(session: SessionDep, pace: Pace = 0.0) -> AsyncIterator[TeamPublic]:
        # FastAPI (0.13x and later) sends each item an async generator yields as an event.
        async for team in streamed_teams(session, pace):
            yield TeamPublic.model_validate(team)

    @app.get("/teams-page.jsonl")
    async def stream_page(
        session: ClosedBeforeTasks, pace: Pace = 0.0, limit: int = Query(100, ge=1, le=1000)
    ) -> StreamingResponse:
        statement = select(Team).order_by(Team.id).limit(limit)  # type: ignore[arg-type]
        page = [_line(team) for team in (await session.exec(statement)).all()]
        # scope="function": the session is closed when this returns, before the first line.
        return StreamingResponse(_paced(page, pace), media_type=JSON_LINES)

    @app.post("/teams/expired", status_code=201)
    async def create_expired(data: TeamCreate, request: Request) -> Team:
        async with AsyncSession(request.app.state.engine) as session:  # expire_on_commit=True
            team = Team.model_validate(data)
            session.add(team)
            await session.commit()
            return team

    @app.post("/teams/refreshed", status_code=201)
    async def create_refreshed(data: TeamCreate, request: Request) -> Team:
        async with AsyncSession(request.app.state.engine) as session:
            team = Team.model_validate(data)
            session.add(team)
            await session.commit()
            await session.refresh(team)  # loads the expired attributes again, awaited
            return team

    @app.get("/teams/{team_id}/lazy", response_model=TeamPublicWithHeroes)
    async def read_team_lazily(team_id: int, session: ReadSessionDep) -> Team:
        return await _team_or_404(session, team_id)  # heroes not loaded

    @app.get("/teams/{team_id}/heroes", response_model=TeamPublicWithHeroes)
    async def read_team_with_heroes(team_id: int, session: ReadSessionDep) -> Team:
        found = await session.exec(
            select(Team).where(Team.id == team_id).options(selectinload(Team.heroes))  # type: ignore[arg-type]
        )
        team = found.first()
        if team is None:
            raise HTTPException(status_code=404, detail="Team not found")
        return team

    @app.get("/teams/{team_id}/heroes/refreshed", response_model=TeamPublicWithHeroes)
    async def read_team_refreshing_heroes(team_id: int, session: ReadSessionDep) -> Team:
        team = await _team_or_404(session, team_id)
        await session.refresh(team, ["heroes"])  # loads the relationship, awaited
        return team

    @app.get("/teams/{team_id}/heroes/awaited", response_model=TeamPublicWithHeroes)
    async def read_team_awaiting_heroes(team_id: int, session: ReadSessionDep) -> Team:
        team = await _team_or_404(session, team_id)
        await team.awaitable_attrs.heroes  # AsyncAttrs: the lazy load, awaited
        return team

    @app.get("/teams/{team_id}/heroes/columns")
    async def read_team_and_hero_columns(
        team_id: int, session: ReadSessionDep
    ) -> TeamPublicWithHeroes:
        team = TeamPublic.model_validate(await _team_or_404(session, team_id))
        columns = [col(c) for c in (Hero.id, Hero.name, Hero.secret_name, Hero.age, Hero.team_id)]
        statement = (
            select_columns(*columns).where(col(Hero.team_id) == team_id).order_by(columns[0])
        )
        rows = (await session.execute(statement)).mappings()
        heroes = [HeroPublic.model_validate(dict(row)) for row in rows]
        return TeamPublicWithHeroes(**team.model_dump(), heroes=heroes)

    return app
