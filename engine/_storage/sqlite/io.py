"""Row loads and bulk writes of the projections on SQLite, and small shared helpers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite
import anyio

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

__all__ = ["EVENT_COLUMNS", "Prefetch", "SqliteIO", "advance", "fetch", "in_transaction"]

async def fetch(db: aiosqlite.Connection, after: int, limit: int) -> list[Any]:
    return list(await db.execute_fetchall(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
        (after, limit)))


class Prefetch:
    """The next page of events, read while the current one is folded."""

    def __init__(self, db: aiosqlite.Connection, after: int, limit: int) -> None:
        self._db = db
        self._after = after
        self._limit = limit
        self._done = anyio.Event()
        self._rows: list[Any] = []

    async def run(self) -> None:
        try:
            self._rows = await fetch(self._db, self._after, self._limit)
        finally:
            self._done.set()

    async def result(self) -> list[Any]:
        await self._done.wait()
        return self._rows


async def in_transaction(db: aiosqlite.Connection, statements: Sequence[str]) -> None:
    await db.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            await db.execute(statement)
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


async def advance(db: aiosqlite.Connection, suffix: str, head: int, position: int) -> None:
    """Move every checkpoint from ``head`` on to ``position``; refuse to go back, or to move
    checkpoints that are not all at ``head``."""
    if position < head:
        raise EngineError(f"projection checkpoints cannot go back from position {head} to "
                          f"{position}")
    if position == head:
        return
    cursor = await db.execute(
        f"UPDATE checkpoints{suffix} SET position = ? WHERE position = ?", (position, head))
    if cursor.rowcount != len(PROJECTIONS):
        raise EngineError(
            f"projection checkpoints are not at position {head}: refusing to apply events "
            "twice or skip them; run `kittiwake rebuild`"
        )


class SqliteIO(ProjectionIO):
    """Row loads and bulk saves for the projector, on the writer connection."""

    def __init__(self, db: aiosqlite.Connection, suffix: str = "",
                 lock: anyio.Lock | None = None) -> None:
        self.db = db
        s = suffix
        self.s = s
        # A rebuild saves a page while folding the next; a save the fold itself needs waits
        # for it, so rows are always written in the order they were changed.
        self._saving = anyio.Lock()
        # A rebuild folds outside the write lock, beside live commits on the same connection:
        # a save the fold needs then takes the lock and a transaction of its own. (The live
        # projector runs inside the writer's transaction and has no lock to take.)
        self.lock = lock
        self._run = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs{s} WHERE project = ? AND run_id = ?"
        self._sql = {write: _statement(write, s) for write in WRITES}

    async def load_run(self, project: str, run_id: str) -> RunRow | None:
        rows = await self.db.execute_fetchall(self._run, (project, run_id))
        return run_row(rows[0]) if rows else None

    async def load_metrics(self, rk: int) -> dict[str, MetricRow]:
        rows = await self.db.execute_fetchall(
            f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics{self.s} WHERE rk = ?", (rk,))
        return {r[1]: metric_row(r) for r in rows}

    async def load_segments(self, rk: int) -> dict[str, list[Segment]]:
        rows = await self.db.execute_fetchall(
            f"SELECT metric, src_rk, src_epoch, cap FROM series_segments{self.s} WHERE rk = ? "
            "ORDER BY metric, idx", (rk,))
        out: dict[str, list[Segment]] = {}
        for metric, src, epoch, cap in rows:
            out.setdefault(metric, []).append(Segment(src, epoch, cap))
        return out

    async def load_chunk(self, rk: int, metric: str, epoch: int, seq: int) -> Chunk:
        (blocks, steps, values, times), = await self.db.execute_fetchall(
            f"SELECT blocks, steps, vals, times FROM series_chunks{self.s} "
            "WHERE rk = ? AND metric = ? AND epoch = ? AND seq = ?", (rk, metric, epoch, seq))
        return Chunk.from_columns(epoch, seq, blocks, steps, values, times)

    async def load_heads(self, rk: int, metric: str, epoch: int,
                         cap: int | float) -> list[ChunkHead]:
        rows = await self.db.execute_fetchall(
            "SELECT n, first_step, last_step, last_value, vmin, vmax, "
            "CASE WHEN last_step > ? THEN steps END, CASE WHEN last_step > ? THEN vals END "
            f"FROM series_chunks{self.s} WHERE rk = ? AND metric = ? AND epoch = ? "
            "AND first_step <= ? ORDER BY seq", (cap, cap, rk, metric, epoch, cap))
        return [ChunkHead(n, first, last, null_nan(lv), null_nan(lo), null_nan(hi), st, va)
                for n, first, last, lv, lo, hi, st, va in rows]

    async def load_ancestors(self, rk: int) -> list[tuple[int, int, int | float]]:
        rows = await self.db.execute_fetchall(
            f"SELECT ancestor, depth, step FROM lineage{self.s} WHERE descendant = ? "
            "ORDER BY depth", (rk,))
        return [(a, d, s) for a, d, s in rows]

    async def newest_alive(self, project: str, experiment: str) -> int | None:
        rows = await self.db.execute_fetchall(
            f"SELECT rk FROM runs{self.s} WHERE project = ? AND experiment = ? AND deleted = 0 "
            "ORDER BY rk DESC LIMIT 1", (project, experiment))
        return rows[0][0] if rows else None

    async def project_runs(self, project: str) -> int:
        rows = await self.db.execute_fetchall(
            f"SELECT runs FROM projects{self.s} WHERE project = ?", (project,))
        return rows[0][0] if rows else 0

    async def save(self, changes: Changes, *, locked: bool = False) -> None:
        """Write the changes; ``locked`` says the caller holds the write lock already.

        Locks are taken in one order, the write lock before ``_saving``, so a page being
        saved and a save the fold needs cannot wait on each other.
        """
        if self.lock is None or locked:
            async with self._saving:
                await self._save(changes)
            return
        async with self.lock, self._saving:
            with anyio.CancelScope(shield=True):
                await self.db.execute("BEGIN IMMEDIATE")
                try:
                    await self._save(changes)
                    await self.db.execute("COMMIT")
                except BaseException:
                    await self.db.execute("ROLLBACK")
                    raise

    async def _save(self, changes: Changes) -> None:
        await self.execute(self.prepare(changes))

    def prepare(self, changes: Changes) -> list[tuple[str, list[Any]]]:
        """The statements that write ``changes``, with every row value fixed now: a fold that
        goes on afterwards cannot change what they write."""
        return [(self._sql[write], rows) for write, rows in change_rows(changes)]

    async def execute(self, prepared: list[tuple[str, list[Any]]]) -> None:
        """Run statements made by :meth:`prepare`."""
        for sql, rows in prepared:
            if rows:
                await self.db.executemany(sql, rows)


def _statement(write: Write, suffix: str) -> str:
    table = f"{write.table}{suffix}"
    if write.action == "delete":
        return f"DELETE FROM {table} WHERE {' AND '.join(f'{c} = ?' for c in write.columns)}"
    verb = "INSERT OR REPLACE" if write.action == "upsert" else "INSERT"
    return (f"{verb} INTO {table} ({', '.join(write.columns)}) "
            f"VALUES ({','.join('?' * len(write.columns))})")
