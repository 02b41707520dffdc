"""A real server for tests: uvicorn on an ephemeral loopback port, in a thread of its own
(its own event loop), so that requests cross a real socket as they do in production."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from engine._server.app import create_app


class LiveServer:
    """``with LiveServer(db_url) as server:`` serves ``db_url`` at ``server.url``."""

    def __init__(self, db: str, port: int = 0, **settings: Any) -> None:
        self.db = db
        self.port = port
        self.settings = settings
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        app = create_app(self.db, **self.settings)
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

    def stop(self, *, abrupt: bool = False) -> None:
        """Stop: gracefully, or (``abrupt``) without waiting for requests in flight."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        if abrupt:
            server.force_exit = True
        thread.join(30)
        self._server = self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
