"""The project's log as server-sent events: ``GET /api/v1/projects/{project}/events``.

Each event's ``id`` is its log position, so a client that reconnects with ``Last-Event-ID``
resumes right after it: the stream is a ``Tracker.subscribe`` from that position, which
replays history and turns live with no gap and no duplicate. Its filters are
``subscribe``'s (``runs``, ``types``, ``metrics``, each repeatable) and ``from`` (``start``,
``live`` or a position).

A slow client costs the server no more memory than the subscription's bounded buffer: while
the socket does not drain, nothing more is taken from the subscription, which falls behind
and later reads the log at the client's pace. An idle stream gets a comment every
``keepalive`` seconds (proxies close silent connections). When the server shuts down, each
stream ends with a ``retry:`` hint, and the client's reconnection resumes on another replica
or the restarted server.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import anyio
import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from engine._core import wire
from engine._core.model import Event
from engine._runtime.subscriptions import Subscription
from engine._runtime.tracker import Tracker
from engine.errors import ValidationError

from .auth import access_of
from .params import project_of

__all__ = ["events"]

_TICK = 0.25  # how often an idle stream looks whether the server is closing
RETRY_MS = 1000


def event_json(event: Event) -> dict[str, Any]:
    return {"position": event.position, "id": event.id, "project": event.project,
            "run_id": event.run_id, "version": event.version, "type": event.type,
            "timestamp": event.timestamp.timestamp(), "data": event.data}


# (position, id of the payload) -> (the event, kept so that its id is not reused; its frame)
_FRAMES: OrderedDict[tuple[int, int], tuple[Event, bytes]] = OrderedDict()
_FRAMES_KEPT = 4096


def _frame(event: Event) -> bytes:
    """The event as one SSE message. A hundred streams receive the same ``Event`` object
    (the tracker makes each once), so the message is made once and kept for the others."""
    key = (event.position, id(event.data))
    kept = _FRAMES.get(key)
    if kept is not None and kept[0] is event:
        return kept[1]
    data = orjson.dumps(wire.to_wire(event_json(event)))
    frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (event.position, event.type.encode(), data)
    _FRAMES[key] = (event, frame)
    if len(_FRAMES) > _FRAMES_KEPT:
        _FRAMES.popitem(last=False)
    return frame


def _start(request: Request) -> int | Literal["start", "live"]:
    resume = request.headers.get("last-event-id")
    raw = resume if resume else request.query_params.get("from", "start")
    what = "Last-Event-ID" if resume else "from"
    if raw == "start":
        return "start"
    if raw == "live":
        return "live"
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{what} must be 'start', 'live' or a position, not {raw!r}",
                              key=what) from None
    if not 0 <= value < 2**63:
        raise ValidationError(f"{what} must be a position >= 0, not {value}", key=what)
    return value


async def events(request: Request) -> EventStream:
    project = project_of(request)
    (await access_of(request)).allow(project, "read")
    query = request.query_params
    tracker: Tracker = request.app.state.tracker
    subscription = tracker.subscribe(
        runs=query.getlist("runs") or None, types=query.getlist("types") or None,
        metrics=query.getlist("metrics") or None, from_position=_start(request),
        project=project, buffer_points=request.app.state.stream_buffer)
    return EventStream(subscription, request.app.state.closing,
                       request.app.state.keepalive)


class EventStream:
    """An ASGI response that sends a subscription's events until the client leaves or the
    server closes."""

    def __init__(self, subscription: Subscription, closing: anyio.Event,
                 keepalive: float) -> None:
        self.subscription = subscription
        self.closing = closing
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]})
        async with anyio.create_task_group() as tasks:
            async def gone() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(gone)
            try:
                await self._pump(send)
            finally:
                await self.subscription.aclose()
            tasks.cancel_scope.cancel()

    async def _pump(self, send: Send) -> None:
        async def chunk(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await chunk(b"retry: %d\n\n" % RETRY_MS)
        idle = 0.0
        subscription = self.subscription
        while not self.closing.is_set():
            event: Event | None = None
            with anyio.move_on_after(_TICK):
                try:
                    event = await subscription.__anext__()
                except StopAsyncIteration:
                    break
            if event is None:
                idle += _TICK
                if idle >= self.keepalive:
                    await chunk(b": keep-alive\n\n")
                    idle = 0.0
                continue
            idle = 0.0
            await chunk(_frame(event))
        await send({"type": "http.response.body",
                    "body": b": the server is closing; reconnect\nretry: %d\n\n" % RETRY_MS,
                    "more_body": False})
