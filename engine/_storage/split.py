"""A store in two halves: a committer every append goes to, and a read half for every read.

Both backends read through the shared :class:`~engine._storage.reads.Reads`, on a reader of
their own (SQLite's reader connection, PostgreSQL's reader pool), append through their
committer (a :class:`~engine._storage.commit.GroupCommit`) and rebuild through the shared
driver (``rebuild``) on a site of their own. This base class answers the rest of the
:class:`~engine._storage.contract.Store` contract from those, so a backend writes only what
differs: connecting and closing, its committer and rebuild site, dropping retired tables and
heartbeats.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from engine._core.content import EntryRow
from engine._core.events import Record
from engine._core.model import Experiment, Lineage, RunState, Series
from engine._query.tree import Field, RunGroup, Selection
from engine.errors import ClosedError, ValidationError

from . import tokens
from .check import check_store
from .commit import GroupCommit
from .contract import (
    ANY,
    AppendRequest,
    EventFilter,
    JobRow,
    Progress,
    RunControl,
    StaleRun,
    Store,
    TokenRow,
)
from .reads import Reads
from .rebuild import CHECK, NEW, RebuildSite, build
from .session import Reader

__all__ = ["SplitStore", "opened"]

C = TypeVar("C", bound=GroupCommit)
T = TypeVar("T")


def opened(part: T | None) -> T:
    """``part`` of a store, which is None once the store is closed (or before it opens).

    :raises ClosedError: if it is None.
    """
    if part is None:
        raise ClosedError("the store is closed")
    return part


class SplitStore(Store, Generic[C]):
    """A ``Store`` whose appends go to :attr:`committer` and whose reads go to :attr:`reads`
    (both set by ``open``, and cleared by ``close``)."""

    _committer: C | None = None
    _reads: Reads | None = None

    @property
    def committer(self) -> C:
        """The write half.

        :raises ClosedError: if the store is closed.
        """
        return opened(self._committer)

    @property
    def reads(self) -> Reads:
        """The read half.

        :raises ClosedError: if the store is closed.
        """
        return opened(self._reads)

    @abstractmethod
    def rebuild_site(self) -> RebuildSite:
        """What a rebuild of this store runs on."""

    @abstractmethod
    async def write_rows(self, sql: str, rows: list[tuple[object, ...]], what: str) -> None:
        """Run one statement (``?`` placeholders) for each row, in one transaction, outside
        the log and its projections (tokens)."""

    @abstractmethod
    async def retired_tables(self) -> list[str]:
        """Projection tables a rebuild swapped out and nobody dropped yet."""

    async def catch_up(self) -> None:
        """Right after opening: drop what an earlier rebuild left, and build the projections
        again from the log when one is behind it (a projection added by a newer release, or
        a database written without them) — unless another process opening at the same time
        has done so by the time this one's turn comes."""
        await self.drop_retired()
        if await self.reads.behind():
            await build(self.rebuild_site(), NEW, None, if_behind=True)

    async def current(self) -> None:
        """Before a read of the projections: make them show everything the log holds (a
        backend that saves them with every commit has nothing to do)."""

    async def append(self, requests: Sequence[AppendRequest], *,
                     now: float) -> list[list[Record] | BaseException]:
        return await self.committer.append(requests, now=now)

    async def check(self, progress: Callable[[int], None] | None = None) -> list[str]:
        await self.current()
        return [str(f) for f in await check_store(self, self.reads.reader, progress,
                                                  self.check_file)]

    async def check_file(self) -> list[str]:
        """What the database itself finds damaged in its files, one line each (a backend
        whose database can tell says so here; the log and projections are checked after)."""
        return []

    async def rebuild(self, progress: Progress | None = None) -> None:
        await build(self.rebuild_site(), NEW, progress)

    async def verify_rebuild(self) -> list[str]:
        await self.current()
        return await build(self.rebuild_site(), CHECK, None)

    async def head(self) -> int:
        return await self.reads.head()

    async def read(self, after: int, *, limit: int, where: EventFilter = ANY,
                   arrays: bool = False) -> tuple[list[Record], int]:
        return await self.reads.read(after, limit=limit, where=where, arrays=arrays)

    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]:
        return await self.reads.stream_records(project, run_ids, upto)

    async def get_run(self, project: str, run_id: str, *,
                      now: float | None = None) -> RunState | None:
        await self.current()
        return await self.reads.get_run(project, run_id, now=now)

    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]:
        await self.current()
        return await self.reads.list_runs(project, include_deleted=include_deleted,
                                          selection=selection)

    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]:
        await self.current()
        return await self.reads.group_runs(project, include_deleted=include_deleted,
                                           selection=selection, by=by, aggregates=aggregates)

    async def read_series(self, project: str, run_id: str, metric: str, *,
                          low: int | float | None, high: int | float | None,
                          max_points: int | None) -> Series | None:
        await self.current()
        return await self.reads.read_series(project, run_id, metric, low=low, high=high,
                                            max_points=max_points)

    @property
    def blob_reader(self) -> Reader:
        return self.reads.reader

    async def read_entries(self, project: str, run_id: str, key: str, *,
                           tail: int | None) -> tuple[str | None, list[EntryRow]] | None:
        await self.current()
        return await self.reads.read_entries(project, run_id, key, tail=tail)

    async def get_experiment(self, project: str, name: str) -> Experiment:
        await self.current()
        return await self.reads.get_experiment(project, name)

    async def lineage(self, project: str, run_id: str) -> Lineage | None:
        await self.current()
        return await self.reads.lineage(project, run_id)

    async def ancestry(self, project: str, run_id: str) -> list[str] | None:
        await self.current()
        return await self.reads.ancestry(project, run_id)

    async def run_count(self, project: str) -> int:
        await self.current()
        return await self.reads.run_count(project)

    async def projects(self) -> dict[str, int]:
        await self.current()
        return await self.reads.projects()

    async def stale_runs(self, now: float, crash_timeout: float) -> list[StaleRun]:
        await self.current()
        return await self.reads.stale_runs(now, crash_timeout)

    async def jobs(self, project: str, *, queues: Sequence[str] | None,
                   statuses: Sequence[str] | None, run_ids: Sequence[str] | None = None,
                   limit: int | None = None, now: float | None = None) -> list[JobRow]:
        await self.current()
        return await self.reads.jobs(project, queues=queues, statuses=statuses,
                                     run_ids=run_ids, limit=limit, now=now)

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        await self.current()
        return await self.reads.controls(runs)

    async def save_token(self, token: TokenRow) -> None:
        if await self.reads.reader.read(lambda s: tokens.find(s, "id", token.id)) or \
                await self.find_token(token.digest):
            raise ValidationError(f"token {token.id!r} already exists", key="id")
        await self.write_rows(tokens.INSERT, [tokens.values(token)], "saving a token")

    async def list_tokens(self, project: str | None) -> list[TokenRow]:
        return await self.reads.reader.read(lambda s: tokens.listed(s, project))

    async def find_token(self, digest: str) -> TokenRow | None:
        return await self.reads.reader.read(lambda s: tokens.find(s, "digest", digest))

    async def revoke_token(self, token_id: str, at: float) -> TokenRow | None:
        await self.write_rows(tokens.REVOKE, [(at, token_id)], "revoking a token")
        return await self.reads.reader.read(lambda s: tokens.find(s, "id", token_id))
