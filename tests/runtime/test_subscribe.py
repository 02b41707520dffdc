"""Subscriptions see the log exactly once, in order, from any position; they catch up with
their history as their consumer receives it, and "live" starts at the log's real head."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

import engine
from engine._runtime.subscriptions import Subscription
from engine._storage.contract import Store
from engine.errors import ClosedError
from tests.conftest import MakeTracker
from tests.subscribing import (
    Drain,
    GatedStore,
    collect_until,
    head_of,
    needs_shared_database,
    positions,
    subscription,
    write_run,
)

# Catching up -----------------------------------------------------------------------------

async def history(tracker: engine.Tracker) -> None:
    """Run ``a`` (seven events), then run ``b`` (five) after it in the log."""
    await write_run(tracker, "a", 5)
    await write_run(tracker, "b", 3)


@pytest.mark.parametrize(("kind", "page"), [("start", 1), ("int", 1), ("start", 64)])
async def test_caught_up_flips_as_the_consumer_receives_the_last_history_event(
        make: MakeTracker, kind: str, page: int) -> None:
    async with make() as tracker:
        await history(tracker)
        log = [e async for e in tracker.events()]
        after = 0 if kind == "start" else log[2].position
        mine = [e.position for e in log if e.run_id == "a" and e.position > after]
        # With pages of one event, knowing that the last of ``a``'s events is the last of
        # the history takes one more read, past ``b``'s events to the head; with pages of
        # 64, one read holds all of the history, long before the consumer has it.
        store = GatedStore(tracker._store)  # type: ignore[arg-type]
        sub = subscription(tracker, store, after if kind == "int" else "start", page=page,
                           runs={"a"})
        waited: list[int] = []

        async def wait() -> None:
            waited.append(await sub.wait_caught_up())

        got = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                first = await sub.__anext__()
                got.append((first.position, sub.caught_up))
                tasks.start_soon(wait)
                for _ in mine[1:]:
                    await anyio.wait_all_tasks_blocked()
                    assert waited == []  # the consumer has not had the whole history yet
                    event = await sub.__anext__()
                    got.append((event.position, sub.caught_up))
        assert got == [(p, p == mine[-1]) for p in mine]
        assert waited == [log[-1].position]
        assert store.reads == (len(mine) + 1 if page == 1 else 1)


async def test_wait_caught_up_without_a_consumer(make: MakeTracker) -> None:
    async with make() as tracker:
        await history(tracker)
        head = await head_of(tracker)
        with anyio.fail_after(30):
            # Nothing in the history for it: it reads on the consumer's behalf and returns.
            nobody = tracker.subscribe(runs=["nobody"], from_position="start")
            assert await nobody.wait_caught_up() == head
            assert nobody.caught_up
            at_head = tracker.subscribe(from_position=head)
            assert await at_head.wait_caught_up() == head
            # History the consumer must receive first: waiting here would never end.
            everything = tracker.subscribe(from_position="start")
            with pytest.raises(RuntimeError, match="iterate it"):
                await everything.wait_caught_up()
            seen: list[int] = []
            await collect_until(everything, head, seen)
            assert seen == await positions(tracker)
            assert everything.caught_up
            assert await everything.wait_caught_up() == head


def test_the_sync_facade_catches_up_in_its_own_thread(file_url: str) -> None:
    with engine.sync.connect(file_url, durability="normal") as tracker:
        with tracker.start_run("a") as run:
            run.log_metrics({"m": 1.0}, step=0)
        sub = tracker.subscribe(from_position="start")
        with pytest.raises(RuntimeError):
            sub.wait_caught_up()  # this thread has the history to receive first
        log = [e.position for e in tracker.events()]
        flips = []
        for event in sub:
            flips.append((event.position, sub.caught_up))
            if event.position == log[-1]:
                break
        assert flips == [(p, p == log[-1]) for p in log]
        assert sub.wait_caught_up() == log[-1]
        sub.close()


async def test_a_live_subscription_starts_at_the_logs_real_head(
        make: MakeTracker, backend: str) -> None:
    needs_shared_database(backend)
    async with make(poll_interval=0.005) as here, make() as elsewhere:
        # ``here`` has nothing to follow the head for: it has not looked at it since it opened.
        await write_run(elsewhere, "before", 3)
        head = await head_of(here)
        sub = here.subscribe(from_position="live")
        assert await sub.wait_caught_up() == head
        await write_run(elsewhere, "after", 2)
        log = await positions(here)
        seen: list[int] = []
        with anyio.fail_after(30):
            await collect_until(sub, log[-1], seen)
        assert seen == [p for p in log if p > head]


class AfterAppendGate:
    """A store whose next append, once durable, waits before its caller hears of it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.landed = anyio.Event()
        self.release = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append(self, requests: Any, **options: Any) -> Any:
        result = await self._store.append(requests, **options)
        if not self.release.is_set():
            self.landed.set()
            await self.release.wait()
        return result


