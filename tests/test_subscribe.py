"""Subscriptions see the log exactly once, in order, from any position, whatever interleaves."""

from __future__ import annotations

import gc
import io
import sys
import textwrap
import tracemalloc
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine._store import EventFilter, Store
from engine._subscribe import Subscription
from engine._tail import sparkline, tail
from tests.conftest import MakeTracker


class GatedStore:
    """Delegates to a real store; ``read`` and ``append`` can be held at a gate."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.read_gate: anyio.Event | None = None
        self.reading = anyio.Event()
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def read(self, after: int, **options: Any) -> Any:
        self.reads += 1
        self.reading.set()
        if self.read_gate is not None:
            await self.read_gate.wait()
        return await self._store.read(after, **options)


def subscription(tracker: engine.Tracker, store: Any, start: int | str = "start",
                 buffer_points: int = 1_000_000) -> Subscription:
    return Subscription(store, tracker._hub, EventFilter(project=tracker.project), None, start,
                        buffer_points)


async def positions(tracker: engine.Tracker, after: int = 0) -> list[int]:
    return [e.position async for e in tracker.events(after)]


async def collect_until(sub: Subscription, head: int, into: list[int]) -> None:
    async for event in sub:
        into.append(event.position)
        if event.position >= head:
            return
    raise AssertionError("the subscription ended early")


# The property ----------------------------------------------------------------------------

operations = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(0, 1), st.integers(1, 4)),
    st.tuples(st.just("subscribe"), st.sampled_from(["start", "live", "int"]),
              st.sampled_from([1, 3, 10**6])),
    st.tuples(st.just("yield"), st.integers(0, 3), st.just(0)),
), min_size=1, max_size=25)


@given(ops=operations)
async def test_every_subscriber_sees_exactly_the_log_after_its_start(tmp_path_factory: Any,
                                                                     ops: list[Any]) -> None:
    path = str(tmp_path_factory.mktemp("prop") / "p.db")
    # Two trackers on one file: the second is "another process" whose commits reach the
    # first tracker's subscribers only through the log and the head doorbell.
    async with engine.connect(path, durability="normal", flush_interval=0.001,
                              poll_interval=0.002) as main, \
            engine.connect(path, durability="normal", flush_interval=0.001) as other:
        writers = [main, other]
        subscribers: list[tuple[int, Drain]] = []
        count = 0
        async with anyio.create_task_group() as tasks:
            for op, a, b in ops:
                if op == "append":
                    for _ in range(b):
                        count += 1
                        async with writers[a].start_run(f"r{count}") as run:
                            run.log_metrics({"m": float(count)}, step=0)
                elif op == "subscribe":
                    head = (await positions(main))[-1:] or [0]
                    start: int | str = head[0] // 2 if a == "int" else a
                    sub = subscription(main, main._store, start, buffer_points=b)
                    at = await sub.wait_caught_up() if a == "live" else \
                        (0 if a == "start" else int(start))
                    if a == "live":
                        at = sub.position
                    drain = Drain(sub)
                    subscribers.append((at, drain))
                    tasks.start_soon(drain.run)
                else:
                    for _ in range(a):
                        await anyio.lowlevel.checkpoint()
            log = await positions(main)
            with anyio.fail_after(30):
                for at, drain in subscribers:
                    await drain.until(len([p for p in log if p > at]))
            tasks.cancel_scope.cancel()
        for at, drain in subscribers:
            assert drain.seen == [p for p in log if p > at]


class Drain:
    """Consumes a subscription in a task; ``until(n)`` waits for n events."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.seen: list[int] = []
        self._target: int | None = None
        self._reached = anyio.Event()

    async def run(self) -> None:
        async for event in self.sub:
            self.seen.append(event.position)
            self._check()

    def _check(self) -> None:
        if self._target is not None and len(self.seen) >= self._target:
            self._reached.set()

    async def until(self, count: int) -> None:
        self._target = count
        self._check()
        await self._reached.wait()


# Deterministic interleavings -------------------------------------------------------------

