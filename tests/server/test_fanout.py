"""The server's one reader of the log and its live streams: whatever interleaves — writers
on the server's tracker and on another one, streams from any position with filters, clients
that read at once, slowly, or not until the end — every stream carries exactly the log after
its start, and holds no more than its buffer for a client that does not read."""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
import anyio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine._core import wire
from engine._runtime.filters import event_filter
from engine._runtime.serving import backing_store, follow_log
from engine._runtime.subscriptions import Pager
from engine._server.fanout import Broadcast, Follower
from tests.conftest import backend_url
from tests.subscribing import METRICS, Writers, comparable, expected, filters

operations = st.lists(st.one_of(
    # A writer on the server's tracker (0: its commits reach the broadcast at once) or on
    # another one (1: only through the log and the head's doorbell), left running.
    st.tuples(st.just("write"), st.integers(0, 1), st.integers(1, 4),
              st.sets(st.sampled_from(METRICS), min_size=1), st.booleans()),
    # A stream: where it starts, its filters, its buffer in points, and its client's pace
    # (seconds it waits after each read; None: it reads nothing until the end), and the
    # events per page when it reads the log.
    st.tuples(st.just("stream"), st.sampled_from(["start", "live", "int"]),
              st.integers(0, 60), filters, st.sampled_from([1, 3, 10**6]),
              st.sampled_from([0.0, 0.002, None]), st.sampled_from([1, 2, 64])),
    st.tuples(st.just("yield"), st.integers(0, 6)),
    st.tuples(st.just("settle")),  # wait for the writers so far: the log stands still
), min_size=1, max_size=14)


class Client:
    """Reads a stream's messages in a task, as a client of the server would, checking that
    the stream never holds more than its buffer meanwhile."""

    def __init__(self, follower: Follower, limit: int, pace: float | None) -> None:
        self.follower = follower
        self.limit = limit
        self.pace = pace
        self.events: list[engine.Event] = []
        self.reading = anyio.Event()
        self._more = anyio.Event()
        if pace is not None:
            self.reading.set()

    def check_bounded(self) -> None:
        pending = self.follower._pending
        # One event larger than the whole buffer is still sent; two are never held.
        assert self.follower._pending_points <= self.limit or len(pending) <= 1

    async def until(self, count: int) -> None:
        while len(self.events) < count:
            self._more = anyio.Event()
            await self._more.wait()

    async def run(self) -> None:
        await self.reading.wait()
        while True:
            self.check_bounded()
            data = await self.follower.next(0.05)
            self.check_bounded()
            if data:
                self.events += [_event(m) for m in data.split(b"\n\n") if m]
                self._more.set()
            if self.pace:
                await anyio.sleep(self.pace)


def _event(message: bytes) -> engine.Event:
    fields = dict(line.split(b": ", 1) for line in message.split(b"\n"))
    payload = wire.loads(fields[b"data"], arrays=False)
    assert int(fields[b"id"]) == payload["position"]
    assert fields[b"event"].decode() == payload["type"]
    return engine.Event(payload["position"], payload["id"], payload["project"],
                        payload["run_id"], payload["version"], payload["type"],
                        dt.datetime.fromtimestamp(payload["timestamp"], dt.UTC),
                        payload["data"])


@settings(max_examples=40)
@given(ops=operations)
async def test_every_stream_carries_exactly_the_log_after_its_start(
        tmp_path_factory: Any, ops: list[Any]) -> None:
    url = backend_url("sqlite-file", tmp_path_factory.mktemp("fanout"))
    async with engine.connect(url, durability="normal", flush_interval=0.001,
                              poll_interval=0.002) as served, \
            engine.connect(url, durability="normal", flush_interval=0.001,
                           poll_interval=0.002) as other:
        trackers = [served, other]
        store = backing_store(served)
        feed = follow_log(served, 10**6)
        await feed.__aenter__()
        broadcast = Broadcast(store, feed, lambda position: None)
        streams: list[tuple[int, dict[str, Any], Client]] = []
        async with anyio.create_task_group() as background:
            background.start_soon(broadcast.run)
            async with anyio.create_task_group() as tasks:
                writers = Writers(tasks)
                for op in ops:
                    if op[0] == "write":
                        _, t, steps, keys, flush = op
                        await writers.start(trackers[t], steps, keys, flush)
                    elif op[0] == "settle":
                        await writers.settle()
                    elif op[0] == "stream":
                        _, kind, number, wanted, buffer, pace, page = op
                        at = (0 if kind == "start" else await store.head() if kind == "live"
                              else number)
                        where, metrics = event_filter(served.project, wanted["runs"],
                                                      wanted["types"], wanted["metrics"])
                        follower = Follower(broadcast, where, metrics, at, buffer)
                        follower._pager = Pager(page)
                        follower.open()
                        client = Client(follower, buffer, pace)
                        background.start_soon(client.run)
                        streams.append((at, wanted, client))
                    else:
                        for _ in range(op[1]):
                            await anyio.lowlevel.checkpoint()
            log = [event async for event in served.events()]
            for _, _, client in streams:
                client.reading.set()  # the clients that waited read now
            with anyio.fail_after(30):
                for at, wanted, client in streams:
                    await client.until(len(expected(log, at, wanted)))
            await anyio.sleep(0.05)  # a duplicate or a stray event would arrive now
            background.cancel_scope.cancel()
        for at, wanted, client in streams:
            assert [comparable(e) for e in client.events] == expected(log, at, wanted)