class HeadGate:
    """A store whose reads of the head wait until the test releases them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.release = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def head(self) -> int:
        await self.release.wait()
        return await self._store.head()


async def test_a_commit_landing_as_a_live_subscription_is_made_is_history(
        make: MakeTracker) -> None:
    """A commit of this tracker that is durable before ``subscribe("live")``, but whose
    commit hook runs after it, is history: it is not delivered."""
    async with make() as tracker:
        writer, store = tracker._writer, tracker._store
        assert writer is not None
        assert store is not None
        gate = AfterAppendGate(store)
        writer.store = gate  # type: ignore[assignment]
        heads = HeadGate(store)
        tracker._store = heads  # type: ignore[assignment]  # the subscription's start waits
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(write_run, tracker, "late", 2)
            with anyio.fail_after(30):
                await gate.landed.wait()  # its RunCreated is in the log; nobody knows yet
            before = await positions(tracker)
            sub = tracker.subscribe(from_position="live")
            gate.release.set()  # the commit hook runs: the subscription hears of it
            await anyio.wait_all_tasks_blocked()
            heads.release.set()
        log = await positions(tracker)
        seen: list[int] = []
        with anyio.fail_after(30):
            await collect_until(sub, log[-1], seen)
        assert seen == [p for p in log if p > before[-1]]


# Deterministic interleavings -------------------------------------------------------------

async def test_a_commit_after_a_history_page_is_read_is_seen_once(make: MakeTracker) -> None:
    async with make() as tracker:
        await write_run(tracker, "a", 5)
        store = GatedStore(tracker._store)  # type: ignore[arg-type]
        held, release = store.hold(1)
        sub = subscription(tracker, store)
        drain = Drain(sub)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(drain.run)
            with anyio.fail_after(30):
                await held.wait()  # the whole history is read; the answer is held
            await write_run(tracker, "b", 2)  # commits before the switch to live
            assert drain.seen == []
            release.set()
            log = await positions(tracker)
            with anyio.fail_after(30):
                await drain.until(len(log))
            tasks.cancel_scope.cancel()
        assert drain.seen == log
        assert store.reads == 1  # run b came from the live buffer, where it joined the history


@pytest.mark.parametrize("start", ["start", 3])
async def test_history_over_several_pages_while_commits_arrive(
        make: MakeTracker, start: int | str) -> None:
    async with make() as tracker:
        await write_run(tracker, "a", 10)
        history = len(await positions(tracker, 0 if start == "start" else int(start)))
        store = GatedStore(tracker._store)  # type: ignore[arg-type]
        holds = [store.hold(1), store.hold(3)]
        sub = subscription(tracker, store, start, page=2)
        drain = Drain(sub)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(drain.run)
            for (held, release), run_id in zip(holds, ["b", "c"], strict=True):
                with anyio.fail_after(30):
                    await held.wait()  # a page is read; commits land before the next one
                await write_run(tracker, run_id, 2)
                release.set()
            log = await positions(tracker, 0 if start == "start" else int(start))
            with anyio.fail_after(30):
                await drain.until(len(log))
            tasks.cancel_scope.cancel()
        assert drain.seen == log
        assert store.reads >= (history + 1) // 2  # two events a page


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
    with pytest.raises(ClosedError):
        tracker.subscribe()


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
