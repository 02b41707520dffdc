"""Running the app with uvicorn: ``kittiwake serve``.

Without ``--auth`` the server only listens on a loopback address: anyone who can reach it
could read and write every project. ``--workers N`` runs N processes on one socket (uvicorn's
supervisor); they share nothing but the database, as replicas behind a proxy do.

Shutting down (SIGINT, SIGTERM) is graceful: the server stops accepting, live streams end
with a retry hint at once (they would otherwise hold the shutdown forever), and requests in
flight get ``grace`` seconds to finish.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from starlette.applications import Starlette

from engine.errors import ValidationError

from .app import create_app

__all__ = ["check_host", "serve", "worker_app"]

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


def worker_app() -> Starlette:
    """The app of one worker process, from the settings ``serve`` left in the environment."""
    return create_app(os.environ[_ENV + "DB"], auth=os.environ[_ENV + "AUTH"] == "1",
                      durability=os.environ[_ENV + "DURABILITY"],
                      signals=True)


def serve(db: str, *, host: str, port: int, auth: bool, workers: int = 1,
          durability: str = "full", grace: float = 10.0, log_level: str = "info") -> None:
    """Serve ``db`` until interrupted.

    :raises ValidationError: for a host beyond loopback without auth, or a bad worker count.
    """
    import uvicorn

    check_host(host, auth)
    if type(workers) is not int or workers < 1:
        raise ValidationError(f"--workers must be at least 1, not {workers!r}", key="workers")
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                              "timeout_graceful_shutdown": grace, "lifespan": "on"}
    if workers == 1:
        app = create_app(db, auth=auth, durability=durability, signals=True)
        uvicorn.run(app, **common)
        return
    os.environ[_ENV + "DB"] = db
    os.environ[_ENV + "AUTH"] = "1" if auth else "0"
    os.environ[_ENV + "DURABILITY"] = durability
    uvicorn.run("engine._server.serve:worker_app", factory=True, workers=workers, **common)

