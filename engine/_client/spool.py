"""The spool: every batch a remote tracker sends is first made durable in a local SQLite file,
and leaves it only once the server has answered for it.

One row per append request, keyed by a hash of its event ids, so a batch the writer sends
again (after a server that did not answer) is kept once. A row goes when the server has
committed the request or refused it (a refusal cannot change by sending again); anything
else — a server that is down, a reply lost on the way — leaves it, to be sent again with the
same event ids, which the server never writes twice. Rows of a process that died are sent
by the next tracker that opens the spool for that server with the same token (``sender``: a
hash of it, so that no row is sent under another identity than its own without asking), or
by ``kittiwake sync``, which sends them all.

An offline tracker (``offline=True``) writes to a local Kittiwake database beside the spool
instead; the spool remembers it, and ``sync`` uploads its log, each commit with its own time.

The file is shared safely by several processes (WAL, a busy timeout); writes are fsynced
(``synchronous=FULL``): a point the spool accepted survives the process and the machine.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import anyio

from engine._core import wire
from engine._storage.contract import AppendRequest
from engine.errors import StorageError, ValidationError

from . import protocol as p

__all__ = ["Spool", "default_spool", "note_offline", "offline_path"]

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS batches (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, server TEXT NOT NULL, sender TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE, body BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS batches_server ON batches (server, seq)",
    """CREATE TABLE IF NOT EXISTS offline (
        path TEXT PRIMARY KEY, server TEXT NOT NULL, uploaded INTEGER NOT NULL DEFAULT 0)""",
)


def default_spool(server: str) -> str:
    """The spool for ``server`` under the user's cache directory (``$XDG_CACHE_HOME``, else
    ``~/.cache``): one file per server URL."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    name = hashlib.sha256(server.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(base, "kittiwake", "spool", f"{name}.sqlite")


def offline_path(spool: str) -> str:
    """The local database an offline tracker writes, beside its spool."""
    return spool + ".offline.db"


def note_offline(spool: str, server: str) -> None:
    """Remember (in the spool) the offline database beside it, to upload to ``server``."""
    Path(spool).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(spool, isolation_level=None, timeout=30.0)
    try:
        for statement in _SCHEMA:
            db.execute(statement)
        db.execute("INSERT OR IGNORE INTO offline (path, server) VALUES (?, ?)",
                   (offline_path(spool), server))
    except sqlite3.Error as exc:
        raise StorageError(f"the spool {spool!r} failed: {exc}") from exc
    finally:
        db.close()


def _key(request: AppendRequest) -> str:
    digest = hashlib.sha256(f"{request.project}\x00{request.run_id}\x00".encode())
    for event in request.events:
        digest.update(event.id)
    return digest.hexdigest()


class Spool:
    """A spool file, used from the event loop (its SQLite work runs in a worker thread)."""

    def __init__(self, path: str, token: str | None = None, *, durability: str = "full") -> None:
        self.path = path
        self.durability = durability
        self._answered: list[int] = []  # rows to delete with the next write (see ``forget``)
        self.sender = "" if token is None else hashlib.sha256(token.encode()).hexdigest()[:16]
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                             timeout=30.0)
        db.execute("PRAGMA journal_mode = WAL")
        # Like the engine's own durability: "full" survives power loss, "normal" a crash of
        # the process (the promise the spool makes to a training process killed at any
        # instant).
        db.execute(f"PRAGMA synchronous = {'FULL' if self.durability == 'full' else 'NORMAL'}")
        for statement in _SCHEMA:
            db.execute(statement)
        self._db = db

    async def close(self) -> None:
        if self._db is not None and self._answered:
            with anyio.CancelScope(shield=True):
                await self._run(lambda: self._delete(self._conn()))
        db, self._db = self._db, None
        if db is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(db.close)

    async def _run(self, work: Callable[[], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work()

        try:
            with anyio.CancelScope(shield=True):  # a row is written whole, or not at all
                result = await anyio.to_thread.run_sync(locked)
        except sqlite3.Error as exc:
            raise StorageError(f"the spool {self.path!r} failed: {exc}") from exc
        return result

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"the spool {self.path!r} is not open")
        return self._db

    async def keep(self, server: str, requests: Sequence[AppendRequest]) -> list[int]:
        """Make ``requests`` durable; returns their row numbers.

        :raises ValidationError: for a request that cannot be written down (a value the wire
            cannot carry): nothing of the call is kept.
        """
        try:
            rows = [(server, self.sender, _key(r), wire.dumps(p.request_to(r)))
                    for r in requests]
        except TypeError as exc:
            raise ValidationError(f"cannot send this to a server: {exc}") from None

        def work() -> list[int]:
            db = self._conn()
            with db:
                db.execute("BEGIN IMMEDIATE")
                self._delete(db)
                db.executemany("INSERT OR IGNORE INTO batches (server, sender, key, body) "
                               "VALUES (?, ?, ?, ?)", rows)
                return [db.execute("SELECT seq FROM batches WHERE key = ?", (key,))
                        .fetchone()[0] for _, _, key, _ in rows]

        return await self._run(work)

    def forget(self, seqs: Sequence[int]) -> None:
        """The server has answered for these rows: they are deleted with the next batch kept
        (one transaction, one sync, off the path of the flush that waits), or at close. A
        process that dies first leaves them to be sent again, which writes nothing twice."""
        self._answered.extend(seqs)

    def _delete(self, db: sqlite3.Connection) -> None:
        """Delete the rows answered for (inside the caller's transaction)."""
        answered, self._answered = self._answered, []
        db.executemany("DELETE FROM batches WHERE seq = ?", [(s,) for s in answered])

    async def pending(self, server: str, *, after: int = 0, limit: int = 64,
                      everyone: bool = False) -> list[tuple[int, AppendRequest]]:
        """Rows still waiting for ``server``, oldest first: those this spool's token sent,
        or (``everyone``) all of them."""
        def work() -> list[tuple[int, bytes]]:
            return self._conn().execute(
                "SELECT seq, body FROM batches WHERE server = ? AND seq > ? "
                "AND (? OR sender = ?) ORDER BY seq LIMIT ?",
                (server, after, everyone, self.sender, limit)).fetchall()

        return [(seq, p.request_from(wire.loads(body))) for seq, body in await self._run(work)]

    async def count(self, server: str) -> int:
        """Rows still waiting for ``server``."""
        def work() -> int:
            db = self._conn()
            with db:
                db.execute("BEGIN IMMEDIATE")
                self._delete(db)
            found: int = db.execute(
                "SELECT count(*) FROM batches WHERE server = ?", (server,)).fetchone()[0]
            return found

        return await self._run(work)

    async def note_offline(self, path: str, server: str) -> None:
        await self._run(lambda: self._conn().execute(
            "INSERT OR IGNORE INTO offline (path, server) VALUES (?, ?)", (path, server)))

    async def offline_logs(self, server: str) -> list[tuple[str, int]]:
        """Offline databases to upload to ``server``, and the position each is uploaded to."""
        def work() -> list[tuple[str, int]]:
            return self._conn().execute(
                "SELECT path, uploaded FROM offline WHERE server = ?", (server,)).fetchall()

        return await self._run(work)

    async def uploaded(self, path: str, position: int) -> None:
        await self._run(lambda: self._conn().execute(
            "UPDATE offline SET uploaded = max(uploaded, ?) WHERE path = ?", (position, path)))

