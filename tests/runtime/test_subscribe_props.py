"""The property: whatever interleaves — writers on two trackers, subscribers on both, from
any position, with filters — every subscriber sees exactly the log after its start."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine._runtime.subscriptions import Pager
from tests.conftest import backend_url
from tests.subscribing import METRICS, Drain, Writers, comparable, expected, filters, head_of

operations = st.lists(st.one_of(
    # A writer on tracker 0 or 1, started and left running: writers overlap one another,
    # the subscriptions' starts and their catch-up.
    st.tuples(st.just("write"), st.integers(0, 1), st.integers(1, 4),
              st.sets(st.sampled_from(METRICS), min_size=1), st.booleans()),
    st.tuples(st.just("subscribe"), st.integers(0, 1),
              st.sampled_from(["start", "live", "int"]), st.integers(0, 60), filters,
              st.sampled_from([1, 3, 10**6]), st.sampled_from([1, 2, 64]), st.booleans()),
    st.tuples(st.just("yield"), st.integers(0, 6)),
    st.tuples(st.just("settle")),  # wait for the writers so far: the log stands still
), min_size=1, max_size=14)


@settings(max_examples=50)
@given(ops=operations)
async def test_every_subscriber_sees_exactly_the_log_after_its_start(
        tmp_path_factory: Any, ops: list[Any]) -> None:
    await interleave(backend_url("sqlite-file", tmp_path_factory.mktemp("prop")), ops)


@pytest.mark.postgres
@settings(max_examples=10)  # a fresh schema for each example
@given(ops=operations)
async def test_every_subscriber_sees_exactly_the_log_after_its_start_on_postgres(
        tmp_path_factory: Any, ops: list[Any]) -> None:
    await interleave(backend_url("postgres", tmp_path_factory.mktemp("prop")), ops)


async def interleave(url: str, ops: list[Any]) -> None:
    """Play ``ops``; then every subscriber must have seen exactly the log after its start,
    filtered and trimmed as it asked."""
    # Two trackers on one database: two writers, and each one's commits reach the other's
    # subscribers only through the log and the head doorbell.
    async with engine.connect(url, durability="normal", flush_interval=0.001,
                              poll_interval=0.002) as first, \
            engine.connect(url, durability="normal", flush_interval=0.001,
                           poll_interval=0.002) as second:
        trackers = [first, second]
        # (start position, filters, drain, head before subscribing, seen when caught up)
        subscribers: list[tuple[int, dict[str, Any], Drain, int, list[int] | None]] = []
        async with anyio.create_task_group() as drains:
            async with anyio.create_task_group() as tasks:
                writers = Writers(tasks)
                for op in ops:
                    if op[0] == "write":
                        _, t, steps, keys, flush = op
                        await writers.start(trackers[t], steps, keys, flush)
                    elif op[0] == "settle":
                        await writers.settle()
                    elif op[0] == "subscribe":
                        _, t, kind, number, wanted, buffer, page, wait = op
                        tracker = trackers[t]
                        before = await head_of(tracker)
                        start: int | str = number if kind == "int" else kind
                        sub = tracker.subscribe(
                            wanted["runs"], wanted["types"], wanted["metrics"],
                            from_position=start, buffer_points=buffer)
                        sub._pager = Pager(page)  # history in pages of 1, 2 or 64 events
                        at = 0 if kind == "start" else number
                        if kind == "live":
                            at = await sub.wait_caught_up()
                            # "live" starts at the log's head when subscribing, whatever
                            # this tracker had seen of the other one's writes.
                            assert before <= at <= await head_of(tracker)
                        drain = Drain(sub)
                        drains.start_soon(drain.run)
                        caught: list[int] | None = None
                        if wait and kind != "live":
                            await sub.wait_caught_up()  # while the drain consumes
                            caught = list(drain.seen)
                        subscribers.append((at, wanted, drain, before, caught))
                    else:
                        for _ in range(op[1]):
                            await anyio.lowlevel.checkpoint()
            log = [event async for event in first.events()]
            with anyio.fail_after(30):
                for at, wanted, drain, _, _ in subscribers:
                    await drain.until(len(expected(log, at, wanted)))
            drains.cancel_scope.cancel()
        for at, wanted, drain, before, caught in subscribers:
            want = expected(log, at, wanted)
            assert [comparable(e) for e in drain.events] == want
            if caught is not None:
                # Caught up: the consumer had received every event of the history (the log
                # up to its head at the start, which was at least ``before``).
                history = [w[0] for w in want if w[0] <= before]
                assert caught[:len(history)] == history
