"""The shared backend: PostgreSQL through asyncpg, for teams and many machines.

Connections, per store:

- one **writer** connection: every append of this process, in group commits that take turns
  with other processes' appends (``_postgres_commit`` explains how that keeps positions
  gap-free as readers see them);
- a small **pool of readers** (``_postgres_conn.Readers``), so reads run beside a commit and
  beside each other;
- one **listener** connection, opened when someone first waits for the head, that LISTENs for
  the NOTIFY every append sends (``_postgres_listen``);
- during a rebuild, one more connection for the rebuild itself.

The URL is ``postgresql://user@host:port/database``, optionally with ``?search_path=schema``
to keep Kittiwake's tables in a schema of their own (created on connect). The schema is
created or migrated on connect. A lost connection is opened again; see ``_postgres_conn``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

import anyio
import asyncpg

from engine._core.events import Record, Upcasters
from engine._storage.contract import AppendRequest, Progress
from engine._storage.split import SplitStore
from engine.errors import ClosedError, EngineError

from .commit import Committer
from .connection import Readers, Target, driver_error, open_connection
from .listen import Doorbell
from .reads import PostgresReads
from .rebuild import BEHIND, build, drop_retired
from .schema import migrate

__all__ = ["PostgresStore", "open_url"]

_READERS = 4  # pooled reader connections per store
# While LISTEN is on, a waiter for the head relies on the doorbell and looks at the head
# itself only this often (or as often as it asked, if less often): a safety net, not a poll.
_FALLBACK_POLL = 2.0
_BEAT = ("INSERT INTO heartbeats VALUES ($1, $2, $3) "
         "ON CONFLICT (project, run_id) DO UPDATE SET beat_at = EXCLUDED.beat_at")


def open_url(url: str, *, durability: str, upcasters: Upcasters) -> PostgresStore:
    """The store for a ``postgresql://`` URL (the backend registry's entry point)."""
    return PostgresStore(url, durability=durability, upcasters=upcasters)


class PostgresStore(SplitStore):
    """The log and its projections in one PostgreSQL schema."""

    def __init__(self, url: str, *, durability: str, upcasters: Upcasters) -> None:
        self.target = Target(url, durability=durability)
        self.durability = durability
        self.upcasters = upcasters
        self._committer: Committer | None = None
        self._readers: Readers | None = None
        self._reads: PostgresReads | None = None
        self._doorbell: Doorbell | None = None

    def __repr__(self) -> str:
        return f"<PostgresStore {self.target.shown!r}>"

    # Lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        writer: asyncpg.Connection | None = None
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
                raise EngineError(f"cannot open the PostgreSQL database "
                                  f"{self.target.shown!r}: {exc}") from exc
            raise
        channel = self.target.channel(schema)
        self._committer = Committer(self.target, writer, channel, self.upcasters)
        self._reads = PostgresReads(self._readers, self.upcasters)
        self._doorbell = Doorbell(self.target, channel)
        try:
            await self.drop_retired()  # left by a rebuild whose process ended before dropping
            if await self._readers.run(lambda c: c.fetchval(BEHIND)):
                # The log is ahead of a projection (a projection added by a newer release):
                # build everything again from the log — unless another process opening at
                # the same time has done so by the time this one's turn comes.
                await build(self, "__new", None, if_behind=True)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        committer, readers, doorbell = self._committer, self._readers, self._doorbell
        self._committer = self._readers = self._reads = self._doorbell = None
        with anyio.CancelScope(shield=True):
            if doorbell is not None:
                await doorbell.close()
            if committer is not None:
                await _quietly(committer.close())
            if readers is not None:
                await _quietly(readers.close())

    @property
    def committer(self) -> Committer:
        if self._committer is None:
            raise ClosedError("the store is closed")
        return self._committer

    @property
    def readers(self) -> Readers:
        if self._readers is None:
            raise ClosedError("the store is closed")
        return self._readers

    @property
    def reads(self) -> PostgresReads:
        if self._reads is None:
            raise ClosedError("the store is closed")
        return self._reads

    # The log -------------------------------------------------------------------------------

    async def append(self, requests: Sequence[AppendRequest], *,
                     now: float) -> list[list[Record] | BaseException]:
        return await self.committer.append(requests, now=now)

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

    async def rebuild(self, progress: Progress | None = None) -> None:
        await build(self, "__new", progress)

    async def verify_rebuild(self) -> list[str]:
        return await build(self, "__check", None)

    async def drop_retired(self) -> None:
        await drop_retired(self)

    # Liveness ------------------------------------------------------------------------------

    async def beat(self, runs: Sequence[tuple[str, str]], at: float) -> None:
        if runs:
            with anyio.CancelScope(shield=True):
                await self.readers.execute_many(_BEAT, [(p, r, at) for p, r in runs],
                                                "recording heartbeats")


async def _quietly(closing: Awaitable[None]) -> None:
    """Await a close; a connection that is already gone has nothing left to close."""
    try:
        await closing
    except Exception as exc:
        if not driver_error(exc):
            raise
