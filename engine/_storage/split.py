"""A store in two halves: the backend's writer, and a read half every read goes to.

Both backends read through an object of their own (``SqliteReads`` on the reader
connection, ``PostgresReads`` on the reader pool) and write through a committer. This base
class answers every read of the :class:`~engine._store.Store` contract from ``reads``, so a
backend writes only what differs: opening, appending, heartbeats and rebuilds.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Protocol

from engine._core.events import Record
from engine._core.model import Experiment, Lineage, RunState, Series
from engine._query.tree import Field, RunGroup, Selection

from .contract import ANY, EventFilter, RunControl, StaleRun, Store

__all__ = ["SplitStore", "StoreReads"]


class StoreReads(Protocol):
    """What a backend's read half answers (the read methods of ``Store``)."""

    async def head(self) -> int: ...

    async def read(self, after: int, *, limit: int, where: EventFilter,
                   arrays: bool) -> tuple[list[Record], int]: ...

    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]: ...

    async def get_run(self, project: str, run_id: str) -> RunState | None: ...

    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]: ...

    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]: ...

    async def read_series(self, project: str, run_id: str, metric: str, *,
                          low: int | float | None, high: int | float | None,
                          max_points: int | None) -> Series | None: ...

    async def get_experiment(self, project: str, name: str) -> Experiment: ...

    async def lineage(self, project: str, run_id: str) -> Lineage | None: ...

    async def ancestry(self, project: str, run_id: str) -> list[str] | None: ...

    async def run_count(self, project: str) -> int: ...

    async def stale_runs(self, before: float) -> list[StaleRun]: ...

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]: ...


class SplitStore(Store):
    """A ``Store`` whose reads are all answered by :attr:`reads`."""

    @property
    @abstractmethod
    def reads(self) -> StoreReads:
        """The read half.

        :raises ClosedError: if the store is closed.
        """

    async def head(self) -> int:
        return await self.reads.head()

    async def read(self, after: int, *, limit: int, where: EventFilter = ANY,
                   arrays: bool = False) -> tuple[list[Record], int]:
        return await self.reads.read(after, limit=limit, where=where, arrays=arrays)

    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]:
        return await self.reads.stream_records(project, run_ids, upto)

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

    async def stale_runs(self, before: float) -> list[StaleRun]:
        return await self.reads.stale_runs(before)

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        return await self.reads.controls(runs)
