"""What the subscription tests share: store wrappers, a draining consumer, small writers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from hypothesis import strategies as st

import engine
from engine._runtime.subscriptions import Pager, Subscription
from engine._storage.contract import EventFilter, Store

__all__ = ["METRICS", "RUNS", "TYPES", "Drain", "GatedStore", "collect_until", "comparable",
           "expected", "filters", "head_of", "needs_shared_database", "positions",
           "subscription", "write_run", "Writers"]

# What the properties of subscriptions and live streams draw from.
RUNS = [f"w{i}" for i in range(14)]  # one per write: a run is written by one writer
METRICS = ["m0", "m1", "m2"]
TYPES = ["RunCreated", "MetricsLogged", "StatusChanged"]

filters = st.fixed_dictionaries({
    "runs": st.none() | st.sets(st.sampled_from(RUNS[:6]), min_size=1),
    "types": st.none() | st.sets(st.sampled_from(TYPES), min_size=1),
    "metrics": st.none() | st.sets(st.sampled_from(METRICS), min_size=1),
})


class GatedStore:
    """Delegates to a real store, counting reads; ``hold(n)`` makes the n-th read wait,
    once the store has answered it, until the test releases it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads = 0
        self._holds: dict[int, tuple[anyio.Event, anyio.Event]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def hold(self, read: int) -> tuple[anyio.Event, anyio.Event]:
        """(held, release): ``held`` is set while the answered read waits for ``release``."""
        pair = self._holds[read] = (anyio.Event(), anyio.Event())
        return pair

    async def read(self, after: int, **options: Any) -> Any:
        answer = await self._store.read(after, **options)
        self.reads += 1
        held = self._holds.get(self.reads)
        if held is not None:
            held[0].set()
            await held[1].wait()
        return answer


def subscription(tracker: engine.Tracker, store: Any, start: int | str = "start",
                 buffer_points: int = 1_000_000, *, page: int | None = None,
                 runs: set[str] | None = None) -> Subscription:
    """A subscription on ``store`` (a wrapper, say), started at its first use."""
    where = EventFilter(project=tracker.project,
                        run_ids=None if runs is None else frozenset(runs))
    return Subscription(store, tracker._hub, where, None, start, buffer_points,
                        pager=None if page is None else Pager(page))


def needs_shared_database(backend: str) -> None:
    if backend == "sqlite-memory":
        pytest.skip("an in-memory database cannot be shared by two trackers")


async def positions(tracker: engine.Tracker, after: int = 0) -> list[int]:
    return [e.position async for e in tracker.events(after)]


async def head_of(tracker: engine.Tracker) -> int:
    return ([0] + await positions(tracker))[-1]


async def collect_until(sub: Subscription, head: int, into: list[int]) -> None:
    async for event in sub:
        into.append(event.position)
        if event.position >= head:
            return
    raise AssertionError("the subscription ended early")


async def write_run(tracker: engine.Tracker, run_id: str, steps: int,
                    keys: Sequence[str] = ("m",), *, flush: bool = True) -> None:
    async with tracker.start_run(run_id) as run:
        for step in range(steps):
            run.log_metrics({k: float(step) for k in keys}, step=step)
            if flush:
                await run.flush()
            else:
                await anyio.lowlevel.checkpoint()


class Drain:
    """Consumes a subscription in a task; ``until(n)`` waits for n events."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.seen: list[int] = []
        self.events: list[engine.Event] = []
        self.error: BaseException | None = None
        self._target: int | None = None
        self._reached = anyio.Event()

    async def run(self) -> None:
        try:
            async for event in self.sub:
                self.seen.append(event.position)
                self.events.append(event)
                self._check()
        except Exception as exc:
            self.error = exc
            self._reached.set()

    def _check(self) -> None:
        if self._target is not None and len(self.seen) >= self._target:
            self._reached.set()

    async def until(self, count: int) -> None:
        self._target = count
        self._check()
        await self._reached.wait()
        if self.error is not None:
            raise self.error


def expected(log: list[engine.Event], after: int, wanted: dict[str, Any]) -> list[Any]:
    """What a subscription after ``after`` with these filters must deliver, comparably."""
    out = []
    for event in log:
        if event.position <= after:
            continue
        if wanted["runs"] is not None and event.run_id not in wanted["runs"]:
            continue
        if wanted["types"] is not None and event.type not in wanted["types"]:
            continue
        if wanted["metrics"] is not None:
            if event.type != "MetricsLogged":
                continue
            kept = {m: c for m, c in event.data["metrics"].items() if m in wanted["metrics"]}
            if not kept:
                continue
            event = engine.Event(event.position, event.id, event.project, event.run_id,
                                 event.version, event.type, event.timestamp, {"metrics": kept})
        out.append(comparable(event))
    return out


def comparable(event: engine.Event) -> tuple[Any, ...]:
    columns: tuple[Any, ...] = ()
    if event.type == "MetricsLogged":
        columns = tuple(sorted((name, list(c["steps"]), list(c["values"]))
                               for name, c in event.data["metrics"].items()))
    return (event.position, event.run_id, event.type, columns)


class Writers:
    """The writers a property's operations start, each on a run of its own (``RUNS``), left
    running in ``tasks`` so that they overlap what the operations do next."""

    def __init__(self, tasks: anyio.abc.TaskGroup) -> None:
        self.tasks = tasks
        self.written: list[anyio.Event] = []

    async def start(self, tracker: engine.Tracker, steps: int, keys: Sequence[str],
                    flush: bool) -> None:
        done = anyio.Event()
        self.written.append(done)
        run_id = RUNS[len(self.written) - 1]

        async def write() -> None:
            await write_run(tracker, run_id, steps, sorted(keys), flush=flush)
            done.set()

        self.tasks.start_soon(write)
        await anyio.lowlevel.checkpoint()  # it is under way

    async def settle(self) -> None:
        """Wait for the writers so far: the log stands still."""
        for done in self.written:
            await done.wait()
