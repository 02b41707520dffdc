"""Every read of the store contract, written once over a backend's reader.

The statements are the same on both backends (``session`` says how they are written and what
little differs). A read that needs several statements to agree runs them in one read
snapshot; a lone statement is its own. Reading the log pairs the head with the page in a
single statement, so the position a read reports as covered is exact: every event at or
below that head is visible to the statement (appends commit in position order on both
backends).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine._core.codec import decode
from engine._core.content import EntryRow
from engine._core.events import Record, Upcasters
from engine._core.model import Experiment, Lineage, RunState, Series
from engine._core.series import (
    BlockRun,
    Piece,
    PlanStep,
    as_step,
    blocks_of_piece,
    capped,
    effective_series,
)
from engine._projections.stored import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    lineage_of,
    record_of,
    run_row,
    state_of,
    summary_of,
    unreadable,
)
from engine._query.execute import group_runs, select_runs
from engine._query.sql import judged_status
from engine._query.tree import Field, RunGroup, Selection

from .contract import EventFilter, JobRow, RunControl, StaleRun
from .session import Reader, Row, Session, greatest, one_of, pairs_in

__all__ = ["BEHIND", "Reads"]

Bound = int | float | None

_HEAD = "SELECT coalesce(max(position), 0) FROM events"
BEHIND = f"SELECT count(*) FROM checkpoints WHERE position <> ({_HEAD})"
"""How many projections are not at the log's head (one statement, one snapshot: an append
between two reads would look like a projection left behind)."""
_HEAD_AS = "SELECT coalesce(max(position), 0) AS head FROM events"
_RUN_SELECT = ", ".join(f"r.{c}" for c in RUN_COLUMNS)
_EVENT_SELECT = ", ".join(f"e.{c}" for c in EVENT_COLUMNS.split(", "))
_ANCESTORS = ("SELECT r.run_id, l.step FROM lineage l JOIN runs r ON r.rk = l.ancestor "
              "WHERE l.descendant = ? ORDER BY l.depth")
_DESCENDANTS = ("SELECT r.run_id, r.fork_step, l.depth FROM lineage l "
                "JOIN runs r ON r.rk = l.descendant WHERE l.ancestor = ? "
                "ORDER BY l.depth, l.descendant")


class Reads:
    """The read half of a store, on ``reader``."""

    def __init__(self, reader: Reader, upcasters: Upcasters) -> None:
        self.reader = reader
        self.upcasters = upcasters

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        async def work(session: Session) -> Sequence[Row]:
            return await session.fetch(sql, params)

        return await self.reader.read(work)

    # The log -------------------------------------------------------------------------------

    async def head(self) -> int:
        (row,) = await self._fetch(_HEAD)
        return int(row[0])

    async def read(self, after: int, *, limit: int, where: EventFilter,
                   arrays: bool) -> tuple[list[Record], int]:
        async def work(session: Session) -> Sequence[Row]:
            sql = ["position > ?", f"position <= ({_HEAD})"]
            params: list[Any] = [after]
            if where.project is not None:
                sql.append("project = ?")
                params.append(where.project)
            for column, values in (("run_id", where.run_ids), ("type", where.types)):
                if values is not None:
                    condition, values_params = one_of(session.dialect, column, sorted(values))
                    sql.append(condition)
                    params.extend(values_params)
            return await session.fetch(
                f"SELECT h.head, {_EVENT_SELECT} FROM ({_HEAD_AS}) h "
                f"LEFT JOIN (SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(sql)} "
                "ORDER BY position LIMIT ?) e ON TRUE ORDER BY e.position", [*params, limit])

        rows = await self.reader.read(work)
        head = rows[0][0]
        records = [record_of(r[1:], arrays, self.upcasters) for r in rows if r[1] is not None]
        covered = records[-1].position if len(records) == limit else max(head, after)
        return records, covered

    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]:
        async def work(session: Session) -> Sequence[Row]:
            condition, params = one_of(session.dialect, "run_id", run_ids)
            return await session.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE project = ? AND {condition} "
                "AND position <= ? ORDER BY position", [project, *params, upto])

        return [record_of(r, True, self.upcasters) for r in await self.reader.read(work)]

    # Runs ----------------------------------------------------------------------------------

    async def get_run(self, project: str, run_id: str, *,
                      now: float | None = None) -> RunState | None:
        async def work(session: Session) -> Sequence[Row]:
            select = _RUN_SELECT
            params: list[Any] = [project, run_id]
            if now is not None:
                select = ", ".join(judged_status(session.dialect.number("?")) if c == "status"
                                   else f"r.{c}" for c in RUN_COLUMNS)
                params = [now, now, *params]
            return await session.fetch(
                f"SELECT {select}, m.metric, m.count, m.last, m.last_step, m.min, m.max "
                "FROM runs r LEFT JOIN metrics m ON m.rk = r.rk "
                "WHERE r.project = ? AND r.run_id = ?", params)

        rows = await self.reader.read(work)
        if not rows:
            return None
        width = len(RUN_COLUMNS)
        with unreadable(f"run {run_id!r} of project {project!r}"):
            metrics = {r[width]: summary_of(*r[width + 1 :])
                       for r in rows if r[width] is not None}
            return state_of(run_row(rows[0][:width]), metrics)

    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]:
        async def work(session: Session) -> list[RunState]:
            return await select_runs(session.query, session.dialect, project,
                                     selection or Selection(), include_deleted=include_deleted)

        with unreadable(f"the runs of project {project!r}"):
            return await self.reader.read(work, snapshot=True)

    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]:
        async def work(session: Session) -> list[RunGroup]:
            return await group_runs(session.query, session.dialect, project, selection, by,
                                    aggregates, include_deleted=include_deleted)

        with unreadable(f"the runs of project {project!r}"):
            return await self.reader.read(work, snapshot=True)

    async def ancestry(self, project: str, run_id: str) -> list[str] | None:
        rows = await self._fetch(
            "SELECT r.rk, a.run_id FROM runs r LEFT JOIN lineage l ON l.descendant = r.rk "
            "LEFT JOIN runs a ON a.rk = l.ancestor WHERE r.project = ? AND r.run_id = ? "
            "ORDER BY l.depth", (project, run_id))
        if not rows:
            return None
        return [run_id, *(r[1] for r in rows if r[1] is not None)]

    # Series --------------------------------------------------------------------------------

    async def read_series(self, project: str, run_id: str, metric: str, *, low: Bound,
                          high: Bound, max_points: int | None) -> Series | None:
        async def work(session: Session) -> Series | None:
            found = await session.fetch(
                "SELECT rk, epoch FROM runs WHERE project = ? AND run_id = ?", (project, run_id))
            if not found:
                return None
            ((rk, epoch),) = found
            plan: list[PlanStep] = [(src, ep, cap) for src, ep, cap in await session.fetch(
                "SELECT src_rk, src_epoch, cap FROM series_segments WHERE rk = ? "
                "AND metric = ? ORDER BY idx", (rk, metric))]
            plan.append((rk, epoch, None))
            return await effective_series(
                plan, max_points,
                lambda seg: _block_runs(session, metric, seg, low, high),
                lambda seg: _pieces(session, metric, seg, low, high))

        with unreadable(f"the series {metric!r} of run {run_id!r}"):
            return await self.reader.read(work, snapshot=True)

    # Entries (text, files, histograms, confusion matrices) --------------------------------

    async def read_entries(self, project: str, run_id: str, key: str, *,
                           tail: int | None) -> tuple[str | None, list[EntryRow]] | None:
        async def work(session: Session) -> tuple[str | None, list[EntryRow]] | None:
            found = await session.fetch(
                "SELECT rk, epoch, kinds, entry_segments FROM runs WHERE project = ? "
                "AND run_id = ?", (project, run_id))
            if not found:
                return None
            ((rk, epoch, kinds, segments),) = found
            known = decode(kinds).get(key) if kinds is not None else None
            plan: list[list[Any]] = decode(segments) if segments is not None else []
            plan.append([rk, epoch, None, None])
            rows: list[EntryRow] = []
            for src, ep, cap, pos in reversed(plan):
                sql = ["rk = ? AND path = ? AND epoch = ?"]
                params: list[Any] = [src, key, ep]
                if cap is not None:
                    sql.append("step <= ?")
                    params.append(cap)
                if pos is not None:
                    sql.append("position < ?")
                    params.append(pos)
                limit = ""
                if tail is not None:
                    limit = " LIMIT ?"
                    params.append(tail - len(rows))
                found = await session.fetch(
                    f"SELECT step, at, value FROM entries WHERE {' AND '.join(sql)} "
                    f"ORDER BY step DESC{limit}", params)
                rows.extend((as_step(step), at, decode(value)) for step, at, value in found)
                if tail is not None and len(rows) >= tail:
                    break
            rows.reverse()
            return (known[0] if known else None), rows

        with unreadable(f"the entries {key!r} of run {run_id!r}"):
            return await self.reader.read(work, snapshot=True)

    # Experiments and lineage ---------------------------------------------------------------

    async def get_experiment(self, project: str, name: str) -> Experiment:
        rows = await self._fetch(
            "SELECT r.run_id, r.rk = e.head FROM runs r JOIN experiments e "
            "ON e.project = r.project AND e.name = r.experiment "
            "WHERE r.project = ? AND r.experiment = ? ORDER BY r.rk", (project, name))
        head = next((run_id for run_id, is_head in rows if is_head), None)
        return Experiment(name, head, tuple(r[0] for r in rows))

    async def lineage(self, project: str, run_id: str) -> Lineage | None:
        async def work(session: Session) -> Lineage | None:
            found = await session.fetch(
                "SELECT rk FROM runs WHERE project = ? AND run_id = ?", (project, run_id))
            if not found:
                return None
            rk = found[0][0]
            ancestors = await session.fetch(_ANCESTORS, (rk,))
            descendants = await session.fetch(_DESCENDANTS, (rk,))
            return lineage_of(run_id, ancestors, descendants)

        return await self.reader.read(work, snapshot=True)

    # Liveness ------------------------------------------------------------------------------

    async def stale_runs(self, now: float, crash_timeout: float) -> list[StaleRun]:
        async def work(session: Session) -> Sequence[Row]:
            seen = greatest(session.dialect, "coalesce(h.beat_at, 0)", "r.updated_at")
            limit = "coalesce(r.crash_timeout, ?)"
            return await session.fetch(
                f"SELECT r.project, r.run_id, r.version, {seen}, {limit}, r.attempt, "
                "r.max_attempts FROM runs r "
                "LEFT JOIN heartbeats h ON h.project = r.project AND h.run_id = r.run_id "
                f"WHERE r.status = 'running' AND r.deleted = 0 AND {seen} + {limit} < ?",
                (crash_timeout, crash_timeout, now))

        return [StaleRun(*r) for r in await self.reader.read(work)]

    async def jobs(self, project: str, *, queues: Sequence[str] | None,
                   statuses: Sequence[str] | None, run_ids: Sequence[str] | None = None,
                   limit: int | None = None) -> list[JobRow]:
        async def work(session: Session) -> Sequence[Row]:
            sql = ["project = ?", "queue IS NOT NULL", "deleted = 0"]
            params: list[Any] = [project]
            for column, values in (("queue", queues), ("status", statuses),
                                   ("run_id", run_ids)):
                if values is not None:
                    condition, more = one_of(session.dialect, column, list(values) or [""])
                    sql.append(condition)
                    params.extend(more)
            window = ""
            if limit is not None:
                window = " LIMIT ?"
                params.append(limit)
            return await session.fetch(
                "SELECT run_id, version, status, queue, job, attempt, max_attempts, worker, "
                f"started_position, created_at FROM runs WHERE {' AND '.join(sql)} "
                f"ORDER BY rk{window}", params)

        rows = await self.reader.read(work)
        with unreadable(f"the jobs of project {project!r}"):
            return [JobRow(r[0], r[1], r[2], r[3], decode(r[4]), *r[5:]) for r in rows]

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        if not runs:
            return {}

        async def work(session: Session) -> Sequence[Row]:
            condition, params = pairs_in(session.dialect, ("project", "run_id"), runs)
            return await session.fetch(
                "SELECT project, run_id, started_position, abort_position, abort_reason, "
                f"status, floor, kinds FROM runs WHERE {condition}", params)

        return {(p, r): RunControl(started, abort, reason, status, floor,
                                   decode(kinds) if kinds is not None else {})
                for p, r, started, abort, reason, status, floor, kinds
                in await self.reader.read(work)}

    async def behind(self) -> bool:
        """Whether some projection is not at the log's head (a projection added by a newer
        release, or a database written without them)."""
        rows = await self._fetch(BEHIND)
        return bool(rows[0][0])

    async def run_count(self, project: str) -> int:
        rows = await self._fetch("SELECT runs FROM projects WHERE project = ?", (project,))
        return int(rows[0][0]) if rows else 0

    async def projects(self) -> dict[str, int]:
        rows = await self._fetch("SELECT project, runs FROM projects ORDER BY project", ())
        return {project: int(runs) for project, runs in rows}


def _segment(seg: PlanStep, metric: str, low: Bound,
             high: Bound) -> tuple[str, list[Any], Bound]:
    """The condition picking a segment's chunks within ``[low, high]``, its parameters, and
    the highest step the segment keeps."""
    src, epoch, cap = seg
    hi = capped(cap, high)
    sql, bounds = _given(("first_step <= ?", hi), ("last_step >= ?", low))
    where = " AND ".join(["rk = ? AND metric = ? AND epoch = ?", *sql])
    return where, [src, metric, epoch, *bounds], hi


def _given(*conditions: tuple[str, Bound]) -> tuple[list[str], list[Any]]:
    """The conditions whose bound is given (not None), and those bounds."""
    given = [(sql, bound) for sql, bound in conditions if bound is not None]
    return [sql for sql, _ in given], [bound for _, bound in given]


async def _pieces(session: Session, metric: str, seg: PlanStep, low: Bound,
                  high: Bound) -> list[tuple[Piece, Bound, Bound]]:
    where, params, hi = _segment(seg, metric, low, high)
    rows = await session.fetch(
        "SELECT n, first_step, last_step, steps, vals, times FROM series_chunks "
        f"WHERE {where} ORDER BY seq", params)
    return [(Piece(n, first, last, st, va, ti, None), low, hi)
            for n, first, last, st, va, ti in rows]


async def _block_runs(session: Session, metric: str, seg: PlanStep, low: Bound,
                      high: Bound) -> list[BlockRun]:
    where, params, hi = _segment(seg, metric, low, high)
    # Point columns only for the chunks a bound cuts through; the rest by their summaries.
    cuts, bounds = _given(("last_step > ?", hi), ("first_step < ?", low))
    cut = " OR ".join(cuts) or "FALSE"
    rows = await session.fetch(
        "SELECT n, first_step, last_step, blocks, "
        f"CASE WHEN {cut} THEN steps END, CASE WHEN {cut} THEN vals END, "
        f"CASE WHEN {cut} THEN times END, substr(steps, 1, 1) "
        f"FROM series_chunks WHERE {where} ORDER BY seq", [*bounds * 3, *params])
    runs = []
    for n, first, last, blocks, steps, values, times, code in rows:
        piece = Piece(n, first, last, steps or code, values, times, blocks)
        run = blocks_of_piece(piece, low, hi)
        if run.counts:
            runs.append(run)
    return runs
