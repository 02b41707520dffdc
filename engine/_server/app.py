"""The ASGI app: ``create_app(url)`` serves the engine on ``url`` over HTTP.

Its lifespan opens one tracker on the database: its store answers the routes, and one
subscription of it follows the log for every live stream (``fanout``) and every request
waiting for the head (``heads``). Shutting down ends every live stream with a retry hint,
then closes the tracker. Errors become JSON bodies that name their type and the bad field
(``engine._client.protocol``): a refusal is a 4xx, a database that fails a 503, and nothing
a client sends is answered with a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine._client import protocol as p
from engine._core import wire
from engine._core.events import default_upcasters
from engine._runtime.connect import connect
from engine._runtime.serving import backing_store, follow_log
from engine.errors import EngineError

from .dashboard import dashboard_routes
from .fanout import Broadcast
from .files import ROUTES as FILE_ROUTES
from .files import Named
from .heads import Heads
from .openapi import schema
from .routes import ROUTES
from .stream import events
from .tokens import Forbidden, Tokens

__all__ = ["create_app"]


def create_app(url: str, *, auth: bool = False, durability: str = "full",
               keepalive: float = 15.0, stream_buffer: int = 200_000,
               signals: bool = False, long_poll: float = 10.0) -> Starlette:
    """The app serving the database at ``url``.

    :param auth: require a bearer token on every request (``engine._server.tokens``).
    :param keepalive: seconds between comments on an idle live stream.
    :param stream_buffer: the points a live stream may hold for a slow client before it
        falls back to reading the log.
    :param signals: end live streams as soon as SIGINT or SIGTERM arrives (``serve``).
    :param long_poll: the longest a request for the head is held when nothing happens.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tracker = connect(url, project="default", durability=durability)  # type: ignore[arg-type]
        async with tracker:
            store = backing_store(tracker)
            state = app.state
            state.tracker = tracker
            state.loop = asyncio.get_running_loop()
            state.store = store
            state.upcasters = default_upcasters()
            state.closing = anyio.Event()
            state.keepalive = keepalive
            state.stream_buffer = stream_buffer
            state.long_poll = long_poll
            state.named = Named()
            state.tokens = Tokens(store) if auth else None
            heads = state.heads = Heads(store, state.closing)
            heads.head = await store.head()
            feed = follow_log(tracker, stream_buffer)
            await feed.__aenter__()  # fix where it starts: the broadcast's first position
            broadcast = state.broadcast = Broadcast(store, feed, heads.committed)
            if signals:
                from .signals import closing_on_signals

                loop = asyncio.get_running_loop()
                closing_on_signals(lambda: _soon(loop, state.closing.set))
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(broadcast.run)
                try:
                    yield
                finally:
                    state.closing.set()
                    tasks.cancel_scope.cancel()

    routes: list[BaseRoute] = [Route(path, handler, methods=[method])
                               for method, path, handler in (*ROUTES, *FILE_ROUTES)]
    routes.append(Route("/api/v1/projects/{project:path}/events", events, methods=["GET"]))
    routes.append(Route("/api/v1/openapi.json", _openapi, methods=["GET"]))
    routes.extend(dashboard_routes())
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        EngineError: _engine_error, HTTPException: _http_error, ClientDisconnect: _gone,
    })


def _soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
    loop.call_soon_threadsafe(fn)


async def _openapi(request: Request) -> Response:
    return Response(wire.dumps(schema()), media_type="application/json")


async def _engine_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EngineError)
    kind: type[Any] = next(k for k in type(exc).__mro__ if k in p.STATUS_OF or k is EngineError)
    status = 403 if isinstance(exc, Forbidden) else p.STATUS_OF.get(kind, 500)
    body = p.error_body(exc)
    body["error"]["type"] = kind.__name__
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return Response(wire.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


async def _gone(request: Request, exc: Exception) -> Response:
    """The client left while sending its body (a tracker closing cancels its requests):
    nobody will read the answer."""
    return Response(status_code=400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
    body = {"error": {"type": names.get(exc.status_code, "HTTPError"), "message": exc.detail,
                      "field": None}}
    return Response(wire.dumps(body), status_code=exc.status_code,
                    media_type="application/json", headers=exc.headers)

