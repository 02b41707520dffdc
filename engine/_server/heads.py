"""The log's head as the server knows it: what long-polling clients wait on.

A remote tracker notices other processes' appends (abort requests, subscriptions) by asking
for the head beyond the last it saw. Rather than each such request polling the database, the
server's one reader of the log (``fanout``) — which hears of other processes' commits through
the backend's own notice where it has one (PostgreSQL's LISTEN), else a cheap poll — tells
this where the log has got to, and every waiting request wakes when it moves; the server's
own appends wake them at once.
"""

from __future__ import annotations

import anyio

from engine._storage.contract import Store

__all__ = ["Heads"]


class Heads:
    def __init__(self, store: Store, closing: anyio.Event) -> None:
        self.store = store
        self.head = 0
        self.closing = closing  # a server shutting down answers every waiting request
        self._moved = anyio.Event()

    def committed(self, position: int) -> None:
        """The log reaches ``position`` (an append of this server, or a commit read back)."""
        if position > self.head:
            self.head = position
            self._moved.set()
            self._moved = anyio.Event()

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
