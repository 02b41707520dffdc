"""The connections the blob store uses on PostgreSQL: a small pool on an event loop of its
own, in a thread of its own.

asyncpg encodes and decodes ``bytea`` on the thread of the loop it runs on. A file's bytes
are megabytes per chunk, and copying them on the tracker's event loop would stall every
other task of the process; so blob statements run on this side loop, and the tracker's
loop only waits for them from a worker thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from engine._storage.session import Session

from .connection import Link, Readers, Target
from .session import PostgresSession

__all__ = ["BLOB_WRITERS", "BlobSide"]

T = TypeVar("T")
BLOB_WRITERS = 2
"""Chunk transactions of one upload that run at once: the server's work for a chunk (its
TOAST rows, its WAL) is most of an upload's cost, and two backends share it out."""
_CONNECTIONS = BLOB_WRITERS + 1  # and one for the naming transaction, reads, a second put


class BlobSide:
    """A pool for blob statements on a side event loop, opened at first use."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._readers: Readers | None = None
        self._opening = anyio.Lock()

    async def _open(self) -> tuple[anyio.from_thread.BlockingPortal, Readers]:
        async with self._opening:
            if self._portal is None or self._readers is None:
                def start() -> tuple[Any, anyio.from_thread.BlockingPortal, Readers]:
                    cm = anyio.from_thread.start_blocking_portal()
                    portal = cm.__enter__()
                    try:
                        readers = portal.call(Readers.create, self.target, _CONNECTIONS)
                    except BaseException:
                        cm.__exit__(None, None, None)
                        raise
                    return cm, portal, readers

                self._cm, self._portal, self._readers = await anyio.to_thread.run_sync(start)
            assert self._portal is not None and self._readers is not None
            return self._portal, self._readers

    async def run(self, work: Callable[[Session], Awaitable[T]], *, transaction: bool,
                  snapshot: bool = False, streaming: bool = False, what: str) -> T:
        """``work(session)`` on the side loop, in a transaction when ``transaction``.

        ``streaming`` (a chunk of a large blob): the commit does not wait for the WAL to
        reach the disk. The blob is only named by the upload's last transaction, whose
        durable commit flushes the whole WAL before it, its chunks included; a crash before
        it leaves chunks no blob names, which gc removes.
        """
        portal, readers = await self._open()

        async def on(connection: Link) -> T:
            if not transaction:
                return await work(PostgresSession(connection))
            async with connection.transaction():
                if streaming:
                    await connection.execute("SET LOCAL synchronous_commit = off")
                return await work(PostgresSession(connection))

        return await anyio.to_thread.run_sync(
            portal.call, partial(readers.run, on, snapshot=snapshot, what=what))

    async def close(self) -> None:
        """Close the pool and stop the side loop."""
        cm, portal, readers = self._cm, self._portal, self._readers
        self._cm = self._portal = self._readers = None
        if cm is None or portal is None:
            return

        def stop() -> None:
            try:
                if readers is not None:
                    portal.call(readers.close)
            finally:
                cm.__exit__(None, None, None)

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stop)


class SideReader:
    """A ``Reader`` whose reads run on the blob side loop."""

    def __init__(self, side: BlobSide) -> None:
        self.side = side

    async def read(self, work: Callable[[Session], Awaitable[T]], *,
                   snapshot: bool = False) -> T:
        return await self.side.run(work, transaction=False, snapshot=snapshot,
                                   what="reading file bytes")
