"""Keeping a tracker's background loops running, and stopping the tracker when they cannot.

The writer, the heartbeats, the reaper and the watch of the log's head are loops in the
tracker's task group. They outlive the database's hiccups: a step that fails is tried again
after pauses that grow (``STEP_RETRY_PAUSES``), and a store that failed (``StorageError``) is
waited out for as long as it lasts. When a step still fails otherwise after the last pause —
or a loop itself fails — the tracker cannot go on, and it says so instead of leaving anyone
waiting: one ``ClosedError``, chained to the cause, goes to everyone registered in
``on_failure`` (the live runs, the writer's flushes, the subscriptions), and leaving the
tracker's block raises it too.

A failing loop stops the tracker through ``fail`` rather than by cancelling the task group:
cancelling would pull the writer out from under flushes still waiting on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from anyio.abc import TaskGroup

from engine.errors import ClosedError, StorageError

__all__ = ["STEP_RETRY_PAUSES", "Supervisor"]

T = TypeVar("T")

STEP_RETRY_PAUSES: tuple[float, ...] = (
    0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 10.0, 10.0, 10.0, 10.0)
"""Pauses between attempts of a failing background step (about a minute in all, on top of
the store's own retries); after the last one the tracker stops."""


class Supervisor:
    """Runs one tracker's background loops; a loop that cannot go on stops the tracker."""

    def __init__(self, *, retry_pauses: tuple[float, ...] = STEP_RETRY_PAUSES) -> None:
        self.retry_pauses = retry_pauses
        self.failure: ClosedError | None = None  # set once the tracker cannot go on
        self.on_failure: list[Callable[[ClosedError], None]] = []

    def start(self, tasks: TaskGroup, *loops: Callable[[], Awaitable[None]]) -> None:
        """Run each of ``loops`` in ``tasks``, the tracker's task group."""
        for loop in loops:
            tasks.start_soon(self._supervise, loop)

    async def retrying(self, step: Callable[[], Awaitable[T]]) -> T:
        """``step()``, tried again after each pause of ``retry_pauses`` while it fails, and
        after the last pause again and again while the store fails (``StorageError``: a
        full disk, a database that is down — the writer keeps what runs log meanwhile).

        :raises Exception: the last failure of another kind, or at once a ``ClosedError`` of
            the store (a closed store does not come back).
        """
        for pause in self.retry_pauses:
            try:
                return await step()
            except ClosedError:
                raise
            except Exception:
                await anyio.sleep(pause)
        while True:
            try:
                return await step()
            except StorageError:
                await anyio.sleep(self.retry_pauses[-1] if self.retry_pauses else 0)

    def fail(self, error: BaseException) -> None:
        """The tracker cannot go on: make everyone who waits on it raise, chained to
        ``error``, rather than wait forever. Only the first failure counts."""
        if self.failure is not None:
            return
        stopped = ClosedError(f"the tracker stopped: {type(error).__name__}: {error}")
        stopped.__cause__ = error
        self.failure = stopped
        for hook in self.on_failure:
            hook(stopped)

    async def _supervise(self, loop: Callable[[], Awaitable[None]]) -> None:
        try:
            await loop()
        except Exception as exc:
            self.fail(exc)
