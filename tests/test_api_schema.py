"""Schemathesis against the heroes API's own OpenAPI schema, in process, on the configured backend.

Each operation gets generated requests, valid and invalid, seeded and bounded so that a run is
repeatable and short, and every answer goes through all of Schemathesis's checks: no server
error, and each status code, header and body as the schema documents it; invalid input refused,
valid input accepted, a method the path does not serve refused with ``Allow``. Then the same
checks on chains of calls that the schema's links connect (Schemathesis's stateful testing).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from functools import partial
from typing import ClassVar

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from sqlalchemy.pool import NullPool

from snippets import open_engine
from snippets.demo.heroes_api import create_app
from snippets.demo.models import metadata
from snippets.testing import empty_tables

EXAMPLES = 40
"""Examples per operation and phase: enough to reach each bound, short enough for ``make test``."""


NAMESPACE = f"schema_{os.environ.get('PYTEST_XDIST_WORKER', 'master')}"
app = create_app(partial(open_engine, namespace=NAMESPACE, fresh=True))
"""The app on a namespace of this test worker's own, emptied when Schemathesis starts it (its
lifespan runs once, when the schema is read at collection, and ends when the tests end)."""
HERO_WRITES_MAY_NAME_NO_TEAM = {
    "include-name": ["POST /heroes/", "PATCH /heroes/{hero_id}"],
    # A schema-valid team_id may name no team, which no schema can say: a 422 (its own test,
    # test_api.py::test_unknown_team_is_422). Every other refusal of valid input still fails.
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409", "422"]}},
}
CONFIG = SchemathesisConfig.from_dict({"operations": [HERO_WRITES_MAY_NAME_NO_TEAM]})
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_heroes_api_answers_as_its_schema_says(case: schemathesis.Case) -> None:
    case.call_and_validate()


class Workflows(schema.as_state_machine()):  # type: ignore[misc]
    """Schemathesis's state machine: calls chained by the schema's links, so that they reach
    rows that exist. It infers most (a hero's ``id`` from ``POST /heroes/`` to ``GET``,
    ``PATCH`` and ``DELETE /heroes/{hero_id}``, a team's to ``GET /teams/{team_id}``); the
    schema documents the one it cannot infer (``A_HERO_OF_THE_NEW_TEAM``: a ``team_id`` names
    a ``TeamPublic``). ``answered`` counts each operation's statuses."""

    answered: ClassVar[Counter[tuple[str, int]]] = Counter()

    def setup(self) -> None:
        # Each scenario starts from empty tables, ids from 1: the same calls get the same
        # answers, as Hypothesis needs to replay and shrink a scenario.
        asyncio.run(emptied(NAMESPACE))

    def after_call(self, response: Response, case: schemathesis.Case) -> None:
        self.answered[case.operation.label, response.status_code] += 1


async def emptied(namespace: str) -> None:
    engine = await open_engine(namespace=namespace, poolclass=NullPool)
    try:
        await empty_tables(engine, metadata)
    finally:
        await engine.dispose()


def test_chained_calls_answer_as_the_schema_says() -> None:
    Workflows.answered.clear()
    Workflows.run(
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=6,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    answered = Workflows.answered
    by_link = answered["POST /heroes/", 201]
    on_a_hero = sum(
        n for (label, status), n in answered.items() if "{hero_id}" in label and status < 300
    )
    assert by_link > 0, answered  # a hero of a team just created: the documented link
    assert on_a_hero > 0, answered  # the chains reached heroes that exist
