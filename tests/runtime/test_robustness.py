"""Failure modes found in review: each test reproduces one, and shows it cannot come back."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import engine
from engine._core import events as ev
from engine._core.events import NewEvent
from engine._storage.contract import AppendRequest
from engine.errors import (
    BackpressureError,
    ClosedError,
    RunExistsError,
    StorageError,
    ValidationError,
)
from tests.conftest import MakeTracker


async def test_a_refused_timestamp_leaves_nothing_behind(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"loss": 1.0}, step=0)
            run.log_metrics({"loss": 2.0}, step=1)  # the fast path from here on
            with pytest.raises(ValidationError, match="timestamp"):
                run.log_metrics({"loss": 3.0}, step=2, timestamp="yesterday")  # type: ignore[arg-type]
            run.log_metrics({"loss": 4.0}, step=5)
        series = await tracker.read_series("r", "loss")
        assert (list(series.steps), list(series.values)) == ([0, 1, 5], [1.0, 2.0, 4.0])


async def test_an_empty_call_logs_nothing_and_uses_no_step(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({}, step=5)
            run.log_metrics({})
            run.log_metrics({"m": 1.0})
        assert list((await tracker.read_series("r", "m")).steps) == [0]
        assert [e.type async for e in tracker.events()] == [
            "RunCreated", "MetricsLogged", "StatusChanged"]


class Stamp(datetime):
    """A datetime subclass, as pandas.Timestamp is."""


async def test_values_the_store_could_not_write_are_refused_or_made_plain(
        make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r", config={"when": Stamp(2024, 1, 2, tzinfo=UTC)}) as run:
            with pytest.raises(ValidationError, match="64 bits"):
                run.log_configs({"huge": 2**70})
            with pytest.raises(ValidationError, match="Unicode"):
                run.log_metrics({"bad\udc80name": 1.0}, step=0)
            with pytest.raises(ValidationError, match="Unicode"):
                run.add_tags("tag\udc80")
            with pytest.raises(ValidationError, match="Unicode"):
                run.log_configs({"path": "file\udc80.txt"})
            run.log_metrics({"ok": 1.0}, step=0)
        state = await tracker.get_run("r")
        assert type(state.config["when"]) is datetime
        assert state.config["when"] == datetime(2024, 1, 2, tzinfo=UTC)
        assert state.status == "succeeded"
        assert state.metrics["ok"].count == 1


async def test_one_request_the_store_cannot_encode_does_not_block_the_others(
        make: MakeTracker) -> None:
    async with make() as tracker:
        writer = tracker._writer
        assert writer is not None
        async with tracker.start_run("good") as run:
            run.log_metrics({"m": 1.0}, step=0)
            bad = AppendRequest(tracker.project, "good", [NewEvent(ev.CONFIGS_LOGGED,
                                                                   {"config": {"x": object()}})])
            results: list[Any] = []

            async def submit() -> None:
                try:
                    results.append(await writer.submit(bad))
                except ValidationError as exc:
                    results.append(exc)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(submit)
                await run.flush()  # shares the cycle with the bad request
            run.log_metrics({"m": 2.0}, step=1)
        assert isinstance(results[0], ValidationError)
        state = await tracker.get_run("good")
        assert state.metrics["m"].count == 2
        assert state.status == "succeeded"


async def test_a_writer_stopped_by_a_failure_takes_no_more_requests(make: MakeTracker) -> None:
    """When the tracker's background work fails, its writer is closed without a drain: a
    request that comes after is refused at once, never committed behind the failure."""
    async with make() as tracker:
        async with tracker.start_run("r"):
            pass
        writer = tracker._writer
        assert writer is not None
        writer.close(StorageError("the store failed"))
        late = AppendRequest(tracker.project, "r", [NewEvent(ev.CONFIGS_LOGGED,
                                                             {"config": {"late": 1}})])
        with anyio.fail_after(30), pytest.raises(ClosedError):
            await writer.submit(late)
        assert "late" not in (await tracker.get_run("r")).config


async def test_closing_the_tracker_under_an_open_run_loses_nothing_it_accepted(
        file_url: str) -> None:
    accepted: list[int] = []
    outcome: list[str] = []
    logged, closed = anyio.Event(), anyio.Event()

    async def train(tracker: engine.Tracker) -> None:
        try:
            async with tracker.start_run("r") as run:
                for step in range(100):
                    run.log_metrics({"m": float(step)}, step=step)
                    accepted.append(step)
                logged.set()
                await closed.wait()
                try:
                    run.log_metrics({"m": 0.0}, step=1_000)
                except ClosedError:
                    outcome.append("refused after close")
        except ClosedError:
            outcome.append("block end raised")  # at once, no hang

    with anyio.fail_after(30):
        # The training task outlives the tracker: it lives in a task group outside it.
        async with anyio.create_task_group() as tasks:
            async with engine.connect(file_url) as tracker:
                tasks.start_soon(train, tracker)
                await logged.wait()
            closed.set()
    assert outcome == ["refused after close", "block end raised"]
    async with engine.connect(file_url) as again:
        state = await again.get_run("r")
        assert state.metrics["m"].count == len(accepted)
        assert state.status == "running"  # until a reaper marks it crashed


def test_a_training_thread_still_logging_when_the_tracker_closes(file_url: str) -> None:
    accepted: list[int] = []
    stop = threading.Event()
    tracker = engine.sync.connect(file_url, max_pending_points=2_000)
    tracker.__enter__()
    context = tracker.start_run("r")
    run = context.__enter__()

    def train() -> None:
        step = 0
        try:
            while not stop.is_set():
                run.log_metrics({"m": float(step)}, step=step)
                accepted.append(step)
                step += 1
        except ClosedError:
            pass

    thread = threading.Thread(target=train)
    thread.start()
    while len(accepted) < 5_000:
        pass
    tracker.close()
    stop.set()
    thread.join(timeout=30)
    with engine.sync.connect(file_url) as again:
        series = again.read_series("r", "m")
        assert list(series.steps) == accepted  # everything accepted, nothing more


async def test_a_refused_batch_is_reported_and_the_rest_of_the_run_commits(
        file_url: str) -> None:
    async with engine.connect(file_url) as one, engine.connect(file_url) as two:
        async with one.start_run("shared") as first:
            first.log_metrics({"loss": 1.0}, step=0)
            await first.flush()
            with pytest.raises(RunExistsError, match="already open"):
                await one.start_run("shared", resume=True).__aenter__()
            twin = two.start_run("shared", resume=True)  # a zombie twin, in another tracker
            second = await twin.__aenter__()
            first.log_metrics({"loss": 1.5}, step=1)
            await first.flush()
            second.log_metrics({"loss": 2.0}, step=1)  # fine by the twin's view; not the log's
            second.add_tags("from-the-twin")
            with pytest.raises(ValidationError, match="step 1"):
                await second.flush()
            await twin.__aexit__(None, None, None)
        state = await one.get_run("shared")
        assert list((await one.read_series("shared", "loss")).values) == [1.0, 1.5]
        assert "from-the-twin" in state.tags  # the refused points did not take this along


async def test_a_drain_beside_a_commit_in_flight_commits_everything(file_url: str) -> None:
    async with engine.connect(file_url) as tracker:
        store, writer = tracker._store, tracker._writer
        assert store is not None
        assert writer is not None
        gate, entered = anyio.Event(), anyio.Event()
        real = store.append

        async def held(requests: Sequence[AppendRequest], *, now: float) -> Any:
            entered.set()
            await gate.wait()
            return await real(requests, now=now)

        with anyio.fail_after(30):
            async with tracker.start_run("r") as run:
                run.log_metrics({"m": 1.0}, step=0)
                store.append = held  # type: ignore[method-assign]
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(run.flush)
                    await entered.wait()  # the writer's cycle is in the middle of a commit
                    run.log_metrics({"m": 2.0}, step=1)
                    tasks.start_soon(writer.drain)  # as closing does, beside the cycle
                    await anyio.wait_all_tasks_blocked()
                    gate.set()
                store.append = real  # type: ignore[method-assign]
                await run.flush()
        assert list((await tracker.read_series("r", "m")).values) == [1.0, 2.0]


async def test_an_abort_from_another_process_reaches_a_run_that_keeps_logging(
        file_url: str) -> None:
    for trial in range(5):
        async with engine.connect(file_url, poll_interval=0.005) as one, \
                engine.connect(file_url) as other:
            run_id = f"r{trial}"
            with anyio.fail_after(30):
                async with one.start_run(run_id) as run:
                    step = 0
                    while not run.abort_requested:
                        run.log_metrics({"m": float(step)}, step=step)
                        step += 1
                        await run.flush()  # its own commits land around the abort
                        if step == 20:
                            await other.abort_run(run_id, reason=f"trial {trial}")
                        await anyio.lowlevel.checkpoint()
            state = await one.get_run(run_id)
            assert state.status == "aborted"
            assert state.status_reason == f"trial {trial}"


async def test_a_live_subscription_listens_from_when_it_is_made(make: MakeTracker) -> None:
    async with make() as tracker:
        sub = tracker.subscribe(runs=["later"], from_position="live")
        async with tracker.start_run("later") as run:
            run.log_metrics({"m": 1.0}, step=0)
        got = []
        with anyio.fail_after(10):
            async for event in sub:
                got.append(event.type)
                if event.type == "StatusChanged":
                    break
        assert got == ["RunCreated", "MetricsLogged", "StatusChanged"]
        await sub.aclose()


async def test_settings_and_arguments_that_could_never_work_are_refused(
        make: MakeTracker) -> None:
    with pytest.raises(ValidationError, match="heartbeat_interval"):
        engine.connect(":memory:", heartbeat_interval=60, crash_timeout=30)
    async with make() as tracker:
        with pytest.raises(ValidationError, match="runs"):
            tracker.subscribe(runs=[["not", "a", "string"]])  # type: ignore[list-item]
    with engine.sync.connect(":memory:", max_pending_points=5) as sync_tracker, \
            sync_tracker.start_run("r") as run, pytest.raises(BackpressureError):
        run.log_metrics({f"m{i}": 1.0 for i in range(10)}, step=0)  # can never fit: no spin
