"""What a training script logs shows up in an open page without a reload: new runs, status
changes, new points and new metrics, over the server-sent events stream."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.dashboard.seed import PROJECT, sweep, tracker
from tests.server.live import LiveServer

pytestmark = pytest.mark.browser


class Trainer:
    """A training script on a thread of its own, logging when told to."""

    def __init__(self, server: LiveServer, tmp_path: Path, run_id: str) -> None:
        self.orders: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.done: queue.Queue[object] = queue.Queue()
        self.thread = threading.Thread(target=self._train, args=(server, tmp_path, run_id))
        self.thread.start()
        assert self.done.get(timeout=30) == "started"

    def _train(self, server: LiveServer, tmp_path: Path, run_id: str) -> None:
        try:
            with tracker(server, tmp_path) as t, t.start_run(run_id=run_id, name=run_id) as run:
                run.log_metrics({"loss": 1.0}, step=0)
                run.flush()
                self.done.put("started")
                while (order := self.orders.get(timeout=60))[0] != "end":
                    metrics, step = order[1]
                    run.log_metrics(metrics, step=step)
                    run.flush()
                    self.done.put(step)
            self.done.put("ended")
        except BaseException as exc:  # handed to the test
            self.done.put(exc)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.orders.put(("log", (metrics, step)))
        assert self.done.get(timeout=30) == step

    def end(self) -> None:
        self.orders.put(("end", None))
        assert self.done.get(timeout=30) == "ended"
        self.thread.join(30)


@pytest.fixture
def trainer(server: LiveServer, tmp_path: Path) -> Iterator[Trainer]:
    trainer = Trainer(server, tmp_path, "live")
    yield trainer
    if trainer.thread.is_alive():
        trainer.end()


def test_new_points_and_new_metrics_appear_on_the_open_run_page(
        page: Any, server: LiveServer, trainer: Trainer) -> None:
    page.goto(f"{server.url}/#/run?project={PROJECT}&id=live")
    chart = "figure[data-metric='loss']"
    page.wait_for_function(f"document.querySelector(\"{chart}\")?.dataset.points === '1'")
    page.evaluate(f"window.firstCanvas = document.querySelector(\"{chart} canvas\")")
    for step in range(1, 6):
        trainer.log({"loss": 1.0 / (step + 1)}, step)
    page.wait_for_function(f"document.querySelector(\"{chart}\").dataset.lastStep === '5'")
    assert page.evaluate(f"document.querySelector(\"{chart}\").dataset.points") == "6"
    # The same chart took the points: it was not built again.
    assert page.evaluate(f"window.firstCanvas === document.querySelector(\"{chart} canvas\")")
    trainer.log({"val/acc": 0.5}, 6)
    page.wait_for_function("document.querySelector(\"figure[data-metric='val/acc']\")"
                           "?.dataset.points === '1'")
    trainer.end()
    page.wait_for_selector("h1 .chip:has-text('succeeded')")


def test_a_new_run_and_its_status_appear_in_the_open_runs_table(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(f"{server.url}/#/runs?project={PROJECT}")
    page.wait_for_selector("table.runs tr[data-run-id='run-0']")
    trainer = Trainer(server, tmp_path, "arrives")
    try:
        row = page.locator("table.runs tr[data-run-id='arrives']")
        row.wait_for()
        assert row.locator(".chip.status").inner_text() == "running"
        assert page.locator("table.runs tbody tr[data-run-id]").first.get_attribute(
            "data-run-id") == "arrives"  # newest first
        trainer.log({"train/loss": 0.05}, 1)
        # The metric column's value follows while the run is still running.
        row.locator("td.num", has_text="0.05").wait_for()
    finally:
        trainer.end()
    row.locator(".chip.status:has-text('succeeded')").wait_for()
    assert page.locator("text=5 runs").is_visible()


def test_a_live_run_outside_the_query_stays_out(page: Any, server: LiveServer,
                                                tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(f"{server.url}/#/runs?project={PROJECT}&q=tags contains 'baseline'")
    page.wait_for_selector("table.runs tr[data-run-id='run-0']")
    with tracker(server, tmp_path) as t:
        with t.start_run(run_id="other", tags=("other",)):
            pass
        with t.start_run(run_id="also-baseline", tags=("baseline",)):
            pass
    page.wait_for_selector("table.runs tr[data-run-id='also-baseline']")
    assert page.locator("table.runs tr[data-run-id='other']").count() == 0


def drop_streams(server: LiveServer) -> None:
    """End every live stream, as a server that shuts down does; streams opened after it (the
    browser's reconnection, a second later) are served again."""
    state = server.app.state

    async def drop() -> None:
        state.closing.set()
        await anyio.sleep(0.5)  # each stream sees it within a tick
        state.closing = anyio.Event()

    asyncio.run_coroutine_threadsafe(drop(), state.loop).result(10)


def test_a_dropped_stream_resumes_without_a_gap(page: Any, server: LiveServer,
                                                trainer: Trainer) -> None:
    page.goto(f"{server.url}/#/run?project={PROJECT}&id=live")
    chart = "figure[data-metric='loss']"
    page.wait_for_function(f"document.querySelector(\"{chart}\")?.dataset.points === '1'")
    page.wait_for_selector("#live[data-state=live]")
    drop_streams(server)
    page.wait_for_selector("#live[data-state=reconnecting]")  # the stream is down
    for step in range(1, 4):  # logged while the page has no stream
        trainer.log({"loss": 1.0 / (step + 1)}, step)
    page.wait_for_selector("#live[data-state=live]")  # back, resumed from Last-Event-ID
    for step in range(4, 6):
        trainer.log({"loss": 1.0 / (step + 1)}, step)
    page.wait_for_function(f"document.querySelector(\"{chart}\").dataset.lastStep === '5'")
    assert page.evaluate(f"document.querySelector(\"{chart}\").dataset.points") == "6"


def test_a_queued_job_and_its_claiming_worker_show_in_the_open_runs_table(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    with tracker(server, tmp_path) as t:
        waiting = t.enqueue(["python", "train.py"], run_id="waiting", name="waiting")
        page.goto(f"{server.url}/#/runs?project={PROJECT}")
        row = page.locator(f"table.runs tr[data-run-id='{waiting}']")
        row.wait_for()
        assert row.locator(".chip.status").inner_text() == "queued"
        header = [h.strip() for h in page.locator("table.runs thead th").all_inner_texts()]
        worker_column = header.index("Worker")  # (the selection box is a column too)
        cell = row.locator("td").nth(worker_column)
        assert cell.inner_text() == ""
        job = t.claim_job(worker="gpu-1")  # a worker claims it: the row follows, live
        assert job is not None
        row.locator(".chip.status:has-text('running')").wait_for()
        cell.locator("button", has_text="gpu-1").wait_for()
        page.screenshot(path=str(tmp_path / "jobs-runs-table.png"))
        cell.locator("button").click()  # the jobs of that worker
        page.wait_for_function("document.querySelector('#query').value === \"worker = 'gpu-1'\"")
        t.end_job(waiting, "succeeded")
    row.locator(".chip.status:has-text('succeeded')").wait_for()
