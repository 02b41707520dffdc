"""The doorbell: LISTEN on a dedicated connection, so a tracker hears other processes' commits.

Every append transaction queues ``NOTIFY`` on the log's channel; PostgreSQL delivers it after
the commit, merges identical ones and bounds payloads, so it carries nothing: it only says
"the head may have moved". Whoever waits arms the bell *before* reading the head, so a commit
that lands between the read and the wait still rings it, and no wake-up is lost.

A lost LISTEN connection rings the bell too (waiters then read the head, which covers any
notification missed while it was down), and the next wait opens it again; while it cannot be
opened, waiting falls back to polling. A bell armed when the connection is already gone (it
may die between ``listening()`` and ``armed()``, or before its loss could be reported) comes
already rung, for the same reason.
"""

from __future__ import annotations

import anyio
import asyncpg

from .connection import Target, driver_error, open_connection

__all__ = ["Doorbell"]

_CONNECT_TIMEOUT = 5.0  # seconds; meanwhile a waiter polls instead of hanging


class Doorbell:
    """Rings when a commit is notified on ``channel`` (or the listening link is lost)."""

    def __init__(self, target: Target, channel: str) -> None:
        self._target = target
        self._channel = channel
        self._connection: asyncpg.Connection | None = None
        self._bell = anyio.Event()
        self._lock = anyio.Lock()
        self._closed = False

    async def listening(self) -> bool:
        """Whether the bell can ring: LISTEN is on, opening the connection if needed."""
        connection = self._connection
        if connection is not None and not connection.is_closed():
            return True
        async with self._lock:
            if self._closed:
                return False
            if self._connection is not None and not self._connection.is_closed():
                return True
            connection = None
            try:
                connection = await open_connection(self._target, within=_CONNECT_TIMEOUT)
                await connection.add_listener(self._channel, self._ring)
            except BaseException as exc:
                if connection is not None:
                    connection.terminate()
                if isinstance(exc, Exception) and driver_error(exc):
                    return False  # unreachable for now: the caller polls and tries again
                raise
            connection.add_termination_listener(self._lost)
            self._connection = connection
            return True

    def armed(self) -> anyio.Event:
        """The event the next notification sets (a fresh one once the last has rung); set
        already when nothing listens any more, so that the waiter looks at the head and
        listens again."""
        if self._bell.is_set():
            self._bell = anyio.Event()
        connection = self._connection
        if connection is None or connection.is_closed():
            self._bell.set()
        return self._bell

    def _ring(self, *_: object) -> None:
        self._bell.set()

    def _lost(self, _: object) -> None:
        self._bell.set()

    async def close(self) -> None:
        """Stop listening and close the connection."""
        async with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with anyio.CancelScope(shield=True):
                await connection.close()
        self._bell.set()
