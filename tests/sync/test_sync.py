"""The blocking facade (`engine.sync`): the same API for synchronous training code,
with real backpressure and aborts that reach the training thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import engine
from engine import Status
from engine.errors import ClosedError, RunAbortedError, RunNotFoundError, ValidationError
from tests.conftest import in_thread


def connect(db_url: str, **settings: Any) -> engine.sync.SyncTracker:
    settings.setdefault("durability", "normal")
    return engine.sync.connect(db_url, **settings)


def test_the_blocking_api_end_to_end(db_url: str) -> None:
    with connect(db_url, project="team/proj") as tracker:
        assert tracker.project == "team/proj"
        with tracker.start_run("base", experiment="exp", tags=("baseline",),
                               config={"opt": {"name": "sgd"}}) as run:
            assert (run.project, run.run_id) == ("team/proj", "base")
            run.log_configs({"opt": {"lr": 0.1}})
            for step in range(10):
                run.log_metrics({"train": {"loss": 1.0 / (step + 1)}}, step=step)
            run.add_tags("good")
            run.remove_tags("baseline")
            run.flush()
            state = tracker.get_run("base")
            assert state.status is Status.RUNNING
            assert state.metrics["train/loss"].count == 10
        with tracker.start_run("child", experiment="exp", fork=("base", 4)) as child:
            child.log_metrics({"train/loss": 0.01}, step=5)

        state = tracker.get_run("base")
        assert state.status is Status.SUCCEEDED
        assert state.config == {"opt/name": "sgd", "opt/lr": 0.1}
        assert state.tags == frozenset({"good"})
        series = tracker.read_series("child", "train/loss")
        assert series.steps.tolist() == [0, 1, 2, 3, 4, 5]
        assert series.values[-1] == 0.01
        assert [s.run_id for s in tracker.list_runs()] == ["base", "child"]
        assert tracker.get_experiment("exp") == engine.Experiment("exp", "child",
                                                                  ("base", "child"))
        assert tracker.lineage("base").children == (engine.ForkPoint("child", 4),)
        assert tracker.lineage("child").ancestors == (engine.ForkPoint("base", 4),)

        events = list(tracker.events())
        assert [e.position for e in events] == sorted(e.position for e in events)
        assert events[0].type == "RunCreated"
        assert [e.position for e in tracker.events(events[2].position)] == \
            [e.position for e in events[3:]]
        old = tracker.get_run("base", as_of=events[0].position)
        assert old.status is Status.RUNNING
        assert old.metrics == {}

        before = tracker.get_run("base")
        tracker.rebuild_projections()
        assert tracker.get_run("base") == before

        tracker.delete_run("child")
        assert [s.run_id for s in tracker.list_runs()] == ["base"]
        assert tracker.get_experiment("exp").head == "base"
        with pytest.raises(RunNotFoundError):
            tracker.get_run("nope")


def test_validation_errors_surface_in_the_calling_thread(db_url: str) -> None:
    with connect(db_url) as tracker, tracker.start_run("r") as run:
        run.log_metrics({"m": 1.0, "n": 2.0}, step=0)
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({"m": 2.0, "n//bad": 3.0}, step=1)
        assert caught.value.key == "n//bad"
        with pytest.raises(ValidationError):
            run.log_metrics({"m": 2.0}, step=0)
        run.flush()
        assert tracker.read_series("r", "m").steps.tolist() == [0]


def test_a_full_buffer_makes_log_metrics_wait_and_loses_nothing(db_url: str) -> None:
    count = 1000
    with connect(db_url, max_pending_points=8, flush_interval=0.001) as tracker:
        with tracker.start_run("r") as run:
            for step in range(count):
                run.log_metrics({"a": float(step), "b": -float(step)}, step=step)
        a = tracker.read_series("r", "a")
        assert a.steps.tolist() == list(range(count))
        assert a.values.tolist() == [float(s) for s in range(count)]
        assert tracker.read_series("r", "b").values.tolist() == [-float(s) for s in range(count)]
        assert tracker.get_run("r").status is Status.SUCCEEDED


def test_logging_from_a_plain_thread(db_url: str) -> None:
    with connect(db_url) as tracker:

        def train() -> None:
            with tracker.start_run("threaded") as run:
                for step in range(100):
                    run.log_metrics({"loss": float(step)}, step=step)
                run.flush()
                assert tracker.get_run("threaded").metrics["loss"].count == 100

        in_thread(train)
        with tracker.start_run("main") as run:  # and the tracker's own thread goes on too
            run.log_metrics({"loss": 1.0})

        def read() -> None:
            assert tracker.read_series("threaded", "loss").steps.tolist() == list(range(100))

        in_thread(read)
        assert tracker.get_run("threaded").status is Status.SUCCEEDED
        assert tracker.get_run("main").status is Status.SUCCEEDED


def test_an_exception_in_the_block_records_failed(db_url: str) -> None:
    with connect(db_url) as tracker:

        def train() -> None:
            with tracker.start_run("r") as run:
                run.log_metrics({"loss": 1.0}, step=0)
                raise KeyError("batch")

        with pytest.raises(KeyError, match="batch"):
            train()
        state = tracker.get_run("r")
        assert state.status is Status.FAILED
        assert state.status_reason is not None
        assert "KeyError" in state.status_reason
        assert "batch" in state.status_reason
        assert state.ended_at is not None
        assert tracker.read_series("r", "loss").steps.tolist() == [0]


def test_abort_from_another_thread_stops_the_training_thread(db_url: str) -> None:
    with connect(db_url) as tracker:

        seen: list[RunAbortedError] = []

        def train() -> str:
            with tracker.start_run("r") as run:
                run.log_metrics({"loss": 1.0}, step=0)
                assert not run.abort_requested
                in_thread(lambda: tracker.abort_run("r", reason="diverged"))
                assert run.abort_requested
                try:
                    run.log_metrics({"loss": 2.0}, step=1)
                except RunAbortedError as error:  # the body sees why it stops...
                    seen.append(error)
                    raise
                pytest.fail("log_metrics went on after the abort")
            return "after the block"  # ...and the block ends quietly, as in async code

        assert train() == "after the block"
        assert seen[0].reason == "diverged"
        assert seen[0].run_id == "r"
        state = tracker.get_run("r")
        assert (state.status, state.status_reason) == (Status.ABORTED, "diverged")
        assert tracker.read_series("r", "loss").steps.tolist() == [0]


def test_abort_from_another_tracker_stops_the_training_thread(db_url: str,
                                                              backend: str) -> None:
    if backend == "sqlite-memory":
        pytest.skip("an in-memory database cannot be shared by two trackers")
    with connect(db_url) as tracker, connect(db_url) as elsewhere:

        def train() -> None:
            with tracker.start_run("r") as run:
                elsewhere.abort_run("r", reason="from afar")
                deadline = time.monotonic() + 20
                step = 0
                while time.monotonic() < deadline:  # until the poll of the log sees it
                    run.log_metrics({"loss": 1.0}, step=step)
                    run.flush()
                    step += 1
                pytest.fail("the abort from another tracker never reached the run")

        train()  # the abort ends the block quietly
        state = tracker.get_run("r")
        assert (state.status, state.status_reason) == (Status.ABORTED, "from afar")


def test_a_closed_sync_tracker_refuses_calls(db_url: str) -> None:
    tracker = connect(db_url)
    with tracker, tracker.start_run("r") as run:
        run.log_metrics({"m": 1.0})
    with pytest.raises(ClosedError):
        run.log_metrics({"m": 2.0})
    with pytest.raises(ClosedError):
        tracker.get_run("r")
    with pytest.raises(ClosedError), tracker:
        pass


def test_a_bad_setting_is_refused_at_the_call() -> None:
    threads = threading.active_count()
    with pytest.raises(ValidationError) as caught:
        engine.sync.connect(":memory:", flush_interval=0)
    assert caught.value.key == "flush_interval"
    assert threading.active_count() == threads  # no event loop was started for it


def test_every_call_after_close_raises_closed_error(db_url: str) -> None:
    tracker = connect(db_url)
    assert not tracker.closed
    with tracker, tracker.start_run("r") as run:
        subscription = tracker.subscribe()
    assert tracker.closed
    with pytest.raises(ClosedError):
        run.flush()
    with pytest.raises(ClosedError):
        tracker.events()
    with pytest.raises(ClosedError):
        tracker.subscribe()
    assert list(subscription) == []  # it ended with the tracker
    subscription.close()  # and closing it again is harmless


def test_edit_run_adds_a_score_and_leaves_the_status(db_url: str) -> None:
    with connect(db_url) as tracker:
        with pytest.raises(KeyError), tracker.start_run("r") as run:  # noqa: PT012 (training)
            run.log_metrics({"loss": 0.5}, step=0)
            raise KeyError("batch")
        before = tracker.get_run("r")
        with tracker.edit_run("r") as edit:
            edit.log_metrics({"leaderboard/score": 0.91}, step=0)
            edit.add_tags("scored")
        with pytest.raises(ClosedError):
            edit.log_metrics({"leaderboard/score": 0.92}, step=1)
        after = tracker.get_run("r")
        assert (after.status, after.status_reason, after.ended_at) == \
            (before.status, before.status_reason, before.ended_at)
        assert after.metrics["leaderboard/score"].last == 0.91
        assert after.tags == frozenset({"scored"})
        with pytest.raises(RunNotFoundError), tracker.edit_run("nope"):
            pass


def test_every_read_takes_as_of(db_url: str) -> None:
    with connect(db_url) as tracker:
        with tracker.start_run("r", experiment="e") as run:
            run.log_metrics({"loss": 1.0}, step=0)
            run.flush()
            then = tracker.get_run("r").position
            run.log_metrics({"loss": 0.5}, step=1)
        assert tracker.get_run("r", as_of=then).status is Status.RUNNING
        assert tracker.read_series("r", "loss", as_of=then).steps.tolist() == [0]
        assert [s.status for s in tracker.list_runs(as_of=then)] == [Status.RUNNING]
        assert [g.count for g in tracker.group_runs("status", as_of=then)] == [1]
        assert tracker.fetch_runs_table(columns="status", as_of=then).rows == (("running",),)
        assert tracker.get_experiment("e", as_of=then).head == "r"
        assert tracker.lineage("r", as_of=then).ancestors == ()
