"""The embedded backend: SQLite through aiosqlite, in WAL mode.

Two connections per file: one writer (every append, heartbeat and rebuild goes through it under
``_wlock``) and one reader, so reads run beside a commit instead of queueing behind it. An
in-memory database has a single connection, and the one lock then guards both.

One writer means the rowid *is* the position: commit order equals position order, and a reader
polling ``position > last`` can never skip an event.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from ._codec import decode, decode_arrays, encode
from ._events import Record, Upcasters
from ._model import Experiment, Lineage, RunState, Series
from ._projector import (
    PROJECTIONS,
    Changes,
    ChunkHead,
    MetricRow,
    ProjectionIO,
    Projector,
    RunRow,
    Segment,
)
from ._query_ast import Field, RunGroup, Selection
from ._rows import (
    CHUNK_COLUMNS,
    METRIC_COLUMNS,
    RUN_COLUMNS,
    chunk_values,
    config_values,
    metric_row,
    metric_values,
    run_row,
    run_values,
    segment_values,
)
from ._series import Chunk, null_nan
from ._sqlite_reads import SqliteReads
from ._sqlite_schema import MIGRATIONS, PROJECTION_TABLES, projection_ddl
from ._store import ANY, AppendRequest, EventFilter, Progress, RunControl, StaleRun, Store
from .errors import ClosedError, ConcurrencyError, EngineError

__all__ = ["SqliteStore", "sqlite_path"]

_PAGE_EVENTS = 4096  # at most this many events per rebuild transaction
_PAGE_BYTES = 4 << 20  # rebuild pages aim at this much payload
_ID_BATCH = 500  # ids per "already in the log?" query (SQLite binds at most 32766 values)
_EVENT_COLUMNS = "position, event_id, project, run_id, version, type, schema_version, " \
                 "recorded_at, data"


def sqlite_path(url: str) -> str | None:
    """The file path (or ``:memory:``) a SQLite URL names, or None if it is not one."""
    if url in (":memory:", "sqlite://", "sqlite:///:memory:"):
        return ":memory:"
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):] or None
    if "://" in url or not url:
        return None
    return url


class _Refused(Exception):
    def __init__(self, index: int, error: EngineError) -> None:
        self.index = index
        self.error = error


class SqliteStore(Store):
    """The log and its projections in one SQLite file (or in memory)."""

    def __init__(self, path: str, *, durability: str, upcasters: Upcasters) -> None:
        self.path = path
        self.durability = durability
        self.upcasters = upcasters
        self._wdb: aiosqlite.Connection | None = None
        self._rdb: aiosqlite.Connection | None = None
        self._wlock = anyio.Lock()
        self._rlock = self._wlock if path == ":memory:" else anyio.Lock()
        self._projector: Projector | None = None
        self._known_head = -1
        self._reads: SqliteReads | None = None

    # Lifecycle -----------------------------------------------------------------------------

    async def _connect(self) -> aiosqlite.Connection:
        _check_path(self.path)
        pending = aiosqlite.connect(self.path, isolation_level=None)
        try:
            db = await pending
        except BaseException:
            # aiosqlite stops its worker thread without waiting; the thread then answers an
            # event loop that may be gone. Wait for it while this loop still runs.
            thread = getattr(pending, "_thread", None)
            if thread is not None:
                await anyio.to_thread.run_sync(thread.join, 5.0)
            raise
        try:
            for pragma in (
                "PRAGMA busy_timeout = 60000",
                "PRAGMA journal_mode = WAL",
                f"PRAGMA synchronous = {'FULL' if self.durability == 'full' else 'NORMAL'}",
                "PRAGMA cache_size = -65536",
                "PRAGMA temp_store = MEMORY",
            ):
                await db.execute_fetchall(pragma)  # run to the end: some return a row
        except BaseException:
            await db.close()
            raise
        return db

    async def open(self) -> None:
        try:
            self._wdb = await self._connect()
            self._rdb = self._wdb if self.path == ":memory:" else await self._connect()
            await self._migrate()
        except sqlite3.Error as exc:
            await self.close()
            raise EngineError(f"cannot open the SQLite database {self.path!r}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._projector = Projector(_SqliteIO(self._wdb))
        self._reads = SqliteReads(self._rdb, self._rlock, self._record)
        await self.drop_retired()  # left by a rebuild whose process ended before dropping
        head = await self.head()
        rows = await self._rdb.execute_fetchall("SELECT position FROM checkpoints")
        if any(position != head for (position,) in rows):
            # The log is ahead of a projection (a projection added by a newer release, or a
            # database written without them): build everything again from the log.
            await self.rebuild()

    async def close(self) -> None:
        wdb, rdb = self._wdb, self._rdb
        self._wdb = self._rdb = None
        self._reads = None
        for db in {id(d): d for d in (rdb, wdb) if d is not None}.values():
            with anyio.CancelScope(shield=True):
                await db.close()

    async def _migrate(self) -> None:
        db = self._writer()
        async with self._wlock:
            if self.path != ":memory:":
                # Larger pages keep chunk columns in fewer overflow pages; only takes effect
                # before the first table exists.
                await db.execute_fetchall("PRAGMA page_size = 16384")
            await db.execute("BEGIN IMMEDIATE")
            try:
                (version,), = await db.execute_fetchall("PRAGMA user_version")
                if version > len(MIGRATIONS):
                    raise EngineError(
                        f"database schema version {version} is newer than this release "
                        f"understands ({len(MIGRATIONS)}); upgrade kittiwake"
                    )
                for number in range(version, len(MIGRATIONS)):
                    for statement in MIGRATIONS[number]:
                        await db.execute(statement)
                    await db.execute(f"PRAGMA user_version = {number + 1}")
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    def _writer(self) -> aiosqlite.Connection:
        if self._wdb is None:
            raise ClosedError("the store is closed")
        return self._wdb

    @property
    def reads(self) -> SqliteReads:
        if self._reads is None:
            raise ClosedError("the store is closed")
        return self._reads

    # The log -------------------------------------------------------------------------------

    async def append(self, requests: Sequence[AppendRequest], *,
                     now: float) -> list[list[Record] | BaseException]:
        outcomes: list[list[Record] | BaseException] = [[] for _ in requests]
        pending = list(range(len(requests)))
        with anyio.CancelScope(shield=True):  # a cancelled commit may still commit: finish it
            async with self._wlock:
                while True:
                    try:
                        added = await self._transaction(requests, pending, now)
                    except _Refused as refused:
                        outcomes[refused.index] = refused.error
                        pending.remove(refused.index)
                        continue
                    for index, records in added.items():
                        outcomes[index] = records
                    return outcomes

    async def _transaction(self, requests: Sequence[AppendRequest], pending: list[int],
                           now: float) -> dict[int, list[Record]]:
        db = self._writer()
        projector = self._projector
        assert projector is not None
        await db.execute("BEGIN IMMEDIATE")
        try:
            (head,), = await db.execute_fetchall(
                "SELECT coalesce(max(position), 0) FROM events")
            if head != self._known_head:
                projector.clear()  # another process appended: cached rows may be stale
            known = await self._existing_ids(
                db, [e.id for i in pending for e in requests[i].events])
            position = head
            added: dict[int, list[Record]] = {}
            rows: list[tuple[Any, ...]] = []
            for index in pending:
                request = requests[index]
                fresh = [e for e in request.events if e.id not in known]
                if not fresh:
                    added[index] = []
                    continue
                run = await projector.run(request.project, request.run_id)
                version = run.version if run is not None else 0
                expected = request.expected_version
                if expected is not None and expected != version:
                    raise _Refused(index, ConcurrencyError(
                        f"run {request.run_id!r} is at version {version}, "
                        f"not the expected {expected}"))
                records = []
                for event in fresh:
                    position += 1
                    version += 1
                    record = Record(position, event.id, request.project, request.run_id,
                                    version, event.type, now, event.data)
                    try:
                        await projector.apply(record)
                    except EngineError as exc:
                        raise _Refused(index, exc) from None
                    records.append(record)
                    rows.append((position, event.id, request.project, request.run_id, version,
                                 event.type, self.upcasters.version(event.type), now,
                                 encode(event.data)))
                added[index] = records
            if rows:
                await db.executemany(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
                await projector.save()
                await _advance(db, "", head, position)
            await db.execute("COMMIT")
        except BaseException:
            projector.clear()
            self._known_head = -1
            await db.execute("ROLLBACK")
            raise
        self._known_head = position
        projector.trim(max_runs=10_000)
        return added

    @staticmethod
    async def _existing_ids(db: aiosqlite.Connection, ids: list[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            rows = await db.execute_fetchall(
                f"SELECT event_id FROM events WHERE event_id IN ({','.join('?' * len(batch))})",
                batch)
            found.update(r[0] for r in rows)
        return found

    def _record(self, row: Sequence[Any], arrays: bool) -> Record:
        position, raw_id, project, run_id, version, kind, schema, at, data = row
        payload = decode_arrays(data) if arrays else decode(data)
        if schema < self.upcasters.version(kind):
            payload = self.upcasters.upcast(kind, schema, payload)
        return Record(position, raw_id, project, run_id, version, kind, at, payload)

    async def head(self) -> int:
        return await self.reads.head()

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
        db = self._writer()
        (generation,), = await db.execute_fetchall(
            "SELECT value FROM meta WHERE key = 'generation'")
        await self._build("__new", generation + 1, progress)

    async def verify_rebuild(self) -> list[str]:
        return await self._build("__check", "check", None)

    async def drop_retired(self) -> None:
        # Dropping a table reads every page of it; after a rebuild that is most of the
        # database, so it happens after the swap, one table per transaction.
        db = self._writer()
        rows = await self.reads.retired_tables()
        for (table,) in rows:
            with anyio.CancelScope(shield=True):
                async with self._wlock:
                    await db.execute(f"DROP TABLE IF EXISTS {table}")
        if rows and self.path != ":memory:":
            with anyio.CancelScope(shield=True):
                async with self._wlock:
                    await db.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")

    async def _build(self, suffix: str, generation: int | str,
                     progress: Progress | None) -> list[str]:
        """Replay the log into ``<table><suffix>`` tables, then swap them in (``__new``) or
        compare them with the live tables and drop them (``__check``).

        Three things overlap: a dedicated connection reads the next page of events, the
        writer connection saves the previous page (a transaction per page, so live appends
        interleave), and the event loop folds the current page. The last step catches up to
        the head and finishes in one transaction under the write lock.
        """
        db = self._writer()
        async with self._wlock:
            await _in_transaction(db, [f"DROP TABLE IF EXISTS {t}{suffix}"
                                       for t in PROJECTION_TABLES]
                                  + projection_ddl(suffix, generation))
        io = _SqliteIO(db, suffix, lock=self._wlock)
        projector = Projector(io)
        reader = db if self.path == ":memory:" else await self._connect()
        done = 0
        limit = 4
        if reader is not db:
            # The checkpoint that copies the new tables from the WAL into the database runs
            # with the cleanup after the swap (drop_retired), not inside the rebuild.
            await db.execute_fetchall("PRAGMA wal_autocheckpoint = 0")
        try:
            async with anyio.create_task_group() as tasks:
                page = await _fetch(reader, 0, limit)
                saving: anyio.Event | None = None
                while len(page) == limit:
                    after = page[-1][0]
                    # Pages of about _PAGE_BYTES of payload, whatever the events' sizes.
                    size = sum(len(row[8]) for row in page) or 1
                    limit = max(1, min(_PAGE_EVENTS, limit * _PAGE_BYTES // size))
                    upcoming = _Prefetch(reader, after, limit)
                    tasks.start_soon(upcoming.run)
                    for row in page:
                        await projector.apply(self._record(row, arrays=True))
                    changes, projector.changes = projector.changes, Changes()
                    if saving is not None:
                        await saving.wait()  # saves go in order, checkpoints forward
                    saving = anyio.Event()
                    tasks.start_soon(self._save_page, db, io, changes, suffix, done, after,
                                     saving)
                    done = after
                    if progress is not None:
                        progress(done, await self.head())
                    page = await upcoming.result()
                if saving is not None:
                    await saving.wait()
            async with self._wlock:
                with anyio.CancelScope(shield=True):
                    differ = await self._finish(db, projector, suffix, done, generation)
        finally:
            if reader is not db:
                with anyio.CancelScope(shield=True):
                    await reader.close()
                    await db.execute_fetchall("PRAGMA wal_autocheckpoint = 1000")
        if progress is not None:
            head = await self.head()
            progress(head, head)
        return differ

    async def _save_page(self, db: aiosqlite.Connection, io: _SqliteIO, changes: Changes,
                         suffix: str, done: int, position: int, saved: anyio.Event) -> None:
        try:
            async with self._wlock:
                with anyio.CancelScope(shield=True):
                    await db.execute("BEGIN IMMEDIATE")
                    try:
                        await io.save(changes, locked=True)
                        await _advance(db, suffix, done, position)
                        await db.execute("COMMIT")
                    except BaseException:
                        await db.execute("ROLLBACK")
                        raise
        finally:
            saved.set()

    async def _finish(self, db: aiosqlite.Connection, projector: Projector, suffix: str,
                      done: int, generation: int | str) -> list[str]:
        """Apply the events still unseen, then swap (or compare), in one transaction."""
        differ: list[str] = []
        assert isinstance(projector.io, _SqliteIO)
        projector.io.lock = None  # the caller holds the write lock for this last step
        await db.execute("BEGIN IMMEDIATE")
        try:
            while True:
                rows = await _fetch(db, done, _PAGE_EVENTS)
                for row in rows:
                    await projector.apply(self._record(row, arrays=True))
                if rows:
                    await projector.save()
                    await _advance(db, suffix, done, rows[-1][0])
                    done = rows[-1][0]
                if len(rows) < _PAGE_EVENTS:
                    break
            if suffix == "__new":
                for table in PROJECTION_TABLES:
                    await db.execute(f"DROP TABLE IF EXISTS {table}__old")
                    await db.execute(f"ALTER TABLE {table} RENAME TO {table}__old")
                    await db.execute(f"ALTER TABLE {table}{suffix} RENAME TO {table}")
                await db.execute("UPDATE meta SET value = ? WHERE key = 'generation'",
                                 (generation,))
                # The live cache still matches (a rebuild reproduces the same rows), but it is
                # dropped here, under the write lock, never in the middle of a commit.
                assert self._projector is not None
                self._projector.clear()
                self._known_head = -1
            else:
                for table in PROJECTION_TABLES:
                    counts = [(await db.execute_fetchall(sql))[0][0] for sql in (
                        f"SELECT count(*) FROM (SELECT * FROM {table} EXCEPT "
                        f"SELECT * FROM {table}{suffix})",
                        f"SELECT count(*) FROM (SELECT * FROM {table}{suffix} EXCEPT "
                        f"SELECT * FROM {table})",
                        f"SELECT (SELECT count(*) FROM {table}) - "
                        f"(SELECT count(*) FROM {table}{suffix})")]
                    if any(counts):
                        differ.append(table)
                    await db.execute(f"DROP TABLE {table}{suffix}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return differ

    # Liveness ------------------------------------------------------------------------------

    async def beat(self, runs: Sequence[tuple[str, str]], at: float) -> None:
        if not runs:
            return
        db = self._writer()
        with anyio.CancelScope(shield=True):
            async with self._wlock:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    await db.executemany("INSERT OR REPLACE INTO heartbeats VALUES (?, ?, ?)",
                                         [(p, r, at) for p, r in runs])
                    await db.execute("COMMIT")
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise

    async def stale_runs(self, before: float) -> list[StaleRun]:
        return await self.reads.stale_runs(before)

    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        return await self.reads.controls(runs)


def _check_path(path: str) -> None:
    """Refuse paths SQLite cannot open, before aiosqlite starts a thread for them."""
    if path == ":memory:":
        return
    where = Path(path)
    if where.is_dir():
        raise EngineError(f"cannot open the SQLite database {path!r}: it is a directory")
    if not where.parent.is_dir():
        raise EngineError(f"cannot open the SQLite database {path!r}: the directory "
                          f"{str(where.parent)!r} does not exist")


async def _fetch(db: aiosqlite.Connection, after: int, limit: int) -> list[Any]:
    return list(await db.execute_fetchall(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
        (after, limit)))


class _Prefetch:
    """The next page of events, read while the current one is folded."""

    def __init__(self, db: aiosqlite.Connection, after: int, limit: int) -> None:
        self._db = db
        self._after = after
        self._limit = limit
        self._done = anyio.Event()
        self._rows: list[Any] = []

    async def run(self) -> None:
        try:
            self._rows = await _fetch(self._db, self._after, self._limit)
        finally:
            self._done.set()

    async def result(self) -> list[Any]:
        await self._done.wait()
        return self._rows


async def _in_transaction(db: aiosqlite.Connection, statements: Sequence[str]) -> None:
    await db.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            await db.execute(statement)
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


async def _advance(db: aiosqlite.Connection, suffix: str, head: int, position: int) -> None:
    """Move every checkpoint from ``head`` to ``position``; refuse to go anywhere else."""
    if position == head:
        return
    cursor = await db.execute(
        f"UPDATE checkpoints{suffix} SET position = ? WHERE position = ?", (position, head))
    if cursor.rowcount != len(PROJECTIONS):
        raise EngineError(
            f"projection checkpoints are not at position {head}: refusing to apply events "
            "twice or skip them; run `kittiwake rebuild`"
        )


class _SqliteIO(ProjectionIO):
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
        self._put_run = (f"INSERT OR REPLACE INTO runs{s} ({', '.join(RUN_COLUMNS)}) "
                         f"VALUES ({','.join('?' * len(RUN_COLUMNS))})")
        self._put_metric = (f"INSERT OR REPLACE INTO metrics{s} ({', '.join(METRIC_COLUMNS)}) "
                            f"VALUES ({','.join('?' * len(METRIC_COLUMNS))})")
        self._put_chunk = (f"INSERT OR REPLACE INTO series_chunks{s} ({', '.join(CHUNK_COLUMNS)})"
                           f" VALUES ({','.join('?' * len(CHUNK_COLUMNS))})")

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
        db, s = self.db, self.s
        if changes.runs:
            await db.executemany(self._put_run, [run_values(r) for r in changes.runs.values()])
        if changes.dropped_metrics:
            await db.executemany(f"DELETE FROM metrics{s} WHERE rk = ? AND metric = ?",
                                 list(changes.dropped_metrics))
        if changes.metrics:
            await db.executemany(self._put_metric,
                                 [metric_values(m) for m in changes.metrics.values()])
        if changes.chunks:
            await db.executemany(self._put_chunk, [
                chunk_values(rk, metric, chunk)
                for (rk, metric, _, _), chunk in changes.chunks.items()])
        if changes.segments:
            await db.executemany(f"DELETE FROM series_segments{s} WHERE rk = ? AND metric = ?",
                                 list(changes.segments))
            await db.executemany(
                f"INSERT INTO series_segments{s} VALUES (?, ?, ?, ?, ?, ?)",
                [row for (rk, m), segs in changes.segments.items()
                 for row in segment_values(rk, m, segs)])
        if changes.lineage:
            await db.executemany(f"INSERT INTO lineage{s} VALUES (?, ?, ?, ?)", changes.lineage)
        if changes.experiments:
            await db.executemany(f"INSERT OR REPLACE INTO experiments{s} VALUES (?, ?, ?)",
                                 [(p, n, h) for (p, n), h in changes.experiments.items()])
        if changes.projects:
            await db.executemany(f"INSERT OR REPLACE INTO projects{s} VALUES (?, ?)",
                                 list(changes.projects.items()))
        if changes.configs:
            await db.executemany(f"DELETE FROM run_configs{s} WHERE rk = ?",
                                 [(rk,) for rk in changes.configs])
            await db.executemany(f"INSERT INTO run_configs{s} VALUES (?, ?, ?, ?, ?)",
                                 [v for r in changes.configs.values() for v in config_values(r)])
        if changes.tags:
            await db.executemany(f"DELETE FROM run_tags{s} WHERE rk = ?",
                                 [(rk,) for rk in changes.tags])
            await db.executemany(f"INSERT INTO run_tags{s} VALUES (?, ?)",
                                 [(rk, t) for rk, r in changes.tags.items() for t in r.tags])

