"""The tracker's background loops outlive store errors, and never leave anyone waiting when
they cannot go on: runs, flushes and subscriptions raise instead."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import pytest

from engine._storage.contract import Store
from engine.errors import ClosedError, StorageError
from tests.conftest import MakeTracker

FAST = {"heartbeat_interval": 0.005, "crash_timeout": 60.0, "reap_interval": 0.005,
        "poll_interval": 0.005}


class Failing:
    """Delegates to a real store, but ``method`` raises ``error`` (a ``ConnectionError``
    unless told) — ``times`` times (``None``: always) once ``on``. ``recovered`` is set by
    its first success after failing."""

    def __init__(self, store: Store, method: str, times: int | None, *, on: bool = True,
                 error: type[Exception] = ConnectionError) -> None:
        self._store = store
        self.method = method
        self.times = times
        self.on = on
        self.failures = 0
        self.recovered = anyio.Event()
        real = getattr(store, method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.on and (self.times is None or self.failures < self.times):
                self.failures += 1
                raise error(f"{method}: the database went away")
            result = await real(*args, **kwargs)
            if self.failures:
                self.recovered.set()
            return result

        self._call = call

    def __getattr__(self, name: str) -> Any:
        if name == self.method:
            return self._call
        return getattr(self._store, name)


class HeldAppend:
    """Delegates to a real store; while ``holding``, an append waits for ``release``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.holding = False
        self.entered = anyio.Event()
        self.release = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append(self, requests: Any, **options: Any) -> Any:
        if self.holding:
            self.entered.set()
            await self.release.wait()
        return await self._store.append(requests, **options)


@pytest.mark.parametrize("method", ["wait_for_head", "beat", "stale_runs"])
async def test_a_loop_outlives_store_errors(make: MakeTracker, method: str) -> None:
    async with make(**FAST) as tracker:
        assert tracker._liveness is not None
        store = Failing(tracker._liveness.store, method, times=3)
        tracker._liveness.store = store  # type: ignore[assignment]
        tracker._supervisor.retry_pauses = (0.0,) * 5
        async with tracker.start_run("r") as run:  # someone to beat for, and to follow for
            with anyio.fail_after(30):
                await store.recovered.wait()
            run.log_metrics({"m": 1.0}, step=0)
            await run.flush()  # the writer is alive too
        assert store.failures == 3
        assert (await tracker.get_run("r")).status == "succeeded"
    assert tracker._supervisor.failure is None


@pytest.mark.parametrize("method", ["wait_for_head", "beat", "stale_runs"])
async def test_a_store_that_fails_past_every_pause_is_waited_out(make: MakeTracker,
                                                                 method: str) -> None:
    """The store fails (``StorageError``) for longer than every pause of the retries: the
    tracker does not stop, and goes on once the store is back."""
    async with make(**FAST) as tracker:
        assert tracker._liveness is not None
        store = Failing(tracker._liveness.store, method, times=12, error=StorageError)
        tracker._liveness.store = store  # type: ignore[assignment]
        tracker._supervisor.retry_pauses = (0.0, 0.001)
        async with tracker.start_run("r") as run:
            with anyio.fail_after(30):
                await store.recovered.wait()
            run.log_metrics({"m": 1.0}, step=0)
            await run.flush()
        assert store.failures == 12
        assert (await tracker.get_run("r")).status == "succeeded"
    assert tracker._supervisor.failure is None


async def raised(action: Callable[[], Awaitable[object]]) -> BaseException:
    """The exception ``action()`` raises (the test fails if it returns)."""
    try:
        await action()
    except Exception as exc:
        return exc
    raise AssertionError(f"{action} did not raise")


async def test_a_store_that_stays_down_stops_the_tracker_and_nobody_hangs(
        make: MakeTracker) -> None:
    errors: dict[str, BaseException] = {}

    async def use_the_tracker() -> None:
        async with make(**FAST) as tracker:
            liveness, writer = tracker._liveness, tracker._writer
            assert liveness is not None
            assert writer is not None
            failing = Failing(liveness.store, "wait_for_head", times=None, on=False)
            liveness.store = failing  # type: ignore[assignment]
            tracker._supervisor.retry_pauses = (0.0, 0.0)
            held = HeldAppend(writer.store)
            writer.store = held  # type: ignore[assignment]
            sub = tracker.subscribe(from_position="live")
            await sub.wait_caught_up()

            async def train() -> None:
                async with tracker.start_run("r") as run:
                    held.holding = True
                    run.log_metrics({"m": 1.0}, step=0)
                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(flush, run)
                        await held.entered.wait()  # a flush waits on a commit in flight
                        failing.on = True  # ... when the database goes away for good
                    held.release.set()
                    errors["subscription"] = await raised(partial(anext, sub))
                    with pytest.raises(ClosedError):
                        run.log_metrics({"m": 2.0}, step=1)
                    with pytest.raises(ClosedError):
                        tracker.subscribe()

            async def flush(run: Any) -> None:
                errors["flush"] = await raised(run.flush)

            errors["run"] = await raised(train)

    with anyio.fail_after(30):
        errors["tracker"] = await raised(use_the_tracker)
    assert set(errors) == {"flush", "subscription", "run", "tracker"}
    for name, error in errors.items():
        assert isinstance(error, ClosedError), name
        assert isinstance(error.__cause__, ConnectionError), name
    assert "the tracker stopped" in str(errors["tracker"])


async def test_a_failing_writer_loop_stops_the_tracker_instead_of_hanging(
        make: MakeTracker) -> None:
    def broken_hook(records: list[Any]) -> None:
        raise RuntimeError("a commit hook broke")

    async def log_until_refused(run: Any) -> None:
        for step in range(1, 10_000):
            run.log_metrics({"m": 1.0}, step=step)
            await anyio.lowlevel.checkpoint()

    async def use_the_tracker() -> None:
        async with make() as tracker:
            writer = tracker._writer
            assert writer is not None
            async with tracker.start_run("r") as run:
                writer.on_commit.append(broken_hook)
                run.log_metrics({"m": 1.0}, step=0)
                await run.flush()  # committed; then the hook breaks the writer's loop
                assert isinstance(await raised(partial(log_until_refused, run)), ClosedError)
                refused = await raised(partial(tracker.abort_run, "r"))
                assert isinstance(refused, ClosedError)
                writer.on_commit.remove(broken_hook)  # so that closing commits the rest

    with anyio.fail_after(30):
        leaving = await raised(use_the_tracker)
    assert isinstance(leaving, ClosedError)
    assert isinstance(leaving.__cause__, RuntimeError)
