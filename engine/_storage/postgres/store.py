"""The shared backend: PostgreSQL through asyncpg, for teams and many machines.

Connections, per store:

- one **writer** connection: every append of this process, in group commits that take turns
  with other processes' appends (``commit`` explains how that keeps positions
  gap-free as readers see them);
- a small **pool of readers** (``connection.Readers``), so reads run beside a commit and
  beside each other;
- one **listener** connection, opened when someone first waits for the head, that LISTENs for
  the NOTIFY every append sends (``listen``);
- during a rebuild, one more connection for the rebuild itself.

The URL is ``postgresql://user@host:port/database``, optionally with ``?search_path=schema``
to keep Kittiwake's tables in a schema of their own (created on connect). The schema is
created or migrated on connect. A lost connection is opened again; see ``connection``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio
import asyncpg

from engine._core.events import Upcasters
from engine._storage.io import HEARTBEAT
from engine._storage.reads import Reads
from engine._storage.session import Session, numbered
from engine._storage.split import SplitStore, opened
from engine.errors import ClosedError, StorageError

from .blobside import BLOB_WRITERS, BlobSide, SideReader
from .commit import Committer
from .connection import Link, Readers, Target, driver_error, open_connection, quote_ident
from .listen import Doorbell
from .rebuild import PostgresRebuild
from .schema import migrate
from .session import PostgresReader

T = TypeVar("T")

__all__ = ["PostgresStore", "open_url"]

_READERS = 4  # pooled reader connections per store
# While LISTEN is on, a waiter for the head relies on the doorbell and looks at the head
# itself only this often (or as often as it asked, if less often): a safety net, not a poll.
_FALLBACK_POLL = 2.0


def open_url(url: str, *, durability: str, upcasters: Upcasters) -> PostgresStore:
    """The store for a ``postgresql://`` URL (the backend registry's entry point)."""
    return PostgresStore(url, durability=durability, upcasters=upcasters)


_TRY_TURN = "SELECT pg_try_advisory_lock(hashtext('kittiwake rebuild ' || current_schema()))"
_END_TURN = "SELECT pg_advisory_unlock(hashtext('kittiwake rebuild ' || current_schema()))"
_UNFINISHED = ("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
               "AND (tablename LIKE '%\\_\\_new' OR tablename LIKE '%\\_\\_check')")


class PostgresStore(SplitStore[Committer]):
    """The log and its projections in one PostgreSQL schema."""

    def __init__(self, url: str, *, durability: str, upcasters: Upcasters) -> None:
        self.target = Target(url, durability=durability)
        self.durability = durability
        self.upcasters = upcasters
        self._readers: Readers | None = None
        self._doorbell: Doorbell | None = None
        self._blob_side = BlobSide(self.target)

    def __repr__(self) -> str:
        return f"<PostgresStore {self.target.shown!r}>"

    # Lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        writer: asyncpg.Connection[asyncpg.Record] | None = None
        try:
            writer = await open_connection(self.target)
            await migrate(writer, self.target.schema)
            schema = await writer.fetchval("SELECT current_schema()")
            self._readers = await Readers.create(self.target, _READERS)
        except BaseException as exc:
            if writer is not None:
                writer.terminate()
            await self.close()
            if isinstance(exc, Exception) and driver_error(exc):
                raise StorageError(f"cannot open the PostgreSQL database "
                                   f"{self.target.shown!r}: {exc}") from exc
            raise
        channel = self.target.channel(schema)
        self._committer = Committer(self.target, writer, channel, self.upcasters)
        self._reads = Reads(PostgresReader(self._readers), self.upcasters)
        self._doorbell = Doorbell(self.target, channel)
        try:
            await self.catch_up()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        committer, readers, doorbell = self._committer, self._readers, self._doorbell
        self._committer = self._readers = self._reads = self._doorbell = None
        with anyio.CancelScope(shield=True):
            await self._blob_side.close()
            if doorbell is not None:
                await doorbell.close()
            if committer is not None:
                await _quietly(committer.close())
            if readers is not None:
                await _quietly(readers.close())

    @property
    def readers(self) -> Readers:
        """The pool of reader connections.

        :raises ClosedError: if the store is closed.
        """
        return opened(self._readers)

    # The log -------------------------------------------------------------------------------

    async def wait_for_head(self, beyond: int, within: float) -> int:
        doorbell = self._doorbell
        if doorbell is None:
            raise ClosedError("the store is closed")
        if not await doorbell.listening():
            return await super().wait_for_head(beyond, within)
        bell = doorbell.armed()  # before reading the head: a commit after the read rings it
        head = await self.head()
        if head > beyond:
            return head
        with anyio.move_on_after(max(within, _FALLBACK_POLL)):
            await bell.wait()
        return await self.head()

    # Projections ---------------------------------------------------------------------------

    def rebuild_site(self) -> PostgresRebuild:
        return PostgresRebuild(self.target, self.readers, self.committer.lock,
                               upcasters=self.upcasters, forget=self.committer.forget,
                               head=self.head)

    async def drop_retired(self) -> None:
        """Drop the tables a rebuild swapped out, and those of a rebuild that did not finish
        (only while no process rebuilds: the rebuild's advisory lock says so)."""
        for table in await self.retired_tables():
            async def drop(connection: Link, table: str = table) -> None:
                await connection.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")

            with anyio.CancelScope(shield=True):
                await self.readers.run(drop, what="dropping retired tables")

        async def abandoned(connection: Link) -> None:
            if not await connection.fetchval(_TRY_TURN):
                return  # a rebuild is running somewhere: its tables are in use
            try:
                for (table,) in await connection.fetch(_UNFINISHED):
                    await connection.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
            finally:
                await connection.execute(_END_TURN)

        with anyio.CancelScope(shield=True):
            await self.readers.run(abandoned, what="dropping an unfinished rebuild's tables")

    async def retired_tables(self) -> list[str]:
        rows = await self.reads.reader.read(lambda session: session.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE '%\\_\\_old'"))
        return [r[0] for r in rows]

    # File bytes ----------------------------------------------------------------------------

    async def blob_transaction(self, work: Callable[[Session], Awaitable[T]], *,
                               streaming: bool = False) -> T:
        return await self._blob_side.run(work, transaction=True, streaming=streaming,
                                         what="storing file bytes")

    @property
    def blob_reader(self) -> SideReader:
        return SideReader(self._blob_side)

    @property
    def blob_writers(self) -> int:
        return BLOB_WRITERS

    # Liveness ------------------------------------------------------------------------------

    async def write_rows(self, sql: str, rows: list[tuple[object, ...]], what: str) -> None:
        with anyio.CancelScope(shield=True):
            await self.readers.execute_many(numbered(sql), rows, what)

    async def beat(self, runs: Sequence[tuple[str, str]], at: float) -> None:
        if runs:
            with anyio.CancelScope(shield=True):
                await self.readers.execute_many(numbered(HEARTBEAT), [(p, r, at) for p, r in runs],
                                                "recording heartbeats")


async def _quietly(closing: Awaitable[None]) -> None:
    """Await a close; a connection that is already gone has nothing left to close."""
    try:
        await closing
    except Exception as exc:
        if not driver_error(exc):
            raise
