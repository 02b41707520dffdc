"""A run's life (docs/runs.md): terminal states, resume and rewind, aborts, deletion, experiments,
the reaper, backpressure, and what happens to handles and trackers once they are closed."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from functools import partial
from typing import Any

import anyio
import pytest

import engine
from engine import Status
from engine.errors import (
    BackpressureError,
    ClosedError,
    RunExistsError,
    RunNotFoundError,
    ValidationError,
)
from tests.conftest import MakeTracker


class Boom(RuntimeError):
    """What a training script raises."""


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def needs_shared_database(backend: str) -> None:
    """Two trackers (or processes) on one database: not possible with ``:memory:``."""
    if backend == "sqlite-memory":
        pytest.skip("an in-memory database cannot be shared by two trackers")


async def steps_of(tracker: engine.Tracker, run_id: str, metric: str) -> list[Any]:
    return (await tracker.read_series(run_id, metric)).steps.tolist()


async def train_then_raise(tracker: engine.Tracker, run_id: str, steps: range,
                           error: Exception, **options: Any) -> None:
    async with tracker.start_run(run_id, **options) as run:
        for step in steps:
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        raise error


# Terminal states --------------------------------------------------------------------------


async def test_leaving_the_block_records_succeeded_after_flushing(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            state = await tracker.get_run("r")
            assert state.status is Status.RUNNING
            assert state.ended_at is None
            run.log_metrics({"loss": 0.5}, step=0)  # not flushed: leaving the block does it
            run.add_tags("done")
        state = await tracker.get_run("r")
        assert state.status is Status.SUCCEEDED
        assert state.status_reason is None
        assert state.ended_at is not None
        assert state.ended_at >= state.created_at
        assert state.tags == frozenset({"done"})
        assert await steps_of(tracker, "r", "loss") == [0]


async def test_an_exception_records_failed_with_its_type_and_message(make: MakeTracker) -> None:
    async with make() as tracker:
        with pytest.raises(Boom, match="loss exploded"):
            await train_then_raise(tracker, "r", range(1), Boom("loss exploded at step 3"))
        state = await tracker.get_run("r")
        assert state.status is Status.FAILED
        assert state.status_reason is not None
        assert "Boom" in state.status_reason
        assert "loss exploded at step 3" in state.status_reason
        assert state.ended_at is not None
        assert await steps_of(tracker, "r", "loss") == [0]


async def test_cancelling_the_block_records_aborted(make: MakeTracker) -> None:
    async with make() as tracker:
        with anyio.CancelScope() as scope:
            async with tracker.start_run("cancelled") as run:
                run.log_metrics({"loss": 0.5}, step=0)
                scope.cancel()
                await anyio.sleep(10)
        assert scope.cancelled_caught
        with anyio.move_on_after(0.05) as timeout:
            async with tracker.start_run("timed-out"):
                await anyio.sleep(10)
        assert timeout.cancelled_caught
        for run_id in ("cancelled", "timed-out"):
            state = await tracker.get_run(run_id)
            assert state.status is Status.ABORTED
            assert state.ended_at is not None
        assert await steps_of(tracker, "cancelled", "loss") == [0]


# Resume and rewind ------------------------------------------------------------------------


async def test_resume_reopens_a_terminal_run_and_logging_goes_on(make: MakeTracker) -> None:
    async with make() as tracker:
        with pytest.raises(Boom):
            await train_then_raise(tracker, "r", range(5), Boom("preempted"), config={"lr": 0.1})
        assert (await tracker.get_run("r")).ended_at is not None
        async with tracker.start_run("r", resume=True) as run:
            state = await tracker.get_run("r")
            assert state.status is Status.RUNNING
            assert state.ended_at is None
            assert state.config == {"lr": 0.1}
            with pytest.raises(ValidationError):
                run.log_metrics({"loss": 0.0}, step=4)
            run.log_metrics({"loss": 0.1})  # one more than the highest step: 5
            run.log_metrics({"loss": 0.05}, step=6)
        state = await tracker.get_run("r")
        assert state.status is Status.SUCCEEDED
        assert state.status_reason is None
        assert state.ended_at is not None
        assert await steps_of(tracker, "r", "loss") == [0, 1, 2, 3, 4, 5, 6]
        assert state.metrics["loss"].count == 7


async def test_resume_of_a_missing_run_creates_it(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("fresh", resume=True, config={"seed": 1}) as run:
            assert run.run_id == "fresh"
            run.log_metrics({"m": 1.0})
        state = await tracker.get_run("fresh")
        assert state.status is Status.SUCCEEDED
        assert state.config == {"seed": 1}
        assert await steps_of(tracker, "fresh", "m") == [0]


async def test_an_existing_run_id_without_resume_raises_on_entry(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"m": 1.0}, step=0)
        before = await tracker.get_run("r")
        context = tracker.start_run("r", config={"lr": 1.0})  # nothing is checked in the log yet
        with pytest.raises(RunExistsError):
            async with context:
                pytest.fail("the block ran for a run that already exists")
        after = await tracker.get_run("r")
        assert after == before


async def test_rewind_without_resume_is_a_validation_error(make: MakeTracker) -> None:
    async with make() as tracker:
        with pytest.raises(ValidationError) as caught:
            tracker.start_run("r", rewind_to=3)
        assert caught.value.key == "rewind_to"
        assert await tracker.list_runs() == []


async def test_rewind_hides_later_points_from_reads_but_not_from_the_log(
        make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(10):
                run.log_metrics({"loss": float(10 - step)}, step=step)
            run.log_metrics({"late": 3.0}, step=8)
        before_rewind = (await tracker.get_run("r")).position

        async with tracker.start_run("r", resume=True, rewind_to=4) as run:
            state = await tracker.get_run("r")
            assert await steps_of(tracker, "r", "loss") == [0, 1, 2, 3, 4]
            assert await steps_of(tracker, "r", "late") == []
            assert "late" not in state.metrics
            summary = state.metrics["loss"]
            assert (summary.count, summary.last_step, summary.last) == (5, 4, 6.0)
            assert (summary.min, summary.max) == (6.0, 10.0)
            with pytest.raises(ValidationError) as caught:
                run.log_metrics({"loss": 0.0}, step=4)
            assert caught.value.key == "loss"
            with pytest.raises(ValidationError):
                run.log_metrics({"late": 0.0}, step=2)  # under the rewind step, even if new
            run.log_metrics({"loss": 100.0})  # goes on after the rewind step: 5
            run.log_metrics({"loss": 99.0}, step=6)

        series = await tracker.read_series("r", "loss")
        assert list(zip(series.steps, series.values, strict=True)) == [
            (0, 10.0), (1, 9.0), (2, 8.0), (3, 7.0), (4, 6.0), (5, 100.0), (6, 99.0)]
        summary = (await tracker.get_run("r")).metrics["loss"]
        assert (summary.count, summary.last, summary.max, summary.min) == (7, 99.0, 100.0, 6.0)

        logged: list[tuple[str, Any]] = []
        resumed: list[Any] = []
        async for event in tracker.events():
            if event.type == "MetricsLogged":
                for metric, column in event.data["metrics"].items():
                    logged.extend((metric, step) for step in column["steps"])
            elif event.type == "RunResumed":
                resumed.append(event.data["rewind_to"])
        assert resumed == [4]
        assert [s for m, s in logged if m == "loss"] == [*range(10), 5, 6]
        assert ("late", 8) in logged

        old = await tracker.get_run("r", as_of=before_rewind)
        assert old.status is Status.SUCCEEDED
        assert (old.metrics["loss"].count, old.metrics["loss"].last) == (10, 1.0)
        assert old.metrics["late"].count == 1


# Ids and names ----------------------------------------------------------------------------


async def test_generated_run_ids_and_names(make: MakeTracker) -> None:
    async with make(project="team/proj") as tracker:
        seen = set()
        for _ in range(3):
            async with tracker.start_run() as run:
                assert run.project == "team/proj"
                assert re.fullmatch(r"[a-z0-9]{10}", run.run_id)
                assert re.fullmatch(r"[a-z]+-[a-z]+-\d+", run.name)
                state = await tracker.get_run(run.run_id)
                assert (state.run_id, state.name) == (run.run_id, run.name)
                seen.add(run.run_id)
        assert len(seen) == 3
        async with tracker.start_run("given", name="my label") as run:
            assert (run.run_id, run.name) == ("given", "my label")


# Aborts -----------------------------------------------------------------------------------


async def test_abort_run_cancels_the_body_and_records_aborted(make: MakeTracker) -> None:
    async with make() as tracker:
        reached = False
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks, tracker.start_run("r") as run:
                run.log_metrics({"loss": 1.0}, step=0)
                tasks.start_soon(partial(tracker.abort_run, "r", reason="diverged"))
                await anyio.sleep(30)
                reached = True
        assert not reached
        assert run.abort_requested
        state = await tracker.get_run("r")
        assert state.status is Status.ABORTED
        assert state.status_reason == "diverged"
        assert state.ended_at is not None
        assert await steps_of(tracker, "r", "loss") == [0]


async def test_abort_from_another_tracker_reaches_the_live_run(
        make: MakeTracker, backend: str) -> None:
    needs_shared_database(backend)
    async with make() as tracker, make() as elsewhere:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks, tracker.start_run("r") as run:
                tasks.start_soon(partial(elsewhere.abort_run, "r", reason="from afar"))
                await anyio.sleep(30)
                pytest.fail("the body was not cancelled")
        assert run.abort_requested
        state = await tracker.get_run("r")
        assert (state.status, state.status_reason) == (Status.ABORTED, "from afar")


@pytest.mark.parametrize("looked", [False, True])
@pytest.mark.parametrize("resume", [False, True])
async def test_an_abort_landing_before_the_block_starts_still_reaches_it(
        make: MakeTracker, backend: str, monkeypatch: pytest.MonkeyPatch, resume: bool,
        looked: bool) -> None:
    """Another process aborts the run between its creation (or resume) in the log and the
    moment its block starts watching for aborts — and the tracker has already looked past
    that request in the log (``looked``), or has yet to."""
    needs_shared_database(backend)
    from engine._runtime.liveness import Liveness

    watch = Liveness.watch
    async with make() as tracker, make() as elsewhere:
        if resume:
            async with tracker.start_run("r"):
                pass

        async def abort_first(self: Liveness, run: Any, scope: anyio.CancelScope) -> None:
            await elsewhere.abort_run("r", reason="early")
            if looked:
                await self._catch_up()
                assert self.seen == await elsewhere._store.head()  # looked past the abort
            await watch(self, run, scope)

        monkeypatch.setattr(Liveness, "watch", abort_first)
        with anyio.fail_after(10):
            async with tracker.start_run("r", resume=resume) as run:
                await anyio.sleep(30)
                pytest.fail("the body was not cancelled")
        assert run.abort_requested
        state = await tracker.get_run("r")
        assert (state.status, state.status_reason) == (Status.ABORTED, "early")


async def test_a_block_whose_watch_fails_ends_its_run_and_leaves_the_tracker_usable(
        make: MakeTracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read of a run's abort requests as its block starts fails (the store is down): the
    block does not start, the run ends failed, and the tracker goes on and closes cleanly."""
    from engine._runtime.liveness import Liveness
    from engine.errors import StorageError

    watch = Liveness.watch

    async def failing(self: Liveness, run: Any, scope: anyio.CancelScope) -> None:
        await watch(self, run, scope)
        raise StorageError("the database went away")

    async with make() as tracker:
        monkeypatch.setattr(Liveness, "watch", failing)
        with pytest.raises(StorageError, match="went away"):
            async with tracker.start_run("r"):
                pytest.fail("the block started")
        monkeypatch.setattr(Liveness, "watch", watch)
        state = await tracker.get_run("r")
        assert (state.status, state.status_reason) == (
            Status.FAILED, "StorageError: the database went away")
        async with tracker.start_run("s") as run:
            run.log_metrics({"loss": 1.0}, step=0)
        assert (await tracker.get_run("s")).status == Status.SUCCEEDED


