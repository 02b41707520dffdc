"""One reader of the log per server, fanned out to every live stream.

A hundred dashboards following a project must not cost a hundred readers of the log: the
server follows it once (``Broadcast``, a subscription to every project from the head on, fed
at once by the server's own appends and by the head's doorbell for other replicas'), makes
each event's message once per shape of stream (whole, or trimmed to some metrics), and hands
the bytes to every stream that wants them.

A stream (``Follower``) is *live* or *behind*. Live, it is handed every event the broadcast
dispatches, keeps those its filters pass, and sends whatever has gathered in one write.
Behind — at its start, or when a slow client let more than its buffer gather — it reads the
log itself from the last position it sent, a page at a time at the client's pace, and turns
live again once it has read up to what the broadcast has dispatched. Correctness rests on
positions alone: a stream takes from the broadcast only positions past the ones it has
covered, and turns live only when nothing between its position and the broadcast's is
unread, so a stream sees every event once and in order, whatever interleaves. A slow
client costs the server at most its buffer: the rest stays in the log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import orjson

from engine._core import events as ev
from engine._core import wire
from engine._core.model import Event
from engine._runtime.subscriptions import Pager, Subscription, admits, trimmed
from engine._storage.contract import EventFilter, Store
from engine.errors import ClosedError

__all__ = ["Broadcast", "Follower", "frame"]

Send = Callable[[bytes], Any]


def event_json(event: Event) -> dict[str, Any]:
    return {"position": event.position, "id": event.id, "project": event.project,
            "run_id": event.run_id, "version": event.version, "type": event.type,
            "timestamp": event.timestamp.timestamp(), "data": event.data}


def frame(event: Event) -> bytes:
    """``event`` as one server-sent event: its position as ``id``, its type as ``event``."""
    data = orjson.dumps(wire.to_wire(event_json(event)))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.position, event.type.encode(), data)


def points(event: Event) -> int:
    """What a stream's buffer is counted in (as a subscription's is): a metric event's
    points, 1 for any other event."""
    if event.type != ev.METRICS_LOGGED:
        return 1
    return max(1, sum(len(c["values"]) for c in event.data["metrics"].values()))


class Broadcast:
    """Follows the log once and hands each event to every ``Follower``.

    :ivar position: the last position dispatched to the followers: they have been handed
        every event up to it since they joined.
    """

    def __init__(self, store: Store, feed: Subscription, moved: Callable[[int], None]) -> None:
        self.store = store
        self.position = feed.position
        self._moved = moved  # told each position dispatched: the head long-polls wait on
        self._feed = feed
        self._followers: set[Follower] = set()
        self._ended: BaseException | None = None

    async def run(self) -> None:
        """Dispatch the feed until it ends or the task is cancelled (the server's lifespan
        ends); then every stream ends."""
        try:
            async for event in self._feed:
                self._dispatch(event)
            self._ended = ClosedError("the server's tracker is closed")
        except Exception as exc:  # a tracker that failed: streams end, clients retry
            self._ended = exc
        finally:
            if self._ended is None:
                self._ended = ClosedError("the server is closing")
            for follower in self._followers:
                follower.wake()
            await self._feed.aclose()

    @property
    def ended(self) -> bool:
        return self._ended is not None

    def check(self) -> None:
        """:raises ClosedError: when live streams have ended (a closed or failed tracker)."""
        if self._ended is not None:
            raise ClosedError(f"live streams have ended: {self._ended}")

    def add(self, follower: Follower) -> None:
        """Hand ``follower`` every event from now on (none once the broadcast has ended:
        its stream closes then)."""
        self._followers.add(follower)

    def remove(self, follower: Follower) -> None:
        self._followers.discard(follower)

    def _dispatch(self, event: Event) -> None:
        shapes: dict[frozenset[str] | None, tuple[bytes, int] | None] = {}

        def shaped(metrics: frozenset[str] | None) -> tuple[bytes, int] | None:
            """The message of ``event`` as streams with ``metrics`` see it, made once."""
            if metrics in shapes:
                return shapes[metrics]
            seen = trimmed(event, metrics)
            made = None if seen is None else (frame(seen), points(seen))
            shapes[metrics] = made
            return made

        position = event.position
        for follower in self._followers:
            follower.offer(event, shaped)
        self.position = position
        self._moved(position)


class Follower:
    """One live stream's place in the log, and the messages waiting for its client.

    :ivar position: the last position sent to the client (or skipped as not matching).
    """

    def __init__(self, broadcast: Broadcast, where: EventFilter,
                 metrics: frozenset[str] | None, position: int, buffer_points: int) -> None:
        self.position = position
        self._broadcast = broadcast
        self._where = where
        self._metrics = metrics
        self._limit = buffer_points
        self._behind = True  # reads the log until it has caught up with the broadcast
        self._covered = position  # while live: the last position the broadcast handed over
        self._pending: list[bytes] = []
        self._pending_points = 0
        self._wake = anyio.Event()
        self._pager = Pager()

    def open(self) -> None:
        self._broadcast.add(self)

    def close(self) -> None:
        self._broadcast.remove(self)

    def wake(self) -> None:
        self._wake.set()

    # Called by the broadcast, on the event loop ------------------------------------------

    def offer(self, event: Event,
              shaped: Callable[[frozenset[str] | None], tuple[bytes, int] | None]) -> None:
        position = event.position
        if self._behind or position <= self._covered:
            return
        made = None
        if admits(self._where, event.project, event.run_id, event.type):
            made = shaped(self._metrics)
        if made is not None:
            message, weight = made
            if self._pending and self._pending_points + weight > self._limit:
                # The client does not keep up: the log keeps these rather than memory.
                self._behind = True
                self._pending.clear()
                self._pending_points = 0
                self._wake.set()
                return
            self._pending.append(message)
            self._pending_points += weight
            self._wake.set()
        self._covered = position

    # Called by the stream's own task ------------------------------------------------------

    async def next(self, wait: float) -> bytes | None:
        """The messages to send next, joined (empty when the stream moved past events it
        does not match, or the server is closing); None when ``wait`` seconds passed with
        nothing to send."""
        if self._behind:
            return await self._read_log()
        if self._pending:
            sent = b"".join(self._pending)
            self._pending.clear()
            self._pending_points = 0
            self.position = self._covered
            return sent
        self.position = self._covered
        if self._broadcast.ended:
            return b""
        self._wake = anyio.Event()
        with anyio.move_on_after(wait):
            await self._wake.wait()
            return b""
        return None

    async def _read_log(self) -> bytes:
        records, covered = await self._broadcast.store.read(
            self.position, limit=self._pager.limit, where=self._where)
        self._pager.adapt(records)
        messages = []
        for record in records:
            seen = trimmed(record.to_event(), self._metrics)
            if seen is not None:
                messages.append(frame(seen))
        self.position = max(self.position, covered)
        if self.position >= self._broadcast.position:
            # Nothing unread lies between this stream and the broadcast: from here on it
            # hands over every later event, and the ones up to here are skipped.
            self._behind = False
            self._covered = self.position
        return b"".join(messages)
