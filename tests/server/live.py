"""A real server for tests: uvicorn on an ephemeral loopback port, in a thread of its own
(its own event loop), so that requests cross a real socket as they do in production."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import uvicorn

from engine._server.app import create_app
from engine._storage.contract import Store

T = TypeVar("T")


class LiveServer:
    """``with LiveServer(db_url) as server:`` serves ``db_url`` at ``server.url``."""

    def __init__(self, db: str, port: int = 0, **settings: Any) -> None:
        self.db = db
        self.port = port
        self.settings = settings
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        app = self.app = create_app(self.db, **self.settings)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=2)
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def store(self) -> Store:
        """The store the server serves (use it on the server's loop: ``call``)."""
        store: Store = self.app.state.store
        return store

    async def call(self, work: Callable[[], Awaitable[T]]) -> T:
        """``await work()`` on the server's own event loop, from the test's."""
        loop: asyncio.AbstractEventLoop = self.app.state.loop

        async def run() -> T:
            return await work()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), loop))

    def stop(self, *, abrupt: bool = False) -> None:
        """Stop: gracefully, or (``abrupt``) without waiting for requests in flight."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        if not abrupt:  # what a SIGTERM does to `kittiwake serve`: live streams end first
            state = self.app.state
            state.loop.call_soon_threadsafe(state.closing.set)
        server.should_exit = True
        if abrupt:
            server.force_exit = True
        thread.join(30)
        self._server = self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
