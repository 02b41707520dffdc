"""The log's head, followed once per server: what long-polling clients wait on.

A remote tracker notices other processes' appends (abort requests, subscriptions) by asking
for the head beyond the last it saw. Rather than each such request polling the database, one
task per server follows the head — through the backend's own notice where it has one
(PostgreSQL's LISTEN), else a cheap poll — and wakes every waiting request when it moves;
the server's own appends wake them at once.
"""

from __future__ import annotations

import anyio

from engine._storage.contract import Store
from engine.errors import EngineError

__all__ = ["Heads"]

_POLL = 0.02


class Heads:
    def __init__(self, store: Store, closing: anyio.Event) -> None:
        self.store = store
        self.head = 0
        self.closing = closing  # a server shutting down answers every waiting request
        self._moved = anyio.Event()

    def committed(self, position: int) -> None:
        """The server appended up to ``position``."""
        if position > self.head:
            self.head = position
            self._moved.set()
            self._moved = anyio.Event()

    async def follow(self) -> None:
        """Follow the head until cancelled (a failing database is retried, not fatal)."""
        while True:
            try:
                self.committed(await self.store.wait_for_head(self.head, _POLL))
            except EngineError:
                await anyio.sleep(0.5)

    async def wait(self, beyond: int, within: float) -> int:
        """The head once it is past ``beyond``, after ``within`` seconds, or as soon as the
        server begins to shut down (a request held open would hold the shutdown)."""
        with anyio.move_on_after(within):
            while self.head <= beyond and not self.closing.is_set():
                moved = self._moved
                async with anyio.create_task_group() as tasks:
                    async def closing() -> None:
                        await self.closing.wait()
                        tasks.cancel_scope.cancel()

                    tasks.start_soon(closing)
                    await moved.wait()
                    tasks.cancel_scope.cancel()
        return self.head if self.head > beyond else await self.store.head()
