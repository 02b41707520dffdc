"""The logging hot path and its slow path agree: whatever the shape of the calls, the series
are exactly what was logged, and a rejected call writes nothing."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine._runtime.buffer import EVENT_POINTS
from tests.conftest import MakeTracker

# Every test here runs with the compiled core of the hot path and with its Python twin.
pytestmark = pytest.mark.usefixtures("hot_path")


class Float(float):
    """A float subclass, as numpy.float64 is."""


async def test_key_order_and_key_sets_can_change_between_calls(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"a": 1.0, "b": 2.0}, step=0)
            run.log_metrics({"b": 3.0, "a": 4.0}, step=1)  # same keys, other order
            run.log_metrics({"a": 5.0, "c": 6.0}, step=2)  # another key set
            run.log_metrics({"a": 7.0, "b": 8.0}, step=3)  # back to the first
            run.log_metrics({"c": 9.0}, step=4)
        a = await tracker.read_series("r", "a")
        b = await tracker.read_series("r", "b")
        c = await tracker.read_series("r", "c")
        assert (list(a.steps), list(a.values)) == ([0, 1, 2, 3], [1.0, 4.0, 5.0, 7.0])
        assert (list(b.steps), list(b.values)) == ([0, 1, 3], [2.0, 3.0, 8.0])
        assert (list(c.steps), list(c.values)) == ([2, 4], [6.0, 9.0])


@pytest.mark.parametrize("bad", [True, None, "1.0", 2**2000, [1.0], Float("nan")])
async def test_a_bad_value_on_the_fast_path_writes_nothing(make: MakeTracker,
                                                          bad: object) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(3):  # establish the fast path for keys (a, b)
                run.log_metrics({"a": 1.0, "b": 2.0}, step=step)
            if isinstance(bad, Float):  # a float subclass is a number: accepted, converted
                run.log_metrics({"a": bad, "b": 3.0}, step=3)
                await run.flush()
                series = await tracker.read_series("r", "a")
                assert type(series.values[3]) is float
                return
            with pytest.raises(engine.errors.ValidationError) as raised:
                run.log_metrics({"a": 1.0, "b": bad}, step=3)
            assert raised.value.key == "b"
            run.log_metrics({"a": 1.5, "b": 2.5}, step=3)  # the step was not used up
        a = await tracker.read_series("r", "a")
        assert list(a.values) == [1.0, 1.0, 1.0, 1.5]


async def test_ints_ride_the_fast_path_as_floats(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(5):
                run.log_metrics({"epoch": step // 2, "loss": 0.5}, step=step)
        epoch = await tracker.read_series("r", "epoch")
        assert list(epoch.values) == [0.0, 0.0, 1.0, 1.0, 2.0]
        assert all(type(v) is float for v in epoch.values)


async def test_a_repeated_step_on_the_fast_path_names_the_metric(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        run.log_metrics({"a": 1.0, "b": 2.0}, step=10)
        with pytest.raises(engine.errors.ValidationError, match=r"'a'.*step 10.*is 10"):
            run.log_metrics({"a": 1.0, "b": 2.0}, step=10)


async def test_a_large_flush_is_cut_into_events_of_bounded_size(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(30_000):  # 300,000 points, logged without awaiting
                run.log_metrics({f"m{i}": float(step + i) for i in range(10)}, step=step)
        sizes = [sum(len(c["values"]) for c in e.data["metrics"].values())
                 async for e in tracker.events() if e.type == "MetricsLogged"]
        assert sum(sizes) == 300_000
        assert max(sizes) <= EVENT_POINTS
        m7 = await tracker.read_series("r", "m7")
        assert list(m7.values) == [float(s + 7) for s in range(30_000)]


# Batching by time and by size -----------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds: a liveness wait with a generous limit, not a timing."""
    with anyio.move_on_after(10):
        while True:
            if await check():
                return
            await anyio.sleep(0.005)
    pytest.fail(f"still waiting after 10 s for {what}")