async def test_abort_run_on_a_finished_run_changes_nothing(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"m": 1.0}, step=0)
        before = await tracker.get_run("r")
        count = len([e async for e in tracker.events()])
        await tracker.abort_run("r", reason="too late")
        assert await tracker.get_run("r") == before
        assert len([e async for e in tracker.events()]) == count
        with pytest.raises(RunNotFoundError):
            await tracker.abort_run("no-such-run")


# Deletion and experiments -----------------------------------------------------------------


async def test_deleted_runs_leave_list_runs_unless_asked_for(make: MakeTracker) -> None:
    async with make() as tracker:
        for run_id in ("a", "b", "c"):
            async with tracker.start_run(run_id):
                pass
        await tracker.delete_run("b")
        await tracker.delete_run("b")  # twice is harmless
        state = await tracker.get_run("b")
        assert state.deleted
        assert [s.run_id for s in await tracker.list_runs()] == ["a", "c"]
        everything = await tracker.list_runs(include_deleted=True)
        assert [s.run_id for s in everything] == ["a", "b", "c"]
        assert [s.deleted for s in everything] == [False, True, False]
        with pytest.raises(RunNotFoundError):
            await tracker.delete_run("no-such-run")


async def test_experiment_head_history_and_deleting_the_head(make: MakeTracker) -> None:
    async with make() as tracker:
        for run_id in ("first", "second", "third"):
            async with tracker.start_run(run_id, experiment="gull-flying"):
                pass
            assert (await tracker.get_experiment("gull-flying")).head == run_id
        async with tracker.start_run("elsewhere", experiment="other"):
            pass
        exp = await tracker.get_experiment("gull-flying")
        assert exp == engine.Experiment("gull-flying", "third", ("first", "second", "third"))
        await tracker.delete_run("third")
        exp = await tracker.get_experiment("gull-flying")
        assert exp.head == "second"
        assert exp.history == ("first", "second", "third")
        await tracker.delete_run("first")
        assert (await tracker.get_experiment("gull-flying")).head == "second"
        await tracker.delete_run("second")
        assert (await tracker.get_experiment("gull-flying")).head is None
        assert (await tracker.get_experiment("other")).head == "elsewhere"
        assert await tracker.get_experiment("never-used") == engine.Experiment(
            "never-used", None, ())


