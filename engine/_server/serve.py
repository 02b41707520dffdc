"""Running the app with uvicorn: ``kittiwake serve``.

Without ``--auth`` the server only listens on a loopback address: anyone who can reach it
could read and write every project. ``--workers N`` runs N processes on one socket (uvicorn's
supervisor); they share nothing but the database, as replicas behind a proxy do.

Shutting down (SIGINT, SIGTERM) is graceful: the server stops accepting, live streams end
with a retry hint at once (they would otherwise hold the shutdown forever), and requests in
flight get ``grace`` seconds to finish. Ctrl+C (SIGINT) then ends the command with
``KeyboardInterrupt``, as it ends every other command (exit code 130); ``kittiwake ui`` runs
its server the same way.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from engine.errors import ValidationError

from .app import create_app

__all__ = ["Server", "check_host", "serve", "worker_app"]

_ENV = "KITTIWAKE_SERVE_"


def check_host(host: str, auth: bool) -> None:
    """:raises ValidationError: for a host beyond loopback when there is no auth."""
    if auth:
        return
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValidationError(
            f"refusing to listen on {host!r} without --auth: anyone who reaches it could "
            "read and write every project. Use --auth (and tokens), or a loopback address "
            "behind a proxy that authenticates", key="host")


class Server(uvicorn.Server):
    """uvicorn's server, which says when Ctrl+C stopped it."""

    interrupted = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:
            self.interrupted = True
        super().handle_exit(sig, frame)

    def run_until_stopped(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until a signal stops the server.

        :raises KeyboardInterrupt: when Ctrl+C (SIGINT) stopped it, once it has shut down.
        """
        self.run(sockets=sockets)
        if self.interrupted:
            # uvicorn raises the signal again once shut down, but asyncio's runner may then
            # end its task normally, and uvicorn.run swallows the KeyboardInterrupt: say it
            # here, so the exit code is always 130.
            raise KeyboardInterrupt


class _Supervisor(Multiprocess):
    """uvicorn's supervisor of worker processes, which says when Ctrl+C stopped them."""

    interrupted = False

    def handle_int(self) -> None:
        self.interrupted = True
        super().handle_int()


def worker_app() -> Starlette:
    """The app of one worker process, from the settings ``serve`` left in the environment."""
    return create_app(os.environ[_ENV + "DB"], auth=os.environ[_ENV + "AUTH"] == "1",
                      durability=os.environ[_ENV + "DURABILITY"],
                      signals=True)


def serve(db: str, *, host: str, port: int, auth: bool, workers: int = 1,
          durability: str = "full", grace: float = 10.0, log_level: str = "info") -> None:
    """Serve ``db`` until interrupted.

    :raises ValidationError: for a host beyond loopback without auth, or a bad worker count.
    :raises KeyboardInterrupt: when Ctrl+C (SIGINT) stopped it, once it has shut down.
    :raises SystemExit: when the server did not start (uvicorn logged why).
    """
    check_host(host, auth)
    if type(workers) is not int or workers < 1:
        raise ValidationError(f"--workers must be at least 1, not {workers!r}", key="workers")
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                              "timeout_graceful_shutdown": grace, "lifespan": "on"}
    if workers == 1:
        app = create_app(db, auth=auth, durability=durability, signals=True)
        server = Server(uvicorn.Config(app, **common))
        server.run_until_stopped()
        if not server.started:
            raise SystemExit(3)  # uvicorn's code for a server that failed to start
        return
    os.environ[_ENV + "DB"] = db
    os.environ[_ENV + "AUTH"] = "1" if auth else "0"
    os.environ[_ENV + "DURABILITY"] = durability
    config = uvicorn.Config("engine._server.serve:worker_app", factory=True, workers=workers,
                            **common)
    supervisor = _Supervisor(config, sockets=[config.bind_socket()])
    supervisor.run()
    if supervisor.interrupted:
        raise KeyboardInterrupt