async def test_a_commit_during_catch_up_is_seen_once(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("a") as run:
            for step in range(5):
                run.log_metrics({"m": 1.0}, step=step)
                await run.flush()
        store = GatedStore(tracker._store)  # type: ignore[arg-type]
        store.read_gate = anyio.Event()
        sub = subscription(tracker, store)
        drain = Drain(sub)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(drain.run)
            await store.reading.wait()  # the catch-up read has begun, and is held
            async with tracker.start_run("b") as run:  # commits while it is held
                run.log_metrics({"m": 2.0}, step=0)
            await anyio.wait_all_tasks_blocked()
            store.read_gate.set()
            log = await positions(tracker)
            with anyio.fail_after(10):
                await drain.until(len(log))
            tasks.cancel_scope.cancel()
        assert drain.seen == log


async def test_an_overflow_while_live_falls_back_to_the_log(make: MakeTracker) -> None:
    async with make() as tracker:
        store = GatedStore(tracker._store)  # type: ignore[arg-type]
        sub = subscription(tracker, store, "live", buffer_points=5)
        await sub.wait_caught_up()
        reads_before = store.reads
        async with tracker.start_run("a") as run:  # the subscriber does not read meanwhile
            for step in range(50):
                run.log_metrics({"m": float(step)}, step=step)
                await run.flush()
        assert sub._queued_points <= 5 or len(sub._queue) == 1
        log = await positions(tracker)
        seen: list[int] = []
        with anyio.fail_after(10):
            await collect_until(sub, log[-1], seen)
        assert seen == log
        assert store.reads > reads_before  # it went back to the log for what it missed


async def test_a_cancellation_during_a_commit_commits_once(make: MakeTracker) -> None:
    async with make() as tracker:
        sub = subscription(tracker, tracker._store, "live")
        await sub.wait_caught_up()
        store = tracker._store
        assert store is not None
        gate = anyio.Event()
        entered = anyio.Event()
        real = store.append

        async def held(requests: Sequence[Any], *, now: float) -> Any:
            entered.set()
            await gate.wait()
            return await real(requests, now=now)

        async with tracker.start_run("a") as run:
            store.append = held  # type: ignore[method-assign]
            with anyio.CancelScope() as scope:
                run.log_metrics({"m": 1.0}, step=0)
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(run.flush)
                    await entered.wait()
                    scope.cancel()  # the flusher goes away while its commit is in flight
            store.append = real  # type: ignore[method-assign]
            gate.set()
            await run.flush()
        log = await positions(tracker)
        seen: list[int] = []
        with anyio.fail_after(10):
            await collect_until(sub, log[-1], seen)
        assert seen == log
        assert (await tracker.get_run("a")).metrics["m"].count == 1


async def test_subscriptions_end_cleanly_when_the_tracker_closes(make: MakeTracker) -> None:
    ended = anyio.Event()

    async def follow(sub: Subscription) -> None:
        async for _ in sub:
            pass
        ended.set()

    async with anyio.create_task_group() as tasks:
        async with make() as tracker:
            sub = tracker.subscribe(from_position="live")
            tasks.start_soon(follow, sub)
            await sub.wait_caught_up()
            await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(10):
            await ended.wait()


async def test_filters_and_metric_trimming(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("a") as run:
            run.log_metrics({"loss": 1.0, "acc": 0.5}, step=0)
            run.log_metrics({"acc": 0.6}, step=1)
        async with tracker.start_run("b") as run:
            run.log_metrics({"loss": 2.0}, step=0)
        head = (await positions(tracker))[-1]
        sub = tracker.subscribe(runs=["a"], metrics=["loss"])
        got = []
        async for event in sub:
            got.append((event.run_id, event.type, dict(event.data)))
            if sub.position >= head:
                break
        stamps = got[0][2]["metrics"]["loss"]["timestamps"]
        assert got == [("a", "MetricsLogged", {"metrics": {"loss": {
            "steps": [0], "values": [1.0], "timestamps": stamps}}})]
        types = tracker.subscribe(types=["StatusChanged"])
        statuses = []
        async for event in types:
            statuses.append(event.run_id)
            if len(statuses) == 2:
                break
        assert statuses == ["a", "b"]
        with pytest.raises(engine.errors.ValidationError):
            tracker.subscribe(from_position=-1)


@pytest.mark.slow
async def test_a_sleeping_subscriber_keeps_memory_flat_and_gets_every_point(
        file_url: str) -> None:
    names = [f"m{i}" for i in range(10)]
    async with engine.connect(file_url, durability="normal") as tracker:
        sub = tracker.subscribe(runs=["big"], types=["MetricsLogged"], from_position="live",
                                buffer_points=50_000)
        await sub.wait_caught_up()
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            async with tracker.start_run("big") as run:  # 10 metrics x 100,000 steps
                for step in range(100_000):
                    run.log_metrics(dict.fromkeys(names, float(step)), step=step)
                    if step % 2_000 == 1_999:
                        await run.flush()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # Holding every point would take about 27 MB (measured); the writer's own batches and
        # the subscriber's 50,000-point buffer come to about 5 MB.
        assert peak - base < 12 * 2**20, f"{(peak - base) / 2**20:.1f} MB while sleeping"
        assert sub._queued_points <= 50_000
        seen = dict.fromkeys(names, 0)
        async for event in sub:
            for name, column in event.data["metrics"].items():
                assert column["values"] == [float(s) for s in column["steps"]]
                assert column["steps"][0] == seen[name]
                seen[name] += len(column["steps"])
            if sum(seen.values()) == 1_000_000:
                break
        assert seen == dict.fromkeys(names, 100_000)


# Across processes ------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import asyncio, sys
    import engine

    async def main(path):
        async with engine.connect(path, durability="normal") as tracker:
            async with tracker.start_run("remote") as run:
                for step in range(20):
                    run.log_metrics({"m": float(step)}, step=step)
                    await asyncio.sleep(0.005)

    asyncio.run(main(sys.argv[1]))
""")

ABORTABLE = textwrap.dedent("""
    import asyncio, sys
    import anyio, engine

    async def main(path):
        async with engine.connect(path, durability="normal") as tracker:
            async with tracker.start_run("victim") as run:
                run.log_metrics({"m": 1.0}, step=0)
                await run.flush()
                print("started", flush=True)
                await anyio.sleep(60)
            print("aborted" if run.abort_requested else "finished", flush=True)

    asyncio.run(main(sys.argv[1]))
""")


async def test_a_writer_in_another_process_is_seen_by_subscribers(file_url: str) -> None:
    async with engine.connect(file_url) as tracker:
        sub = tracker.subscribe(runs=["remote"], from_position="live")
        await sub.wait_caught_up()
        child = await anyio.open_process([sys.executable, "-c", WRITER, file_url])
        steps: list[int] = []
        with anyio.fail_after(30):
            async for event in sub:
                if event.type == "MetricsLogged":
                    steps.extend(event.data["metrics"]["m"]["steps"])
                if event.type == "StatusChanged":
                    break
        await child.wait()
        await child.aclose()
        assert steps == list(range(20))


async def test_abort_from_another_process_cancels_the_body(file_url: str) -> None:
    async with await anyio.open_process([sys.executable, "-c", ABORTABLE, file_url]) as child:
        assert child.stdout is not None
        lines = BufferedByteReceiveStream(child.stdout)
        with anyio.fail_after(30):
            assert await lines.receive_until(b"\n", 100) == b"started"
            async with engine.connect(file_url) as tracker:
                await tracker.abort_run("victim", reason="diverged")
            assert await lines.receive_until(b"\n", 100) == b"aborted"
            assert await child.wait() == 0
    async with engine.connect(file_url) as tracker:
        state = await tracker.get_run("victim")
        assert state.status == "aborted"
        assert state.status_reason == "diverged"


# kittiwake tail --------------------------------------------------------------------------

async def test_tail_follows_a_run_until_it_ends(make: MakeTracker) -> None:
    async with make() as tracker:
        out = io.StringIO()
        status: list[str] = []

        async def watch() -> None:
            status.append(await tail(tracker, "watched", out))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks, \
                    tracker.start_run("watched") as run:
                run.log_metrics({"loss": 1.0}, step=0)
                await run.flush()
                tasks.start_soon(watch)
                for step in range(1, 31):
                    run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 30}, step=step)
                    await run.flush()
                await anyio.wait_all_tasks_blocked()
                assert status == []  # still following while the run is running
        assert status == ["succeeded"]
        text = out.getvalue()
        assert "acc" in text
        assert "0.0322581" in text  # the last loss, 1/31
        assert "ended: succeeded" in text


def test_sparkline_shows_the_shape() -> None:
    assert sparkline([0.0, 1.0, 2.0, 3.0]) == "▁▃▆█"
    assert sparkline([float("nan"), 1.0]) == " ▁"
    assert sparkline([]) == ""