# The reaper -------------------------------------------------------------------------------

_DIE_MID_RUN = """
import os, sys
import anyio, engine

async def main():
    tracker = engine.connect(sys.argv[1], durability="normal", heartbeat_interval=0.01,
                             crash_timeout=60)
    await tracker.__aenter__()
    await tracker.start_run("ghost").__aenter__()
    await anyio.sleep(0.05)  # a few heartbeats
    os._exit(0)  # the machine goes away: no terminal status, no more heartbeats

anyio.run(main)
"""


async def test_the_reaper_crashes_silent_runs_and_spares_live_ones(
        make: MakeTracker, backend: str, db_url: str) -> None:
    needs_shared_database(backend)
    clock = FakeClock()
    async with make(clock=clock, crash_timeout=60, reap_interval=0.05,
                    heartbeat_interval=0.05) as tracker:
        died = await anyio.run_process([sys.executable, "-c", _DIE_MID_RUN, db_url],
                                       check=False, stderr=subprocess.STDOUT)
        assert died.returncode == 0, died.stdout.decode()
        assert (await tracker.get_run("ghost")).status is Status.RUNNING
        async with tracker.start_run("alive") as run:
            run.log_metrics({"m": 1.0}, step=0)
            await run.flush()
            clock.now += 30
            await anyio.sleep(0.2)  # several reaper passes, still within the timeout
            assert (await tracker.get_run("ghost")).status is Status.RUNNING

            clock.now += 60  # past the timeout for the ghost and for the idle live run
            # Every read judges the ghost crashed at once; the reaper then records it.
            assert (await tracker.get_run("ghost")).status is Status.CRASHED
            with anyio.fail_after(10):
                while True:
                    ghost = await tracker.get_run("ghost")
                    if ghost.ended_at is not None:
                        break
                    await anyio.sleep(0.01)
            assert ghost.status is Status.CRASHED
            assert ghost.status_reason == "no heartbeat for 60 s"
            assert (await tracker.get_run("alive")).status is Status.RUNNING
            run.log_metrics({"m": 2.0}, step=1)
        assert (await tracker.get_run("alive")).status is Status.SUCCEEDED
        assert await steps_of(tracker, "alive", "m") == [0, 1]


