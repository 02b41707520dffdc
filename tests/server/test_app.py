"""The HTTP API itself: typed errors for bad input, the runs table, the schema, and a server
that refuses to listen beyond loopback without auth."""

from __future__ import annotations

from array import array
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine._cli.main import main
from engine._client import protocol as p
from engine._core import events as ev
from engine._core import wire
from engine._core.events import NewEvent
from engine._server.serve import check_host
from engine._storage.contract import AppendRequest
from engine.errors import ValidationError
from tests.server.live import LiveServer

pytestmark = pytest.mark.timeout(60)


def _created(name: str) -> NewEvent:
    return NewEvent(ev.RUN_CREATED, {"name": name, "experiment": "exp", "tags": ["a"],
                                     "config": {"lr": 0.1}, "fork": None})


def _append(client: httpx.Client, *requests: AppendRequest) -> Any:
    body = {"requests": [p.request_to(r) for r in requests], "now": 1_700_000_000.0}
    return client.post("/api/v1/append", content=wire.dumps(body))


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with LiveServer(str(tmp_path / "db.sqlite")) as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def _error(response: httpx.Response) -> dict[str, Any]:
    info: dict[str, Any] = response.json()["error"]
    return info


def test_appended_runs_are_in_the_runs_table_with_their_metrics(client: httpx.Client) -> None:
    metrics = NewEvent(ev.METRICS_LOGGED, {"metrics": {"loss": {
        "steps": array("q", [0, 1, 2]), "values": array("d", [3.0, float("nan"), 1.0]),
        "timestamps": array("d", [1.0, 2.0, 3.0])}}})
    answer = _append(client, AppendRequest("team/vision", "r1", [_created("one"), metrics]),
                     AppendRequest("team/vision", "r2", [_created("two")]))
    assert answer.status_code == 200
    outcomes = wire.loads(answer.content)["outcomes"]
    assert [len(o["records"]) for o in outcomes] == [2, 1]
    runs = client.get("/api/v1/projects/team/vision/runs",
                      params={"where": "metrics.loss.last < 2", "order_by": "-name"})
    assert runs.status_code == 200
    states = [p.state_from(s) for s in wire.loads(runs.content)["runs"]]
    assert [s.run_id for s in states] == ["r1"]
    assert states[0].metrics["loss"].count == 3
    series = wire.loads(client.get("/api/v1/projects/team/vision/series",
                                   params={"run_id": "r1", "metric": "loss"}).content)
    steps, values, _ = series["series"]
    assert list(steps) == [0, 1, 2]
    assert values[1] != values[1]  # NaN crossed the wire as NaN


def test_a_refused_request_is_named_in_its_outcome_and_the_others_commit(
        client: httpx.Client) -> None:
    _append(client, AppendRequest("p", "r1", [_created("one")]))
    answer = _append(client, AppendRequest("p", "r1", [_created("again")]),
                     AppendRequest("p", "r2", [_created("two")]))
    first, second = wire.loads(answer.content)["outcomes"]
    assert first["error"]["type"] == "RunExistsError"
    assert len(second["records"]) == 1
    assert isinstance(p.error_from({"error": first["error"]}, 409), Exception)


@pytest.mark.parametrize(("body", "field"), [
    (b"{", "body"),
    (b"[]", "body"),
    (b'{"requests": 3, "now": 1}', "requests"),
    (b'{"requests": [], "now": "soon"}', "now"),
    (b'{"requests": [{"project": "p", "run_id": "r", "events": [["Bogus", "'
     + b"0" * 32 + b'", {}]]}], "now": 1}', "type"),
    (b'{"requests": [{"project": "p", "run_id": "r", "events": [["RunCreated", "'
     + b"0" * 32 + b'", {"name": 3}]]}], "now": 1}', "data"),
    (b'{"requests": [{"project": "p", "run_id": "bad id!", "events": []}], "now": 1}',
     "run_id"),
])
def test_bad_appends_get_a_422_naming_the_field_and_write_nothing(
        client: httpx.Client, body: bytes, field: str) -> None:
    answer = client.post("/api/v1/append", content=body)
    assert answer.status_code == 422
    assert _error(answer) == {**_error(answer), "type": "ValidationError", "field": field}
    assert client.get("/api/v1/head").json()["head"] == 0


def test_a_bad_query_is_a_400_with_its_position(client: httpx.Client) -> None:
    answer = client.get("/api/v1/projects/p/runs", params={"where": "name = "})
    assert answer.status_code == 400
    error = _error(answer)
    assert (error["type"], error["field"], error["position"]) == ("QuerySyntaxError",
                                                                    "where", 7)


def test_bad_parameters_are_422s_naming_them(client: httpx.Client) -> None:
    answer = client.get("/api/v1/projects/p/runs", params={"limit": "many"})
    assert (answer.status_code, _error(answer)["field"]) == (422, "limit")
    answer = client.get("/api/v1/projects/p/run", params={"run_id": "no such/id"})
    assert (answer.status_code, _error(answer)["field"]) == (422, "run_id")


def test_unknown_routes_answer_json(client: httpx.Client) -> None:
    answer = client.get("/api/v1/nothing")
    assert answer.status_code == 404
    assert _error(answer)["type"] == "NotFound"


def test_the_schema_describes_every_route(client: httpx.Client) -> None:
    """Every route the app serves under ``/api/v1/`` — the API's, the live stream's, the
    dashboard's — with each of its methods."""
    from starlette.routing import Route

    from engine._server.app import create_app

    document = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    described = {(m.lower(), path) for path, item in document["paths"].items() for m in item}
    served = {(method.lower(), route.path.replace("{project:path}", "{project}"))
              for route in create_app("unused.db").routes
              if isinstance(route, Route) and route.path.startswith("/api/v1/")
              for method in route.methods or () if method != "HEAD"}
    assert len(served) > 30
    assert served <= described, served - described


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org", "::"])
def test_without_auth_the_server_refuses_to_listen_beyond_loopback(host: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_host(host, auth=False)
    assert caught.value.key == "host"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_auth(host: str) -> None:
    check_host(host, auth=False)


def test_serve_beyond_loopback_without_auth_is_one_line_and_exit_1(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["--db", str(tmp_path / "x.db"), "serve", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "refusing to listen on '0.0.0.0'" in err


def test_a_body_over_the_limit_is_a_413_before_it_is_held(client: httpx.Client) -> None:
    from engine._server.params import MAX_BODY

    def chunks() -> Any:  # no Content-Length: the server counts as the body streams in
        block = b" " * 2**20
        for _ in range(MAX_BODY // len(block) + 2):
            yield block

    response = client.post("/api/v1/append", content=chunks())
    assert response.status_code == 413
    assert _error(response)["type"] == "PayloadTooLarge"
    assert client.get("/api/v1/health").status_code == 200
