"""The project's log as server-sent events: ``GET /api/v1/projects/{project}/events``.

Each event's ``id`` is its log position, so a client that reconnects with ``Last-Event-ID``
resumes right after it, with no gap and no duplicate. Its filters are ``subscribe``'s
(``runs``, ``types``, ``metrics``, each repeatable) and ``from`` (``start``, ``live`` or a
position). Every stream of a server is fed by the one reader of the log in ``fanout``, which
also says how a slow client falls behind and reads the log at its own pace instead of
growing the server's memory. An idle stream gets a comment every ``keepalive`` seconds
(proxies close silent connections). When the server shuts down, each stream ends with a
``retry:`` hint, and the client's reconnection resumes on another replica or the restarted
server.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from engine._runtime.filters import event_filter
from engine.errors import AuthError, ValidationError

from .auth import access_of
from .fanout import Broadcast, Follower
from .params import project_of

__all__ = ["events"]

RETRY_MS = 1000
RECHECK = 1.0  # seconds between looks at whether a stream's token still holds


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
    where, metrics = event_filter(project, query.getlist("runs") or None,
                                  query.getlist("types") or None,
                                  query.getlist("metrics") or None)
    start = _start(request)
    broadcast: Broadcast = request.app.state.broadcast
    broadcast.check()
    position = 0 if start == "start" else await broadcast.store.head() if start == "live" \
        else start
    follower = Follower(broadcast, where, metrics, position, request.app.state.stream_buffer)

    async def allowed() -> bool:
        try:
            (await access_of(request)).allow(project, "read")
        except AuthError:
            return False
        return True

    return EventStream(follower, broadcast, request.app.state.closing,
                       request.app.state.keepalive,
                       allowed if request.app.state.tokens is not None else None)


class EventStream:
    """An ASGI response that sends a stream's events until the client leaves, the server
    closes, or the token it was opened with is revoked or expires (``allowed`` says; it is
    asked at most once every ``RECHECK`` seconds, always before anything is sent after such
    a pause, so a revoked token is sent nothing logged a second after its revocation)."""

    def __init__(self, follower: Follower, broadcast: Broadcast, closing: anyio.Event,
                 keepalive: float, allowed: Callable[[], Awaitable[bool]] | None = None
                 ) -> None:
        self.follower = follower
        self.broadcast = broadcast
        self.closing = closing
        self.keepalive = keepalive
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.follower.open()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]})
            async with anyio.create_task_group() as tasks:
                async def gone() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tasks.cancel_scope.cancel()

                async def closing() -> None:
                    await self.closing.wait()
                    self.follower.wake()  # a stream waiting for events ends now

                tasks.start_soon(gone)
                tasks.start_soon(closing)
                await self._pump(send)
                tasks.cancel_scope.cancel()
        finally:
            self.follower.close()

    async def _pump(self, send: Send) -> None:
        async def chunk(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        await chunk(b"retry: %d\n\n" % RETRY_MS)
        follower, broadcast = self.follower, self.broadcast
        checked = time.monotonic()
        while not (broadcast.ended or self.closing.is_set()):
            data = await follower.next(self.keepalive)
            if self.allowed is not None and time.monotonic() - checked >= RECHECK:
                if not await self.allowed():
                    await send({"type": "http.response.body", "more_body": False,
                                "body": b": the token is no longer valid\n\n"})
                    return
                checked = time.monotonic()
            if data is None:
                await chunk(b": keep-alive\n\n")
            elif data:
                await chunk(data)
        await send({"type": "http.response.body",
                    "body": b": the server is closing; reconnect\nretry: %d\n\n" % RETRY_MS,
                    "more_body": False})
