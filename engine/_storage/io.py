"""Row loads and bulk writes of the projections, written once over a session.

The projector decides what changes (``stored.change_rows`` lists the writes); this module words
each write once for both databases — an upsert is ``INSERT … ON CONFLICT (key) DO UPDATE SET
c = excluded.c``, which SQLite understands as PostgreSQL does — and sends its rows with one
``execute_many`` (asyncpg pipelines them in one round trip; SQLite steps one prepared
statement). Checkpoints move with :func:`advance`, in the transaction that writes the state.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    unreadable,
)
from engine.errors import EngineError

from .session import Row, Session

__all__ = ["HEARTBEAT", "TableIO", "advance", "fetch_events", "save", "statements"]

HEARTBEAT = ("INSERT INTO heartbeats VALUES (?, ?, ?) "
             "ON CONFLICT (project, run_id) DO UPDATE SET beat_at = excluded.beat_at")
"""Records that a run ``(project, run_id)`` is alive at a time."""


async def fetch_events(session: Session, after: int, limit: int) -> Sequence[Row]:
    """Up to ``limit`` events after position ``after``, in order."""
    return await session.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
        (after, limit))


async def advance(session: Session, suffix: str, head: int, position: int) -> None:
    """Move every checkpoint from ``head`` on to ``position``; refuse to go back, or to move
    checkpoints that are not all at ``head``."""
    if position < head:
        raise EngineError(f"projection checkpoints cannot go back from position {head} to "
                          f"{position}")
    if position == head:
        return
    moved = await session.execute(
        f"UPDATE checkpoints{suffix} SET position = ? WHERE position = ?", (position, head))
    if moved != len(PROJECTIONS):
        raise EngineError(
            f"projection checkpoints are not at position {head}: refusing to apply events "
            "twice or skip them; run `kittiwake rebuild`"
        )


def statements(suffix: str) -> dict[Write, str]:
    """Each write, worded for the tables named ``<table><suffix>``."""
    return {write: _statement(write, suffix) for write in WRITES}


def _statement(write: Write, suffix: str) -> str:
    table = f"{write.table}{suffix}"
    if write.action == "delete":
        return f"DELETE FROM {table} WHERE {' AND '.join(f'{c} = ?' for c in write.columns)}"
    sql = (f"INSERT INTO {table} ({', '.join(write.columns)}) "
           f"VALUES ({', '.join('?' * len(write.columns))})")
    if write.action == "upsert":
        updates = ", ".join(f"{c} = excluded.{c}" for c in write.columns if c not in write.key)
        sql += f" ON CONFLICT ({', '.join(write.key)}) DO UPDATE SET {updates}"
    return sql


async def save(session: Session, worded: dict[Write, str], changes: Changes) -> None:
    """Write ``changes`` on ``session`` with the statements ``worded``, inside the caller's
    transaction."""
    for write, rows in change_rows(changes):
        if rows:
            await session.execute_many(worded[write], rows)


class TableIO(ProjectionIO):
    """Row loads and bulk saves for the projector on ``session``, inside its owner's
    transaction, on the tables named ``<table><suffix>``."""

    def __init__(self, session: Session, suffix: str = "") -> None:
        self.session = session
        s = self.suffix = suffix
        self.worded = statements(suffix)
        self._run = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs{s} WHERE project = ? AND run_id = ?"
        self._metrics = f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics{s} WHERE rk = ?"

    async def load_run(self, project: str, run_id: str) -> RunRow | None:
        rows = await self.session.fetch(self._run, (project, run_id))
        with unreadable(f"run {run_id!r} of project {project!r}"):
            return run_row(rows[0]) if rows else None

    async def load_metrics(self, rk: int) -> dict[str, MetricRow]:
        rows = await self.session.fetch(self._metrics, (rk,))
        with unreadable(f"the metrics of run key {rk}"):
            return {r[1]: metric_row(r) for r in rows}

    async def load_segments(self, rk: int) -> dict[str, list[Segment]]:
        rows = await self.session.fetch(
            f"SELECT metric, src_rk, src_epoch, cap FROM series_segments{self.suffix} "
            "WHERE rk = ? ORDER BY metric, idx", (rk,))
        out: dict[str, list[Segment]] = {}
        for metric, src, epoch, cap in rows:
            out.setdefault(metric, []).append(Segment(src, epoch, cap))
        return out

    async def load_chunk(self, rk: int, metric: str, epoch: int, seq: int) -> Chunk:
        ((blocks, steps, values, times),) = await self.session.fetch(
            f"SELECT blocks, steps, vals, times FROM series_chunks{self.suffix} "
            "WHERE rk = ? AND metric = ? AND epoch = ? AND seq = ?", (rk, metric, epoch, seq))
        with unreadable(f"a chunk of {metric!r} of run key {rk}"):
            return Chunk.from_columns(epoch, seq, blocks, steps, values, times)

    async def load_heads(self, rk: int, metric: str, epoch: int,
                         cap: int | float) -> list[ChunkHead]:
        rows = await self.session.fetch(
            "SELECT n, first_step, last_step, last_value, vmin, vmax, "
            "CASE WHEN last_step > ? THEN steps END, CASE WHEN last_step > ? THEN vals END "
            f"FROM series_chunks{self.suffix} WHERE rk = ? AND metric = ? AND epoch = ? "
            "AND first_step <= ? ORDER BY seq", (cap, cap, rk, metric, epoch, cap))
        return [ChunkHead(n, first, last, null_nan(lv), null_nan(lo), null_nan(hi), st, va)
                for n, first, last, lv, lo, hi, st, va in rows]

    async def load_ancestors(self, rk: int) -> list[tuple[int, int, int | float]]:
        rows = await self.session.fetch(
            f"SELECT ancestor, depth, step FROM lineage{self.suffix} WHERE descendant = ? "
            "ORDER BY depth", (rk,))
        return [(a, d, s) for a, d, s in rows]

    async def newest_alive(self, project: str, experiment: str) -> int | None:
        rows = await self.session.fetch(
            f"SELECT rk FROM runs{self.suffix} WHERE project = ? AND experiment = ? "
            "AND deleted = 0 ORDER BY rk DESC LIMIT 1", (project, experiment))
        return int(rows[0][0]) if rows else None

    async def project_runs(self, project: str) -> int:
        rows = await self.session.fetch(
            f"SELECT runs FROM projects{self.suffix} WHERE project = ?", (project,))
        return int(rows[0][0]) if rows else 0

    async def save(self, changes: Changes) -> None:
        await save(self.session, self.worded, changes)
