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

from ._events import Record, Upcasters
from ._model import Experiment, Lineage, RunState, Series
from ._postgres_commit import Committer
from ._postgres_conn import Readers, Target, driver_error, open_connection
from ._postgres_listen import Doorbell
from ._postgres_reads import PostgresReads
from ._postgres_rebuild import BEHIND, build, drop_retired
from ._postgres_schema import migrate
from ._query_ast import Field, RunGroup, Selection
from ._store import ANY, AppendRequest, EventFilter, Progress, RunControl, StaleRun, Store
from .errors import ClosedError, EngineError

__all__ = ["PostgresStore"]

_READERS = 4  # pooled reader connections per store
# While LISTEN is on, a waiter for the head relies on the doorbell and looks at the head
# itself only this often (or as often as it asked, if less often): a safety net, not a poll.
_FALLBACK_POLL = 2.0
_BEAT = ("INSERT INTO heartbeats VALUES ($1, $2, $3) "
         "ON CONFLICT (project, run_id) DO UPDATE SET beat_at = EXCLUDED.beat_at")


class PostgresStore(Store):
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

    async def head(self) -> int:
        return await self.reads.head()

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

    async def read(self, after: int, *, limit: int, where: EventFilter = ANY,
                   arrays: bool = False) -> tuple[list[Record], int]:
        return await self.reads.read(after, limit=limit, where=where, arrays=arrays)

    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]:
        return await self.reads.stream_records(project, run_ids, upto)

    # Projections ---------------------------------------------------------------------------

    async def get_run(self, project: str, run_id: str) -> RunState | None:
        return await self.reads.get_run(project, run_id)

    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]:
        return await self.reads.list_runs(project, include_deleted=include_deleted,
                                          selection=selection)

    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]:
        return await self.reads.group_runs(project, include_deleted=include_deleted,
                                           selection=selection, by=by, aggregates=aggregates)

    async def read_series(self, project: str, run_id: str, metric: str, *,
                          low: int | float | None, high: int | float | None,
                          max_points: int | None) -> Series | None:
        return await self.reads.read_series(project, run_id, metric, low=low, high=high,
                                            max_points=max_points)

    async def get_experiment(self, project: str, name: str) -> Experiment:
        return await self.reads.get_experiment(project, name)

    async def lineage(self, project: str, run_id: str) -> Lineage | None:
        return await self.reads.lineage(project, run_id)

    async def ancestry(self, project: str, run_id: str) -> list[str] | None:
        return await self.reads.ancestry(project, run_id)

    async def run_count(self, project: str) -> int:
        return await self.reads.run_count(project)

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

    async def stale_runs(self, before: float) -> list[StaleRun]:
        return await self.reads.stale_runs(before)

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        return await self.reads.controls(runs)


async def _quietly(closing: Awaitable[None]) -> None:
    """Await a close; a connection that is already gone has nothing left to close."""
    try:
        await closing
    except Exception as exc:
        if not driver_error(exc):
            raise
