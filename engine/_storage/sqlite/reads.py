"""Reads of the SQLite log and projections, on the reader connection.

Every read holds the reader lock: statements run inside a read transaction only when one read
needs several of them to agree, and a lone statement must not land inside another task's
snapshot (it would see the past).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import anyio

from engine._core.events import Record
from engine._core.model import Experiment, Lineage, RunState, Series
from engine._core.series import BlockRun, Piece, blocks_of_piece, capped, effective_series
from engine._projections.stored import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    lineage_of,
    run_row,
    state_of,
    summary_of,
)
from engine._query.execute import group_runs, select_runs
from engine._query.sql import SQLITE, Compiled
from engine._query.tree import Field, RunGroup, Selection
from engine._storage.contract import EventFilter, RunControl, StaleRun

__all__ = ["SqliteReads"]

_RUN_SELECT = ", ".join(f"r.{c}" for c in RUN_COLUMNS)
Bound = int | float | None


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _fetch(db: aiosqlite.Connection) -> Callable[[Compiled], Awaitable[Sequence[Any]]]:
    async def fetch(statement: Compiled) -> Sequence[Any]:
        return await db.execute_fetchall(statement.sql, statement.params)

    return fetch


class SqliteReads:
    """The read half of the SQLite store."""

    def __init__(self, db: aiosqlite.Connection, lock: anyio.Lock,
                 record: Callable[[Sequence[Any], bool], Record]) -> None:
        self._db = db
        self._lock = lock
        self._record = record

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                with anyio.CancelScope(shield=True):
                    await self._db.execute("COMMIT")

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def retired_tables(self) -> list[tuple[str]]:
        """Projection tables a rebuild swapped out and nobody dropped yet."""
        rows = await self._fetch(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '%\\_\\_old' "
            "ESCAPE '\\'")
        return [(r[0],) for r in rows]

    # The log -------------------------------------------------------------------------------

    async def head(self) -> int:
        (head,), = await self._fetch("SELECT coalesce(max(position), 0) FROM events")
        return int(head)

    async def read(self, after: int, *, limit: int, where: EventFilter,
                   arrays: bool) -> tuple[list[Record], int]:
        sql = [f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? AND position <= ?"]
        params: list[Any] = []
        if where.project is not None:
            sql.append("AND project = ?")
            params.append(where.project)
        if where.run_ids is not None:
            sql.append(f"AND run_id IN ({_marks(len(where.run_ids))})")
            params.extend(sorted(where.run_ids))
        if where.types is not None:
            sql.append(f"AND type IN ({_marks(len(where.types))})")
            params.extend(sorted(where.types))
        sql.append("ORDER BY position LIMIT ?")
        async with self._snapshot() as db:
            (head,), = await db.execute_fetchall("SELECT coalesce(max(position), 0) FROM events")
            rows = await db.execute_fetchall(" ".join(sql), (after, head, *params, limit))
        records = [self._record(r, arrays) for r in rows]
        covered = records[-1].position if len(records) == limit else max(head, after)
        return records, covered

    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]:
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE project = ? AND "
            f"run_id IN ({_marks(len(run_ids))}) AND position <= ? ORDER BY position",
            (project, *run_ids, upto))
        return [self._record(r, True) for r in rows]

    # Runs ----------------------------------------------------------------------------------

    async def get_run(self, project: str, run_id: str) -> RunState | None:
        rows = await self._fetch(
            f"SELECT {_RUN_SELECT}, m.metric, m.count, m.last, m.last_step, m.min, m.max "
            "FROM runs r LEFT JOIN metrics m ON m.rk = r.rk "
            "WHERE r.project = ? AND r.run_id = ?", (project, run_id))
        if not rows:
            return None
        width = len(RUN_COLUMNS)
        metrics = {r[width]: summary_of(*r[width + 1 :]) for r in rows if r[width] is not None}
        return state_of(run_row(rows[0][:width]), metrics)

    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]:
        async with self._snapshot() as db:
            return await select_runs(_fetch(db), SQLITE, project, selection or Selection(),
                                     include_deleted=include_deleted)

    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]:
        async with self._snapshot() as db:
            return await group_runs(_fetch(db), SQLITE, project, selection, by, aggregates,
                                    include_deleted=include_deleted)

    async def ancestry(self, project: str, run_id: str) -> list[str] | None:
        async with self._snapshot() as db:
            found = await db.execute_fetchall(
                "SELECT rk FROM runs WHERE project = ? AND run_id = ?", (project, run_id))
            if not found:
                return None
            rows = await db.execute_fetchall(
                "SELECT r.run_id FROM lineage l JOIN runs r ON r.rk = l.ancestor "
                "WHERE l.descendant = ? ORDER BY l.depth", (found[0][0],))
        return [run_id, *(r[0] for r in rows)]

    # Series --------------------------------------------------------------------------------

    async def read_series(self, project: str, run_id: str, metric: str, *, low: Bound,
                          high: Bound, max_points: int | None) -> Series | None:
        async with self._snapshot() as db:
            found = await db.execute_fetchall(
                "SELECT rk, epoch FROM runs WHERE project = ? AND run_id = ?", (project, run_id))
            if not found:
                return None
            (rk, epoch), = found
            plan: list[tuple[int, int, Bound]] = [
                (src, ep, cap) for src, ep, cap in await db.execute_fetchall(
                    "SELECT src_rk, src_epoch, cap FROM series_segments WHERE rk = ? "
                    "AND metric = ? ORDER BY idx", (rk, metric))]
            plan.append((rk, epoch, None))
            return await effective_series(
                plan, max_points,
                lambda seg: self._block_runs(db, metric, seg, low, high),
                lambda seg: self._pieces(db, metric, seg, low, high))

    @staticmethod
    def _bounds(seg: tuple[int, int, Bound], low: Bound,
                high: Bound) -> tuple[str, list[Any], Bound]:
        src, epoch, cap = seg
        hi = capped(cap, high)
        sql = ["rk = ? AND metric = ? AND epoch = ?"]
        params: list[Any] = [src, None, epoch]
        if hi is not None:
            sql.append("AND first_step <= ?")
            params.append(hi)
        if low is not None:
            sql.append("AND last_step >= ?")
            params.append(low)
        return " ".join(sql), params, hi

    async def _pieces(self, db: aiosqlite.Connection, metric: str, seg: tuple[int, int, Bound],
                      low: Bound, high: Bound) -> list[tuple[Piece, Bound, Bound]]:
        where, params, hi = self._bounds(seg, low, high)
        params[1] = metric
        rows = await db.execute_fetchall(
            f"SELECT n, first_step, last_step, steps, vals, times FROM series_chunks "
            f"WHERE {where} ORDER BY seq", params)
        return [(Piece(n, first, last, st, va, ti, None), low, hi)
                for n, first, last, st, va, ti in rows]

    async def _block_runs(self, db: aiosqlite.Connection, metric: str,
                          seg: tuple[int, int, Bound], low: Bound, high: Bound) -> list[BlockRun]:
        where, params, hi = self._bounds(seg, low, high)
        params[1] = metric
        # Point columns only for the chunks a bound cuts through; the rest by their summaries.
        cut = "(? IS NOT NULL AND last_step > ?) OR (? IS NOT NULL AND first_step < ?)"
        rows = await db.execute_fetchall(
            "SELECT n, first_step, last_step, blocks, "
            f"CASE WHEN {cut} THEN steps END, CASE WHEN {cut} THEN vals END, "
            f"CASE WHEN {cut} THEN times END, substr(steps, 1, 1) "
            f"FROM series_chunks WHERE {where} ORDER BY seq",
            (*(hi, hi, low, low) * 3, *params))
        runs = []
        for n, first, last, blocks, steps, values, times, code in rows:
            piece = Piece(n, first, last, steps or code, values, times, blocks)
            run = blocks_of_piece(piece, low, hi)
            if run.counts:
                runs.append(run)
        return runs

    # Experiments and lineage ---------------------------------------------------------------

    async def get_experiment(self, project: str, name: str) -> Experiment:
        rows = await self._fetch(
            "SELECT r.run_id, r.rk = e.head FROM runs r JOIN experiments e "
            "ON e.project = r.project AND e.name = r.experiment "
            "WHERE r.project = ? AND r.experiment = ? ORDER BY r.rk", (project, name))
        head = next((run_id for run_id, is_head in rows if is_head), None)
        return Experiment(name, head, tuple(r[0] for r in rows))

    async def lineage(self, project: str, run_id: str) -> Lineage | None:
        async with self._snapshot() as db:
            found = await db.execute_fetchall(
                "SELECT rk FROM runs WHERE project = ? AND run_id = ?", (project, run_id))
            if not found:
                return None
            rk = found[0][0]
            ancestors = await db.execute_fetchall(
                "SELECT r.run_id, l.step FROM lineage l JOIN runs r ON r.rk = l.ancestor "
                "WHERE l.descendant = ? ORDER BY l.depth", (rk,))
            descendants = await db.execute_fetchall(
                "SELECT r.run_id, r.fork_step, l.depth FROM lineage l "
                "JOIN runs r ON r.rk = l.descendant WHERE l.ancestor = ? "
                "ORDER BY l.depth, l.descendant", (rk,))
        return lineage_of(run_id, ancestors, descendants)

    # Liveness ------------------------------------------------------------------------------

    async def stale_runs(self, before: float) -> list[StaleRun]:
        rows = await self._fetch(
            "SELECT r.project, r.run_id, r.version, max(coalesce(h.beat_at, 0), r.updated_at) "
            "AS seen FROM runs r LEFT JOIN heartbeats h "
            "ON h.project = r.project AND h.run_id = r.run_id "
            "WHERE r.status = 'running' AND r.deleted = 0 AND seen < ?", (before,))
        return [StaleRun(*r) for r in rows]

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        if not runs:
            return {}
        rows = await self._fetch(
            "SELECT project, run_id, started_position, abort_position, abort_reason, status, "
            "floor FROM runs WHERE (project, run_id) IN "
            f"(VALUES {','.join(['(?, ?)'] * len(runs))})",
            [x for key in runs for x in key])
        return {(p, r): RunControl(*rest) for p, r, *rest in rows}

    async def run_count(self, project: str) -> int:
        rows = await self._fetch("SELECT runs FROM projects WHERE project = ?", (project,))
        return int(rows[0][0]) if rows else 0