async def points(tracker: engine.Tracker, metric: str) -> int:
    return len(await tracker.read_series("r", metric))


async def test_a_batch_commits_without_flush_once_the_interval_passes(
        make: MakeTracker) -> None:
    async with make(flush_interval=0.01, batch_points=1_000_000) as tracker, \
            tracker.start_run("r") as run:
        run.log_metrics({"m": 1.0}, step=0)
        run.add_tags("gpu")

        async def committed() -> bool:
            return await points(tracker, "m") == 1 and "gpu" in (await tracker.get_run("r")).tags

        await eventually(committed, "the writer to commit after flush_interval")


async def test_a_batch_waits_for_the_interval_while_it_is_small(make: MakeTracker) -> None:
    async with make(flush_interval=3600, batch_points=1_000_000) as tracker, \
            tracker.start_run("r") as run:
        run.log_metrics({"m": 1.0}, step=0)
        await anyio.wait_all_tasks_blocked()  # the writer now waits for more (or a flush)
        assert await points(tracker, "m") == 0
        await run.flush()
        assert await points(tracker, "m") == 1


async def test_a_batch_commits_without_flush_once_it_reaches_batch_points(
        make: MakeTracker) -> None:
    async with make(flush_interval=3600, batch_points=10) as tracker, \
            tracker.start_run("r") as run:
        for step in range(4):  # 8 points on the fast path: below the batch size
            run.log_metrics({"a": 1.0, "b": 2.0}, step=step)
        await anyio.wait_all_tasks_blocked()
        assert await points(tracker, "a") == 0
        run.log_metrics({"a": 1.0, "b": 2.0}, step=4)  # the 10th point

        async def five() -> bool:
            return await points(tracker, "a") == 5

        await eventually(five, "a commit at 10 buffered points (fast path)")

        run.log_metrics({"c": 1.0}, step=5)  # the slow path: other keys
        await anyio.wait_all_tasks_blocked()
        assert await points(tracker, "c") == 0
        run.log_metrics({f"k{i}": 1.0 for i in range(9)}, step=6)

        async def slow() -> bool:
            return await points(tracker, "c") == 1

        await eventually(slow, "a commit at 10 buffered points (slow path)")

        run.log_configs({f"p{i}": i for i in range(10)})  # ten keys count as ten points

        async def configs() -> bool:
            return len((await tracker.get_run("r")).config) == 10

        await eventually(configs, "a commit at 10 buffered config keys")


def test_threads_logging_into_their_own_runs() -> None:
    with engine.sync.connect(":memory:", max_pending_points=5_000) as tracker:
        def train(run_id: str) -> None:
            with tracker.start_run(run_id) as run:
                for step in range(20_000):
                    run.log_metrics({"loss": float(step), "acc": -float(step)}, step=step)

        threads = [threading.Thread(target=train, args=(f"t{i}",)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for i in range(3):
            series = tracker.read_series(f"t{i}", "acc")
            assert list(series.steps) == list(range(20_000))
            assert list(series.values) == [-float(s) for s in range(20_000)]


calls = st.lists(st.tuples(
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True),
    st.integers(1, 2),
), min_size=1, max_size=40)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shapes=calls)
def test_any_sequence_of_call_shapes_reads_back_exactly(shapes: list[tuple[list[str], int]]
                                                        ) -> None:
    expected: dict[str, list[tuple[int, float]]] = {"a": [], "b": [], "c": []}
    with engine.sync.connect(":memory:") as tracker:
        with tracker.start_run("r") as run:
            step = 0
            for keys, gap in shapes:
                step += gap
                run.log_metrics({k: float(step * 10 + i) for i, k in enumerate(keys)}, step=step)
                for i, k in enumerate(keys):
                    expected[k].append((step, float(step * 10 + i)))
        for key, points in expected.items():
            series = tracker.read_series("r", key)
            assert list(zip(series.steps, series.values, strict=True)) == points
