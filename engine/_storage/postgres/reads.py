"""Reads of the PostgreSQL log and projections, on pooled reader connections.

A read that needs several statements to agree runs them in one read-only REPEATABLE READ
snapshot (taken once the projection tables are locked for reading: see ``_postgres_conn``);
a lone statement is its own snapshot. Reading the log pairs the head with the page
in a single statement, so the position a read reports as covered is exact: every event at or
below the head is visible in that snapshot (appends commit in position order; see
``_postgres_commit``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from engine._core.events import Record, Upcasters
from engine._core.model import Experiment, Lineage, RunState, Series
from engine._core.series import BlockRun, Piece, PlanStep, blocks_of_piece, capped, effective_series
from engine._projections.stored import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    lineage_of,
    record_of,
    run_row,
    state_of,
    summary_of,
)
from engine._query.execute import group_runs, select_runs
from engine._query.sql import POSTGRES, Compiled
from engine._query.tree import Field, RunGroup, Selection
from engine._storage.contract import EventFilter, RunControl, StaleRun

from .connection import Readers

__all__ = ["PostgresReads"]

_RUN_SELECT = ", ".join(f"r.{c}" for c in RUN_COLUMNS)
_EVENT_SELECT = ", ".join(f"e.{c}" for c in EVENT_COLUMNS.split(", "))
Bound = int | float | None


class PostgresReads:
    """The read half of the PostgreSQL store."""

    def __init__(self, readers: Readers, upcasters: Upcasters) -> None:
        self._readers = readers
        self._upcasters = upcasters

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        async def work(connection: asyncpg.Connection) -> list[asyncpg.Record]:
            return await connection.fetch(sql, *params)

        return await self._readers.run(work)

    # The log -------------------------------------------------------------------------------

    async def head(self) -> int:
        (row,) = await self._fetch("SELECT coalesce(max(position), 0) FROM events")
        return int(row[0])

    async def read(self, after: int, *, limit: int, where: EventFilter,
                   arrays: bool) -> tuple[list[Record], int]:
        sql = ["position > $1 AND position <= h.head"]
        params: list[Any] = [after, limit]
        if where.project is not None:
            params.append(where.project)
            sql.append(f"project = ${len(params)}")
        if where.run_ids is not None:
            params.append(sorted(where.run_ids))
            sql.append(f"run_id = ANY(${len(params)}::text[])")
        if where.types is not None:
            params.append(sorted(where.types))
            sql.append(f"type = ANY(${len(params)}::text[])")
        rows = await self._fetch(
            f"SELECT h.head, {_EVENT_SELECT} "
            "FROM (SELECT coalesce(max(position), 0) AS head FROM events) h "
            f"LEFT JOIN LATERAL (SELECT * FROM events WHERE {' AND '.join(sql)} "
            "ORDER BY position LIMIT $2) e ON TRUE ORDER BY e.position", *params)
        head = rows[0][0]
        records = [record_of(r[1:], arrays, self._upcasters) for r in rows if r[1] is not None]
        covered = records[-1].position if len(records) == limit else max(head, after)
        return records, covered

    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]:
        rows = await self._fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE project = $1 AND run_id = ANY($2::text[]) "
            "AND position <= $3 ORDER BY position", project, list(run_ids), upto)
        return [record_of(r, True, self._upcasters) for r in rows]

    # Runs ----------------------------------------------------------------------------------

    async def get_run(self, project: str, run_id: str) -> RunState | None:
        rows = await self._fetch(
            f"SELECT {_RUN_SELECT}, m.metric, m.count, m.last, m.last_step, m.min, m.max "
            "FROM runs r LEFT JOIN metrics m ON m.rk = r.rk "
            "WHERE r.project = $1 AND r.run_id = $2", project, run_id)
        if not rows:
            return None
        width = len(RUN_COLUMNS)
        metrics = {r[width]: summary_of(*tuple(r)[width + 1 :])
                   for r in rows if r[width] is not None}
        return state_of(run_row(tuple(rows[0])[:width]), metrics)

    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]:
        async def work(connection: asyncpg.Connection) -> list[RunState]:
            return await select_runs(_fetcher(connection), POSTGRES, project,
                                     selection or Selection(), include_deleted=include_deleted)

        return await self._readers.run(work, snapshot=True)

    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]:
        async def work(connection: asyncpg.Connection) -> list[RunGroup]:
            return await group_runs(_fetcher(connection), POSTGRES, project, selection, by,
                                    aggregates, include_deleted=include_deleted)

        return await self._readers.run(work, snapshot=True)

    async def ancestry(self, project: str, run_id: str) -> list[str] | None:
        rows = await self._fetch(
            "SELECT r.rk, a.run_id FROM runs r LEFT JOIN lineage l ON l.descendant = r.rk "
            "LEFT JOIN runs a ON a.rk = l.ancestor WHERE r.project = $1 AND r.run_id = $2 "
            "ORDER BY l.depth", project, run_id)
        if not rows:
            return None
        return [run_id, *(r[1] for r in rows if r[1] is not None)]

    # Series --------------------------------------------------------------------------------

    async def read_series(self, project: str, run_id: str, metric: str, *, low: Bound,
                          high: Bound, max_points: int | None) -> Series | None:
        async def work(connection: asyncpg.Connection) -> Series | None:
            found = await connection.fetchrow(
                "SELECT rk, epoch FROM runs WHERE project = $1 AND run_id = $2",
                project, run_id)
            if found is None:
                return None
            rk, epoch = found
            plan: list[PlanStep] = [(src, ep, cap) for src, ep, cap in await connection.fetch(
                "SELECT src_rk, src_epoch, cap FROM series_segments WHERE rk = $1 "
                "AND metric = $2 ORDER BY idx", rk, metric)]
            plan.append((rk, epoch, None))
            return await effective_series(
                plan, max_points,
                lambda seg: _block_runs(connection, metric, seg, low, high),
                lambda seg: _pieces(connection, metric, seg, low, high))

        return await self._readers.run(work, snapshot=True)

    # Experiments and lineage ---------------------------------------------------------------

    async def get_experiment(self, project: str, name: str) -> Experiment:
        rows = await self._fetch(
            "SELECT r.run_id, r.rk = e.head FROM runs r JOIN experiments e "
            "ON e.project = r.project AND e.name = r.experiment "
            "WHERE r.project = $1 AND r.experiment = $2 ORDER BY r.rk", project, name)
        head = next((run_id for run_id, is_head in rows if is_head), None)
        return Experiment(name, head, tuple(r[0] for r in rows))

    async def lineage(self, project: str, run_id: str) -> Lineage | None:
        async def work(connection: asyncpg.Connection) -> Lineage | None:
            rk = await connection.fetchval(
                "SELECT rk FROM runs WHERE project = $1 AND run_id = $2", project, run_id)
            if rk is None:
                return None
            ancestors = await connection.fetch(
                "SELECT r.run_id, l.step FROM lineage l JOIN runs r ON r.rk = l.ancestor "
                "WHERE l.descendant = $1 ORDER BY l.depth", rk)
            descendants = await connection.fetch(
                "SELECT r.run_id, r.fork_step, l.depth FROM lineage l "
                "JOIN runs r ON r.rk = l.descendant WHERE l.ancestor = $1 "
                "ORDER BY l.depth, l.descendant", rk)
            return lineage_of(run_id, ancestors, descendants)

        return await self._readers.run(work, snapshot=True)

    # Liveness ------------------------------------------------------------------------------

    async def stale_runs(self, before: float) -> list[StaleRun]:
        seen = "greatest(coalesce(h.beat_at, 0), r.updated_at)"
        rows = await self._fetch(
            f"SELECT r.project, r.run_id, r.version, {seen} FROM runs r LEFT JOIN heartbeats h "
            "ON h.project = r.project AND h.run_id = r.run_id "
            f"WHERE r.status = 'running' AND r.deleted = 0 AND {seen} < $1", before)
        return [StaleRun(*r) for r in rows]

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        if not runs:
            return {}
        rows = await self._fetch(
            "SELECT project, run_id, started_position, abort_position, abort_reason, status, "
            "floor FROM runs WHERE (project, run_id) IN "
            "(SELECT * FROM unnest($1::text[], $2::text[]))",
            [p for p, _ in runs], [r for _, r in runs])
        return {(p, r): RunControl(*rest) for p, r, *rest in rows}

    async def run_count(self, project: str) -> int:
        rows = await self._fetch("SELECT runs FROM projects WHERE project = $1", project)
        return int(rows[0][0]) if rows else 0

    async def retired_tables(self) -> list[str]:
        """Projection tables a rebuild swapped out and nobody dropped yet."""
        rows = await self._fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE '%\\_\\_old'")
        return [r[0] for r in rows]


def _fetcher(connection: asyncpg.Connection) -> Any:
    async def fetch(statement: Compiled) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await connection.fetch(statement.sql, *statement.params)]

    return fetch


def _segment_where(seg: PlanStep, metric: str, low: Bound,
                   high: Bound) -> tuple[str, list[Any], Bound]:
    src, epoch, cap = seg
    hi = capped(cap, high)
    sql = ["rk = $1 AND metric = $2 AND epoch = $3"]
    params: list[Any] = [src, metric, epoch]
    if hi is not None:
        params.append(hi)
        sql.append(f"first_step <= ${len(params)}")
    if low is not None:
        params.append(low)
        sql.append(f"last_step >= ${len(params)}")
    return " AND ".join(sql), params, hi


async def _pieces(connection: asyncpg.Connection, metric: str, seg: PlanStep, low: Bound,
                  high: Bound) -> list[tuple[Piece, Bound, Bound]]:
    where, params, hi = _segment_where(seg, metric, low, high)
    rows = await connection.fetch(
        f"SELECT n, first_step, last_step, steps, vals, times FROM series_chunks "
        f"WHERE {where} ORDER BY seq", *params)
    return [(Piece(n, first, last, st, va, ti, None), low, hi)
            for n, first, last, st, va, ti in rows]


async def _block_runs(connection: asyncpg.Connection, metric: str, seg: PlanStep, low: Bound,
                      high: Bound) -> list[BlockRun]:
    where, params, hi = _segment_where(seg, metric, low, high)
    # Point columns only for the chunks a bound cuts through; the rest by their summaries.
    cuts = []
    if hi is not None:
        params.append(hi)
        cuts.append(f"last_step > ${len(params)}")
    if low is not None:
        params.append(low)
        cuts.append(f"first_step < ${len(params)}")
    cut = " OR ".join(cuts) or "FALSE"
    rows = await connection.fetch(
        "SELECT n, first_step, last_step, blocks, "
        f"CASE WHEN {cut} THEN steps END, CASE WHEN {cut} THEN vals END, "
        f"CASE WHEN {cut} THEN times END, substring(steps FROM 1 FOR 1) "
        f"FROM series_chunks WHERE {where} ORDER BY seq", *params)
    runs = []
    for n, first, last, blocks, steps, values, times, code in rows:
        piece = Piece(n, first, last, steps or code, values, times, blocks)
        run = blocks_of_piece(piece, low, hi)
        if run.counts:
            runs.append(run)
    return runs
