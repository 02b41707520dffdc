"""The tracker's reads: runs, series, experiments, lineage and the log, as frozen values.

They need only the store's reader side, so they live apart from the tracker's lifecycle,
writes and subscriptions; ``Tracker`` (``tracker``) inherits them and supplies the open
store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import replace

from engine._core.model import Event, Experiment, Lineage, RunState, Series
from engine._core.series import downsample, within
from engine._core.validate import check_name, check_position, check_project
from engine._query.evaluate import group_states, select_states
from engine._query.export import RunsTable, parse_columns
from engine._query.parser import parse_aggregates, parse_group_by, selection
from engine._query.tree import RunGroup
from engine._storage.contract import EventFilter, Store
from engine.errors import RunNotFoundError, ValidationError

from .entries import EntryReads
from .files import FileReads
from .past import AsOf, chain_fold, moment_of, position_of, project_fold
from .subscriptions import Pager

__all__ = ["TrackerReads"]


class TrackerReads(EntryReads, FileReads, ABC):
    """The read half of the tracker's API, over the store the tracker opened."""

    project: str
    _clock: Callable[[], float]  # the instant reads judge heartbeat promises at

    @abstractmethod
    async def _reader(self) -> Store:
        """The open store, once the runs this tracker created and has not yet committed are
        (a read must find the run its own ``start_run`` just created).

        :raises ClosedError: when the tracker is not open.
        """

    def _project(self, project: str | None) -> str:
        return self.project if project is None else check_project(project)

    async def _state_or_raise(self, project: str, run_id: str) -> RunState:
        store = await self._reader()
        state = await store.get_run(project, run_id, now=self._clock())
        if state is None:
            raise RunNotFoundError(f"no run {run_id!r} in project {project!r}")
        return state

    async def list_projects(self) -> dict[str, int]:
        """Every project of the database that has runs, by name, with how many runs each
        ever created (deleted ones included)."""
        return await (await self._reader()).projects()

    async def get_run(self, run_id: str, *, as_of: AsOf | None = None,
                      project: str | None = None) -> RunState:
        """The run's state now, or as it was at ``as_of``: a log position (inclusive) or a
        ``datetime`` (the last event recorded at or before it; naive means UTC).

        A running run that has broken its heartbeat promise — silent for longer than the
        crash timeout it was started with — reads ``crashed`` from that instant on, whether
        or not a reaper has recorded it yet; ``as_of`` judges it at that point of the past
        (see docs/runs.md, Liveness).

        :raises RunNotFoundError: if there is no such run (or none yet at ``as_of``).
        """
        store = await self._reader()
        project = self._project(project)
        if as_of is None:
            return await self._state_or_raise(project, run_id)
        upto = await position_of(store, project, as_of)
        fold = await chain_fold(store, project, run_id, upto)
        if fold is None:
            raise RunNotFoundError(f"no run {run_id!r} in project {project!r}")
        if not fold.has_run(project, run_id):
            raise RunNotFoundError(f"run {run_id!r} did not exist yet at position {upto}")
        return fold.run_state(project, run_id,
                              at=await moment_of(store, as_of, upto, self._clock()))

    async def list_runs(self, where: str | None = None, *,
                        order_by: str | Sequence[str] | None = None, limit: int | None = None,
                        offset: int = 0, include_deleted: bool = False,
                        heads_only: bool = False, as_of: AsOf | None = None,
                        project: str | None = None) -> list[RunState]:
        """The project's runs that match ``where``, sorted by ``order_by`` (see
        [the query language][the-where-language]).

        ``where`` is a query such as ``"metrics.train/acc > 0.9 or config.optimizer = 'adam'"``;
        ``order_by`` comma-separated fields, ``-`` for descending, such as
        ``"-metrics.train/acc.max, created_at"`` — missing values sort last either way, and
        ties (and no ``order_by``) go oldest first. ``limit`` and ``offset`` page the result.
        Deleted runs are left out unless ``include_deleted``; ``heads_only`` keeps only the
        runs that are the head of their experiment. With ``as_of`` (a position or a
        ``datetime``), the runs as they were then: the project's log up to it is folded and
        the query evaluated over it, with the same semantics.

        :raises QuerySyntaxError: for a ``where`` or ``order_by`` that does not parse, with
            the position of the problem.
        :raises ValidationError: for a bad ``limit``, ``offset``, ``as_of`` or ``project``.
        """
        store = await self._reader()
        picked = selection(where, order_by, limit, offset, heads_only)
        project = self._project(project)
        if as_of is None:
            return await store.list_runs(project, include_deleted=include_deleted,
                                         selection=replace(picked, now=self._clock()))
        upto = await position_of(store, project, as_of)
        fold = await project_fold(store, project, upto)
        at = await moment_of(store, as_of, upto, self._clock())
        states = [s for s in fold.run_states(project, at=at)
                  if include_deleted or not s.deleted]
        return select_states(states, picked, heads=fold.heads(project))

    async def group_runs(self, by: str | Sequence[str], *, where: str | None = None,
                         aggregates: str | Sequence[str] | None = None,
                         include_deleted: bool = False, heads_only: bool = False,
                         as_of: AsOf | None = None,
                         project: str | None = None) -> list[RunGroup]:
        """The runs matching ``where``, grouped by the values of ``by`` (W&B's grouping).

        ``by`` is one field or several — run fields such as ``experiment`` or ``status`` and
        config paths such as ``config.optimizer``. ``aggregates`` names metric aggregates such
        as ``"metrics.train/loss.min, metrics.acc"``; each group gets the count, mean, min
        and max of each over its runs (NaN and missing values passed over). Without
        ``aggregates``, every metric's ``last``. Groups come in the order of their keys,
        missing values last. ``as_of`` groups the runs as they were then (see
        ``list_runs``).

        :raises QuerySyntaxError: for a ``by``, ``where`` or ``aggregates`` that does not
            parse.
        """
        store = await self._reader()
        fields = parse_group_by(by)
        wanted = parse_aggregates(aggregates)
        picked = selection(where, None, None, 0, heads_only)
        project = self._project(project)
        if as_of is None:
            return await store.group_runs(project, include_deleted=include_deleted,
                                          selection=replace(picked, now=self._clock()),
                                          by=fields, aggregates=wanted)
        runs = await self.list_runs(where, include_deleted=include_deleted,
                                    heads_only=heads_only, as_of=as_of, project=project)
        return group_states(runs, fields, wanted)

    async def fetch_runs_table(self, where: str | None = None, *,
                               order_by: str | Sequence[str] | None = None,
                               limit: int | None = None, offset: int = 0,
                               columns: str | Sequence[str] | None = None,
                               include_deleted: bool = False, heads_only: bool = False,
                               as_of: AsOf | None = None,
                               project: str | None = None) -> RunsTable:
        """``list_runs`` flattened into a ``RunsTable`` — one column per run field, config
        path and metric aggregate, or the ``columns`` named — ready for ``to_csv()``,
        ``to_jsonl()`` or ``to_pandas()``.

        :raises QuerySyntaxError: for a query, ordering or column that does not parse.
        """
        if columns is not None:
            parse_columns(columns)  # refuse a bad column before reading anything
        runs = await self.list_runs(where, order_by=order_by, limit=limit, offset=offset,
                                    include_deleted=include_deleted, heads_only=heads_only,
                                    as_of=as_of, project=project)
        return RunsTable.from_runs(runs, columns)

    async def read_series(self, run_id: str, metric: str, *, min_step: int | float | None = None,
                          max_step: int | float | None = None, max_points: int | None = None,
                          as_of: AsOf | None = None, project: str | None = None) -> Series:
        """The run's series for ``metric`` — inherited points first for a fork, only points up
        to the rewind step after a rewind — within ``[min_step, max_step]``.

        With ``max_points`` (at least 4) the series is downsampled for charts: buckets of
        consecutive points each keep their first, last, min and max point. ``as_of`` (a
        position or a ``datetime``) gives the series as it was then.

        :raises RunNotFoundError: if there is no such run (or none yet at ``as_of``).
        """
        store = await self._reader()
        project = self._project(project)
        for name, bound in (("min_step", min_step), ("max_step", max_step)):
            if bound is not None and (type(bound) not in (int, float) or bound != bound):
                raise ValidationError(f"{name} must be a number, not {bound!r}", key=name)
        # Past 64 bits an int bound means the same as the float nearest it (no step is
        # that large), and a store can bind a float.
        if type(min_step) is int and abs(min_step) >= 2**63:
            min_step = float(min_step)
        if type(max_step) is int and abs(max_step) >= 2**63:
            max_step = float(max_step)
        if max_points is not None and (type(max_points) is not int or max_points < 4):
            raise ValidationError(f"max_points must be an int >= 4, not {max_points!r}",
                                  key="max_points")
        if as_of is not None:
            return await self._past_series(store, project, run_id, metric, as_of, min_step,
                                           max_step, max_points)
        series = await store.read_series(project, run_id, metric, low=min_step, high=max_step,
                                         max_points=max_points)
        if series is None:
            raise RunNotFoundError(f"no run {run_id!r} in project {project!r}")
        return series

    async def _past_series(self, store: Store, project: str, run_id: str, metric: str,
                           as_of: AsOf, low: int | float | None, high: int | float | None,
                           max_points: int | None) -> Series:
        upto = await position_of(store, project, as_of)
        fold = await chain_fold(store, project, run_id, upto)
        if fold is None or not fold.has_run(project, run_id):
            raise RunNotFoundError(f"no run {run_id!r} in project {project!r} at position "
                                   f"{upto}")
        series = within(fold.series(project, run_id, metric), low, high)
        if max_points is not None and len(series) > max_points:
            return downsample(series, (), len(series), max_points)
        return series

    async def get_experiment(self, name: str, *, as_of: AsOf | None = None,
                             project: str | None = None) -> Experiment:
        """The experiment's head (its newest run not deleted) and history (oldest first),
        now or as they were at ``as_of`` (a position or a ``datetime``)."""
        store = await self._reader()
        project = self._project(project)
        name = check_name(name, "experiment")
        if as_of is None:
            return await store.get_experiment(project, name)
        fold = await project_fold(store, project, await position_of(store, project, as_of))
        return fold.experiment(project, name)

    async def lineage(self, run_id: str, *, as_of: AsOf | None = None,
                      project: str | None = None) -> Lineage:
        """The run's ancestors (parent first) and descendants, now or as they were at
        ``as_of`` (a position or a ``datetime``).

        :raises RunNotFoundError: if there is no such run (or none yet at ``as_of``).
        """
        store = await self._reader()
        project = self._project(project)
        if as_of is not None:
            fold = await project_fold(store, project,
                                      await position_of(store, project, as_of))
            if not fold.has_run(project, run_id):
                raise RunNotFoundError(f"no run {run_id!r} in project {project!r} at "
                                       f"{as_of!r}")
            return fold.lineage(project, run_id)
        found = await store.lineage(project, run_id)
        if found is None:
            raise RunNotFoundError(f"no run {run_id!r} in project {project!r}")
        return found

    async def events(self, from_position: int = 0, *,
                     project: str | None = None) -> AsyncGenerator[Event, None]:
        """The project's events after ``from_position`` (the last position already seen), in
        log order, up to the end of the log."""
        store = await self._reader()
        check_position(from_position, "from_position")
        where = EventFilter(project=self._project(project))
        after = from_position
        pager = Pager()
        while True:
            limit = pager.limit
            records, covered = await store.read(after, limit=limit, where=where)
            pager.adapt(records)
            for record in records:
                yield record.to_event()
            if len(records) < limit:
                return
            after = covered
