"""Row loads and bulk writes of the projections on PostgreSQL, for the shared projector.

The projector decides what changes (``_rows.change_rows`` lists the writes); this module words
each write once for PostgreSQL — an upsert is ``INSERT … ON CONFLICT (key) DO UPDATE`` — and
sends its rows with ``executemany``, which asyncpg pipelines in one round trip.
"""

from __future__ import annotations

import asyncpg

from engine._core.series import Chunk, null_nan
from engine._projections.rows import (
    PROJECTIONS,
    Changes,
    ChunkHead,
    MetricRow,
    ProjectionIO,
    RunRow,
    Segment,
)
from engine._projections.stored import (
    EVENT_COLUMNS,
    METRIC_COLUMNS,
    RUN_COLUMNS,
    WRITES,
    Write,
    change_rows,
    metric_row,
    run_row,
)
from engine.errors import EngineError

__all__ = ["PostgresIO", "advance", "fetch_events"]


async def fetch_events(connection: asyncpg.Connection, after: int,
                       limit: int) -> list[asyncpg.Record]:
    """Up to ``limit`` events after position ``after``, in order."""
    return await connection.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        after, limit)


async def advance(connection: asyncpg.Connection, suffix: str, head: int,
                  position: int) -> None:
    """Move every checkpoint from ``head`` on to ``position``; refuse to go back, or to move
    checkpoints that are not all at ``head``."""
    if position < head:
        raise EngineError(f"projection checkpoints cannot go back from position {head} to "
                          f"{position}")
    if position == head:
        return
    status = await connection.execute(
        f"UPDATE checkpoints{suffix} SET position = $1 WHERE position = $2", position, head)
    if int(status.rsplit(" ", 1)[-1]) != len(PROJECTIONS):
        raise EngineError(
            f"projection checkpoints are not at position {head}: refusing to apply events "
            "twice or skip them; run `kittiwake rebuild`"
        )


def _statement(write: Write, suffix: str) -> str:
    table = f"{write.table}{suffix}"
    marks = ", ".join(f"${i}" for i in range(1, len(write.columns) + 1))
    if write.action == "delete":
        return "DELETE FROM {} WHERE {}".format(
            table, " AND ".join(f"{c} = ${i}" for i, c in enumerate(write.columns, 1)))
    sql = f"INSERT INTO {table} ({', '.join(write.columns)}) VALUES ({marks})"
    if write.action == "upsert":
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in write.columns if c not in write.key)
        sql += f" ON CONFLICT ({', '.join(write.key)}) DO UPDATE SET {updates}"
    return sql


class PostgresIO(ProjectionIO):
    """Row loads and bulk saves for the projector, inside the caller's transaction on
    ``connection`` (which the owner replaces after a reconnect)."""

    def __init__(self, connection: asyncpg.Connection, suffix: str = "") -> None:
        self.connection = connection
        s = self.s = suffix
        self._sql = {write: _statement(write, s) for write in WRITES}
        self._run = (f"SELECT {', '.join(RUN_COLUMNS)} FROM runs{s} "
                     "WHERE project = $1 AND run_id = $2")
        self._metrics = f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics{s} WHERE rk = $1"

    async def load_run(self, project: str, run_id: str) -> RunRow | None:
        row = await self.connection.fetchrow(self._run, project, run_id)
        return None if row is None else run_row(row)

    async def load_metrics(self, rk: int) -> dict[str, MetricRow]:
        rows = await self.connection.fetch(self._metrics, rk)
        return {r[1]: metric_row(r) for r in rows}

    async def load_segments(self, rk: int) -> dict[str, list[Segment]]:
        rows = await self.connection.fetch(
            f"SELECT metric, src_rk, src_epoch, cap FROM series_segments{self.s} WHERE rk = $1 "
            "ORDER BY metric, idx", rk)
        out: dict[str, list[Segment]] = {}
        for metric, src, epoch, cap in rows:
            out.setdefault(metric, []).append(Segment(src, epoch, cap))
        return out

    async def load_chunk(self, rk: int, metric: str, epoch: int, seq: int) -> Chunk:
        blocks, steps, values, times = await self.connection.fetchrow(
            f"SELECT blocks, steps, vals, times FROM series_chunks{self.s} "
            "WHERE rk = $1 AND metric = $2 AND epoch = $3 AND seq = $4", rk, metric, epoch, seq)
        return Chunk.from_columns(epoch, seq, blocks, steps, values, times)

    async def load_heads(self, rk: int, metric: str, epoch: int,
                         cap: int | float) -> list[ChunkHead]:
        rows = await self.connection.fetch(
            "SELECT n, first_step, last_step, last_value, vmin, vmax, "
            "CASE WHEN last_step > $1 THEN steps END, CASE WHEN last_step > $1 THEN vals END "
            f"FROM series_chunks{self.s} WHERE rk = $2 AND metric = $3 AND epoch = $4 "
            "AND first_step <= $1 ORDER BY seq", cap, rk, metric, epoch)
        return [ChunkHead(n, first, last, null_nan(lv), null_nan(lo), null_nan(hi), st, va)
                for n, first, last, lv, lo, hi, st, va in rows]

    async def load_ancestors(self, rk: int) -> list[tuple[int, int, int | float]]:
        rows = await self.connection.fetch(
            f"SELECT ancestor, depth, step FROM lineage{self.s} WHERE descendant = $1 "
            "ORDER BY depth", rk)
        return [(a, d, s) for a, d, s in rows]

    async def newest_alive(self, project: str, experiment: str) -> int | None:
        rk: int | None = await self.connection.fetchval(
            f"SELECT rk FROM runs{self.s} WHERE project = $1 AND experiment = $2 "
            "AND deleted = 0 ORDER BY rk DESC LIMIT 1", project, experiment)
        return rk

    async def project_runs(self, project: str) -> int:
        runs: int | None = await self.connection.fetchval(
            f"SELECT runs FROM projects{self.s} WHERE project = $1", project)
        return runs or 0

    async def save(self, changes: Changes) -> None:
        for write, rows in change_rows(changes):
            if rows:
                await self.connection.executemany(self._sql[write], rows)