async def _wait_until(check: Any, what: str, within: float = 10.0) -> None:
    """Poll ``check`` until it holds (a liveness wait, not a timed assertion)."""
    with anyio.move_on_after(within):
        while True:
            if await check():
                return
            await anyio.sleep(0.01)
    pytest.fail(f"still waiting after {within:g} s for {what}")


async def test_a_run_beating_in_one_tracker_survives_another_trackers_reaper(
        make: MakeTracker, backend: str) -> None:
    """Across trackers only the heartbeat tells a live run from a dead one: past the timeout,
    the reaper of a tracker that does not hold the runs crashes the one whose tracker stopped
    beating and spares the one still beating elsewhere."""
    needs_shared_database(backend)
    clock = FakeClock()
    # Both runs promise a 60 s timeout; only the first tracker beats within the test.
    async with make(clock=clock, heartbeat_interval=0.02, crash_timeout=60) as beating, \
            make(clock=clock, heartbeat_interval=50, crash_timeout=60) as quiet:
        async with beating.start_run("alive") as alive, quiet.start_run("silent") as silent:
            alive.log_metrics({"m": 1.0}, step=0)
            silent.log_metrics({"m": 1.0}, step=0)
            await alive.flush()
            await silent.flush()
            # From here on neither run logs: no event moves their updated_at past the clock.
            clock.now += 100
            store = beating._store
            assert store is not None

            async def beaten_since_the_jump() -> bool:
                # Silent for longer than its 60 s as of ``now + 59``: no beat since ``now - 1``.
                stale = await store.stale_runs(clock.now + 59, 60)
                return "alive" not in {s.run_id for s in stale}

            await _wait_until(beaten_since_the_jump, "a heartbeat of 'alive'")
            async with make(clock=clock, crash_timeout=60, reap_interval=0.01,
                            heartbeat_interval=30) as reaping:

                async def silent_crashed() -> bool:
                    state = await reaping.get_run("silent")
                    return state.status is not Status.RUNNING

                await _wait_until(silent_crashed, "the reaper to crash 'silent'")
                # The pass that crashed 'silent' saw 'alive' with the same clock: spared.
                assert (await reaping.get_run("silent")).status is Status.CRASHED
                assert (await reaping.get_run("alive")).status is Status.RUNNING
                assert "no heartbeat" in ((await reaping.get_run("silent")).status_reason or "")
            alive.log_metrics({"m": 2.0}, step=1)
        assert (await beating.get_run("alive")).status is Status.SUCCEEDED
        assert await steps_of(beating, "alive", "m") == [0, 1]


