"""Schemathesis against the heroes API's own OpenAPI schema, in process, on the configured backend.

Each operation gets generated requests, valid and invalid, seeded and bounded so that a run is
repeatable and short, and every answer goes through all of Schemathesis's checks: no server
error, and each status code, header and body as the schema documents it; invalid input refused,
valid input accepted, a method the path does not serve refused with ``Allow``.
"""

from __future__ import annotations

import os
from functools import partial

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from snippets import open_engine
from snippets.demo.heroes_api import create_app

EXAMPLES = 40
"""Examples per operation and phase: enough to reach each bound, short enough for ``make test``."""


WORKER = os.environ.get("PYTEST_XDIST_WORKER", "master")
app = create_app(partial(open_engine, namespace=f"schema_{WORKER}", fresh=True))
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
