"""``engine.connect``: a tracker asked for by URL, with every setting spelled out.

``connect`` is the one place a tracker's settings are named for users, with their defaults
and meaning (``engine.sync.connect`` repeats them for editors, and opens its tracker here).
Around it: the database and project a call without them means, taken from the environment a
job's worker sets, and the options only a server's URL takes (``token``, ``spool``,
``offline``), which travel to the store the URL opens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from .settings import Durability
from .tracker import Tracker

__all__ = ["connect", "environment_target"]


def connect(
    url: str | None = None,
    *,
    project: str | None = None,
    durability: Durability = "full",
    flush_interval: float = 0.02,
    batch_points: int = 50_000,
    max_pending_points: int = 1_000_000,
    heartbeat_interval: float = 10.0,
    crash_timeout: float = 120.0,
    reap_interval: float | None = None,
    poll_interval: float = 0.025,
    blobs: str | os.PathLike[str] | None = None,
    clock: Callable[[], float] = time.time,
    token: str | None = None,
    spool: str | None = None,
    offline: bool = False,
) -> Tracker:
    """Open a tracker on ``url`` (use it as ``async with``).

    :param url: a file path, ``":memory:"``, ``"sqlite:///path"``, ``"postgresql://…"``, or a
        Kittiwake server's ``"http://…"`` / ``"https://…"`` (the same API, remotely);
        default ``$KITTIWAKE_DB`` (a job's worker sets it), else ``kittiwake.db``.
    :param project: the project every call uses unless it passes ``project=``; default
        ``$KITTIWAKE_PROJECT``, else ``"default"``.
    :param durability: ``"full"`` — a flushed point survives power loss; ``"normal"`` — it
        survives a crash of the process, and is faster (see ``docs/durability.md``).
    :param flush_interval: seconds the writer waits to gather a batch (batching by time).
    :param batch_points: buffered points that make the writer commit at once (by size).
    :param max_pending_points: the most points that may wait to be written; past it,
        ``log_metrics`` raises ``BackpressureError`` (the sync facade waits instead).
    :param heartbeat_interval: seconds between heartbeats of live runs.
    :param crash_timeout: seconds without a heartbeat after which a running run is crashed.
    :param reap_interval: seconds between reaper passes (default: a quarter of the timeout).
    :param poll_interval: seconds between checks for other processes' writes.
    :param blobs: where logged files' bytes go: None — into the run database itself (one
        backup holds everything); a directory path — one file per blob there.
    :param clock: the time source, in seconds since the epoch (inject a fake in tests).
    :param token: for a server with auth: the bearer token (default: ``$KITTIWAKE_TOKEN``).
    :param spool: for a server: the local file every batch is kept in until the server has
        committed it (default: one under the user's cache directory).
    :param offline: for a server: never contact it; ``kittiwake sync`` uploads later.
    :raises ValidationError: for a setting out of range, or a server's option given for a
        database that is not a server.
    """
    url, project = environment_target(url, project)
    return Tracker(
        url, project=project, durability=durability, flush_interval=flush_interval,
        batch_points=batch_points, max_pending_points=max_pending_points,
        heartbeat_interval=heartbeat_interval, crash_timeout=crash_timeout,
        reap_interval=reap_interval, poll_interval=poll_interval, blobs=blobs, clock=clock,
        remote={"token": token, "spool": spool, "offline": offline},
    )


def environment_target(url: str | None, project: str | None) -> tuple[str, str]:
    """The database and project a ``connect`` without them means: ``$KITTIWAKE_DB`` (else
    ``kittiwake.db``) and ``$KITTIWAKE_PROJECT`` (else ``default``), as a job's worker sets
    them."""
    return (url or os.environ.get("KITTIWAKE_DB") or "kittiwake.db",
            project or os.environ.get("KITTIWAKE_PROJECT") or "default")