# Backpressure -----------------------------------------------------------------------------


async def test_backpressure_past_the_pending_bound_then_flush_frees_it(
        make: MakeTracker) -> None:
    async with make(max_pending_points=10) as tracker, tracker.start_run("r") as run:
        for step in range(10):
            run.log_metrics({"m": float(step)}, step=step)
        with pytest.raises(BackpressureError):
            run.log_metrics({"m": 10.0}, step=10)
        await run.flush()
        for step in range(10, 19):
            run.log_metrics({"m": float(step)}, step=step)
        with pytest.raises(BackpressureError):  # two points, one slot: neither is taken
            run.log_metrics({"m": 19.0, "other": 1.0}, step=19)
        run.log_metrics({"m": 19.0}, step=19)
        await run.flush()
        series = await tracker.read_series("r", "m")
        assert series.steps.tolist() == list(range(20))
        assert series.values.tolist() == [float(s) for s in range(20)]
        assert await steps_of(tracker, "r", "other") == []


async def test_configs_and_tags_count_against_the_pending_bound(make: MakeTracker) -> None:
    async with make(max_pending_points=10) as tracker:
        async with tracker.start_run("r") as run:
            refused: BackpressureError | None = None
            for i in range(1_000):
                try:
                    run.add_tags(f"t{i}")
                except BackpressureError as exc:
                    refused = exc
                    break
            assert i == 10, "one point per tag: the 11th is refused"
            assert refused is not None
            assert "limit is 10" in str(refused)
            with pytest.raises(BackpressureError):
                run.log_configs({"lr": 0.1})
            with pytest.raises(BackpressureError):
                run.remove_tags("t0")
            with pytest.raises(BackpressureError):
                run.log_metrics({"m": 1.0}, step=0)
            await run.flush()
            run.log_configs({f"k{i}": i for i in range(10)})  # ten keys, ten points: fits
            with pytest.raises(BackpressureError):
                run.add_tags("over")
            await run.flush()
            with pytest.raises(BackpressureError):  # alone over the bound: never taken
                run.log_configs({f"k{i}": -i for i in range(11)})
            run.remove_tags("t0", "t1")
            for i in range(8):
                run.add_tags(f"late{i}")
            # The buffer is full as the block ends: the final status still goes in.
        state = await tracker.get_run("r")
        assert state.status is Status.SUCCEEDED
        assert state.tags == {f"t{i}" for i in range(2, 10)} | {f"late{i}" for i in range(8)}
        assert state.config == {f"k{i}": i for i in range(10)}


