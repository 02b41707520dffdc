"""``kittiwake ui``: the dashboard on a local database, on a free loopback port.

The same app as ``kittiwake serve`` (the dashboard at ``/``, the API under ``/api/v1/``), for
one person on their own machine: it listens on 127.0.0.1 only, takes a free port unless told
one, prints the address and opens the browser.
"""

from __future__ import annotations

import socket
import threading
import time
import webbrowser
from pathlib import Path
from typing import NoReturn, TextIO

from .errors import CliError

__all__ = ["check_local", "run_ui"]


def check_local(db: str) -> None:
    """:raises CliError: for a database file that does not exist (opening it would make an
    empty one, and the dashboard would show nothing)."""
    if db == ":memory:" or "://" in db:
        return
    if not Path(db).exists():
        raise CliError(f"no database at {db!r}: log a run to it first (or `kittiwake demo`), "
                       "or name one: kittiwake ui PATH")


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise CliError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    return sock


def run_ui(db: str, *, port: int, open_browser: bool, out: TextIO) -> NoReturn:
    """Serve ``db`` with the dashboard until interrupted.

    :raises CliError: for a missing database file, a port that is taken, or a server that
        did not start.
    :raises KeyboardInterrupt: when interrupted (Ctrl+C, SIGTERM), once the server stopped.
    """
    try:
        import uvicorn

        from engine._server.app import create_app
        from engine._server.serve import Server
    except ImportError as exc:
        raise CliError("kittiwake ui needs the server extra: "
                       "pip install 'kittiwake[server]'") from exc
    check_local(db)
    sock = _listen(port)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = Server(uvicorn.Config(
        create_app(db, signals=True), log_level="warning", lifespan="on",
        timeout_graceful_shutdown=2))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            out.write(f"Kittiwake dashboard for {db} at {url}  (Ctrl+C stops it)\n")
            out.flush()
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=announce, daemon=True).start()
    server.run_until_stopped(sockets=[sock])  # raises KeyboardInterrupt after Ctrl+C
    if not server.started:
        raise CliError(f"the dashboard's server on {url} did not start (see above)")
    raise KeyboardInterrupt  # stopped another way (SIGTERM with its default disabled)
