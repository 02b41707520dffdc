"""The API against its own OpenAPI schema, fuzzed by schemathesis: however malformed the
request, no answer is a 500 and every answer matches the schema (status, content type,
body)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import engine
from engine._server.openapi import schema as document
from tests.server.live import LiveServer

pytestmark = [pytest.mark.remote, pytest.mark.slow, pytest.mark.timeout(600)]

# The live stream never ends by itself; its own tests cover it.
SCHEMA = schemathesis.openapi.from_dict(document()).exclude(path_regex="/events$")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = str(tmp_path_factory.mktemp("fuzz") / "db.sqlite")

    async def seed() -> None:
        tracker = engine.connect(db, project="team/a", durability="normal")
        async with tracker, tracker.start_run("r1", experiment="e") as run:
            run.log_metrics({"loss": 1.0, "acc": float("nan")}, step=0)

    anyio.run(seed)
    with LiveServer(db, durability="normal", long_poll=0.05) as server:
        yield server.url


@SCHEMA.parametrize()
@settings(max_examples=40, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_500_or_an_answer_off_the_schema(case: schemathesis.Case,
                                                          base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS)


def test_the_schema_is_valid_openapi(tmp_path: Path) -> None:
    assert SCHEMA.raw_schema["openapi"] == "3.1.0"
    assert len(list(SCHEMA.get_all_operations())) >= 25