def test_the_sync_facade_waits_instead_of_raising_for_configs_and_tags(file_url: str) -> None:
    with engine.sync.connect(file_url, durability="normal", max_pending_points=10,
                             batch_points=5) as tracker:
        with tracker.start_run("r") as run:
            for i in range(300):
                run.add_tags(f"t{i}")
                if i % 3 == 0:
                    run.log_configs({"step": i, "half": i // 2})
                    run.remove_tags(f"t{i}")
            with pytest.raises(BackpressureError):  # alone over the bound: waiting cannot help
                run.log_configs({f"k{i}": i for i in range(11)})
        state = tracker.get_run("r")
        assert state.tags == {f"t{i}" for i in range(300) if i % 3}
        assert state.config == {"step": 297, "half": 148}


# Closed handles and trackers --------------------------------------------------------------


async def test_a_run_handle_is_closed_after_its_block(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"m": 1.0}, step=0)
        version = (await tracker.get_run("r")).version
        with pytest.raises(ClosedError):
            run.log_metrics({"m": 2.0}, step=1)
        with pytest.raises(ClosedError):
            run.log_configs({"lr": 0.1})
        with pytest.raises(ClosedError):
            run.add_tags("late")
        with pytest.raises(ClosedError):
            run.remove_tags("late")
        await run.flush()
        assert (await tracker.get_run("r")).version == version


async def test_a_closed_tracker_refuses_every_call(make: MakeTracker) -> None:
    tracker = make()
    async with tracker, tracker.start_run("r"):
        pass
    assert tracker.closed
    with pytest.raises(ClosedError):
        await tracker.get_run("r")
    with pytest.raises(ClosedError):
        await tracker.list_runs()
    with pytest.raises(ClosedError):
        await tracker.read_series("r", "m")
    with pytest.raises(ClosedError):
        await tracker.abort_run("r")
    with pytest.raises(ClosedError):
        await tracker.delete_run("r")
    with pytest.raises(ClosedError):
        await tracker.get_experiment("x")
    with pytest.raises(ClosedError):
        async with tracker.start_run("s"):
            pass
    with pytest.raises(ClosedError):
        async for _ in tracker.events():
            pass


async def test_a_tracker_opens_once(make: MakeTracker) -> None:
    tracker = make()
    async with tracker:
        with pytest.raises(ClosedError):
            await tracker.__aenter__()
        assert await tracker.list_runs() == []
    with pytest.raises(ClosedError):
        async with tracker:
            pass


async def test_a_tracker_opened_and_closed_at_once_closes_cleanly(make: MakeTracker) -> None:
    async with make():
        pass
    tracker = make()
    async with tracker:
        pass
    assert tracker.closed


async def test_a_plain_with_on_an_async_tracker_points_at_the_sync_facade(
        make: MakeTracker) -> None:
    tracker = make()
    with pytest.raises(TypeError, match=r"engine\.sync\.connect"), tracker:
        pytest.fail("a plain with opened the async tracker")
    async with tracker:  # nothing was opened: the tracker can still be used as intended
        assert not tracker.closed
