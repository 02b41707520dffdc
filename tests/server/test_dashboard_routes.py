"""The routes the dashboard's run page calls besides the common API: a run's notes,
replaced with a write token, and the list of what a run records besides metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import engine
import engine.sync
from tests.server.live import LiveServer

pytestmark = [pytest.mark.remote, pytest.mark.timeout(120)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(str(tmp_path / "db.sqlite"), durability="normal") as server:
        yield server


def _seed(server: LiveServer, tmp_path: Path) -> None:
    with engine.sync.connect(server.url, project="p", spool=str(tmp_path / "s"),
                             durability="normal") as t:
        with t.start_run(run_id="parent", capture_env=False) as run:
            run.log_text({"logs/stdout": "hello"}, step=0)
            run.log_text({"logs/stdout": "again"}, step=1)
            run.log_histograms({"grad": engine.Histogram([0.0, 1.0], [3])}, step=4)
            run.log_confusion_matrices({"cm": engine.ConfusionMatrix(["a", "b"],
                                                                     [[1, 0], [0, 1]])}, step=2)
            run.log_files({"img": b"bytes"}, step=0)
            run.upload({"weights": b"w"})
            run.log_metrics({"loss": 1.0}, step=9)
        with t.start_run(run_id="child", fork=("parent", 1), capture_env=False) as run:
            run.log_text({"logs/stdout": "child"}, step=2)


def test_contents_list_each_key_with_its_kind_and_last_step(server: LiveServer,
                                                            tmp_path: Path) -> None:
    _seed(server, tmp_path)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        found = client.get("/api/v1/projects/p/contents", params={"run_id": "parent"}).json()
        # Metrics are not listed: the run's state has them.
        assert found == {"contents": {
            "logs/stdout": ["text", 1], "grad": ["histogram", 4],
            "cm": ["confusion matrix", 2], "img": ["file", 0],
            "weights": ["file attribute", None]}}
        # A fork inherits its parent's keys up to the fork step.
        child = client.get("/api/v1/projects/p/contents", params={"run_id": "child"}).json()
        assert child["contents"]["logs/stdout"] == ["text", 2]
        assert child["contents"]["img"] == ["file", 0]
        assert client.get("/api/v1/projects/p/contents",
                          params={"run_id": "nobody"}).json() == {"contents": None}
        bad = client.get("/api/v1/projects/p/contents", params={"run_id": ""})
        assert bad.status_code == 422
        assert bad.json()["error"]["field"] == "run_id"


def test_notes_are_replaced_whole_and_bad_notes_change_nothing(server: LiveServer,
                                                               tmp_path: Path) -> None:
    _seed(server, tmp_path)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        done = client.post("/api/v1/projects/p/notes",
                           json={"run_id": "parent", "notes": "warmup <b>helped</b>"})
        assert done.status_code == 200
        run = client.get("/api/v1/projects/p/run", params={"run_id": "parent"}).json()["run"]
        assert run["notes"] == "warmup <b>helped</b>"
        assert run["status"] == "succeeded"  # an ended run keeps its status
        for body, field in (({"run_id": "parent", "notes": 3}, "notes"),
                            ({"run_id": "parent"}, "notes"),
                            ({"run_id": "parent", "notes": "x" * (2**20 + 1)}, "notes")):
            refused = client.post("/api/v1/projects/p/notes", json=body)
            assert refused.status_code == 422, body
            assert refused.json()["error"]["field"] == field
        missing = client.post("/api/v1/projects/p/notes", json={"run_id": "nobody", "notes": ""})
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "RunNotFoundError"
        run = client.get("/api/v1/projects/p/run", params={"run_id": "parent"}).json()["run"]
        assert run["notes"] == "warmup <b>helped</b>"
