"""The blob store in the run database (the default), on SQLite and PostgreSQL alike.

Two tables, written once over the shared session (``?`` marks): ``blob_chunks(upload, seq,
at, data)`` holds a blob's bytes in chunks of ``chunk_size`` (never one giant value), and
``blobs(digest, size, upload, touched_at)`` names the upload that holds each stored blob. A
put takes a fresh upload id and writes each chunk in a short transaction of its own (so a
2 GiB upload never holds SQLite's single writer for long, and group commits of events go
on between its chunks), hashing each chunk on a worker thread and reading the next while
it is written; where the site takes several chunk transactions at once (``blob_writers``:
PostgreSQL, whose server does most of the work of a write), they overlap. One last
transaction names the blob: ``INSERT … ON CONFLICT (digest) DO UPDATE SET touched_at`` —
atomic against a gc that deletes the same row — and, when the digest was stored already,
drops the upload's own chunks. Small blobs (one chunk) are written whole in one
transaction, and many small ones in one transaction together (``put_many``).

A gc deletes each unreferenced blob with ``DELETE … WHERE touched_at < cutoff``, so a put
that refreshed it in between keeps it; then the chunks of uploads no blob names whose last
chunk is older than the grace (puts that died).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Collection,
    Sequence,
)
from typing import Protocol, TypeVar

import anyio

from engine.errors import IntegrityError, StorageError

from .blobs.contract import (
    CHUNK_SIZE,
    BlobInfo,
    BlobStore,
    Buffer,
    Clock,
    Collected,
    Verifier,
    check_digest,
    check_grace,
)
from .session import Reader, Session

__all__ = ["BLOB_TABLES", "BlobSite", "DatabaseBlobStore"]

T = TypeVar("T")

BLOB_TABLES = ("blobs", "blob_chunks")

# How long a failed put waits for its chunk writes in flight before it cleans up (seconds).
_WRITES_FINISH = 30.0


class BlobSite(Protocol):
    """Where a database blob store runs its statements: the log store's own writer (short
    write transactions) and reader."""

    async def blob_transaction(self, work: Callable[[Session], Awaitable[T]], *,
                               streaming: bool = False) -> T:
        """``work(session)`` inside one write transaction (it may run again after a
        transient error, so it must be idempotent); ``streaming``: a chunk of a large
        blob."""
        ...

    @property
    def blob_reader(self) -> Reader:
        """Where blob reads run."""
        ...

    @property
    def blob_writers(self) -> int:
        """How many chunk transactions of one put may run at once (1 for a single writer)."""
        ...


class DatabaseBlobStore(BlobStore):
    """Blobs in the tables ``blobs`` and ``blob_chunks`` of the run database."""

    def __init__(self, site: BlobSite, *, chunk_size: int = CHUNK_SIZE,
                 clock: Clock = time.time) -> None:
        super().__init__(chunk_size=chunk_size)
        self._site = site
        self._clock = clock

    def __repr__(self) -> str:
        return f"<DatabaseBlobStore on {self._site!r}>"

    async def _start(self) -> None:
        return None  # the tables come with the database's schema

    async def _stop(self) -> None:
        return None  # the log store owns the connections

    # Writing ------------------------------------------------------------------------------

    async def put(self, chunks: AsyncIterable[Buffer]) -> BlobInfo:
        """Store the bytes ``chunks`` yields; see ``BlobStore.put``."""
        self._live()
        upload = uuid.uuid4().hex
        hasher = hashlib.sha256()
        size = seq = 0
        whole = self.chunk_size
        pending = bytearray()
        # Chunk transactions in flight, oldest first: reading the next chunk and hashing it
        # go on while they are written, and on a backend that takes several at once the
        # database's own work (a good half of the cost) spreads over its processes.
        writing: deque[asyncio.Future[None]] = deque()
        loop = asyncio.get_running_loop()
        try:
            async for chunk in chunks:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise TypeError(f"a chunk must be bytes-like, not {type(chunk).__name__}")
                view = memoryview(chunk).cast("B")
                while view.nbytes:
                    # Whole chunks go on as views of what the source gave: no copy on the
                    # event loop; the driver copies on its own thread.
                    if not pending and view.nbytes >= whole:
                        piece: Buffer = view[:whole]
                        view = view[whole:]
                    else:
                        take = min(whole - len(pending), view.nbytes)
                        pending += view[:take]
                        view = view[take:]
                        if len(pending) < whole:
                            break
                        piece, pending = pending, bytearray()
                    while len(writing) >= self._site.blob_writers:
                        await writing.popleft()
                    writing.append(asyncio.ensure_future(self._write_chunk(upload, seq, piece)))
                    # One hash, so one chunk at a time and in order, on a worker thread.
                    await loop.run_in_executor(None, hasher.update, piece)
                    size += len(piece)
                    seq += 1
            if pending or seq == 0:
                last = bytes(pending)
                await anyio.to_thread.run_sync(hasher.update, last)
                size += len(last)
                if seq == 0:  # the whole blob is one chunk: one transaction for all of it
                    digest = "sha256:" + hasher.hexdigest()
                    await self._site.blob_transaction(
                        lambda session: _name(session, upload, [(digest, size, last)],
                                              self._clock()))
                    return BlobInfo(digest, size)
                writing.append(asyncio.ensure_future(self._write_chunk(upload, seq, last)))
                seq += 1
            while writing:
                await writing.popleft()
            digest = "sha256:" + hasher.hexdigest()
            await self._site.blob_transaction(
                lambda session: _name(session, upload, [(digest, size, None)], self._clock(),
                                      chunks=seq))
        except BaseException:
            with anyio.CancelScope(shield=True):
                # A write still running could insert its chunk after the clean-up below, and
                # cancelling it does not stop it: on PostgreSQL its statement goes on in the
                # server and may commit after the clean-up, on another connection. So the
                # writes in flight (at most ``blob_writers`` chunks) are let finish first; one
                # that does not within the bound is cancelled, and gc removes its chunk later.
                with anyio.move_on_after(_WRITES_FINISH):
                    await asyncio.gather(*writing, return_exceptions=True)
                for write in writing:
                    write.cancel()
                await asyncio.gather(*writing, return_exceptions=True)
                await self._forget(upload)
            raise
        return BlobInfo(digest, size)

    async def put_bytes(self, data: Buffer) -> BlobInfo:
        """``put`` for bytes in memory: a blob of one chunk in one transaction."""
        if memoryview(data).nbytes > self.chunk_size:
            return await super().put_bytes(data)
        return (await self.put_many([data]))[0]

    async def put_many(self, blobs: list[Buffer]) -> list[BlobInfo]:
        """Store several small blobs (each at most ``chunk_size``) in one transaction: how a
        run's batch of small files costs one commit, not one each."""
        self._live()
        pieces = [bytes(b) for b in blobs]
        digests = await anyio.to_thread.run_sync(
            lambda: ["sha256:" + hashlib.sha256(p).hexdigest() for p in pieces])
        upload = uuid.uuid4().hex
        named = [(d, len(p), p) for d, p in zip(digests, pieces, strict=True)]
        await self._site.blob_transaction(
            lambda session: _name(session, upload, named, self._clock()))
        return [BlobInfo(d, len(p)) for d, p in zip(digests, pieces, strict=True)]

    async def _write_chunk(self, upload: str, seq: int, data: Buffer) -> None:
        async def work(session: Session) -> None:
            await session.execute(
                "INSERT INTO blob_chunks (upload, seq, at, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (upload, seq) DO NOTHING", (upload, seq, self._clock(), data))

        await self._site.blob_transaction(work, streaming=True)

    async def _forget(self, upload: str) -> None:
        async def work(session: Session) -> None:
            await session.execute("DELETE FROM blob_chunks WHERE upload = ? AND upload NOT IN "
                                  "(SELECT upload FROM blobs)", (upload,))

        await self._site.blob_transaction(work)

    async def delete(self, digest: str) -> bool:
        self._live()
        check_digest(digest)

        async def work(session: Session) -> bool:
            rows = await session.fetch("DELETE FROM blobs WHERE digest = ? RETURNING upload",
                                       (digest,))
            for (upload,) in rows:
                await _drop_upload(session, upload)
            return bool(rows)

        return await self._site.blob_transaction(work)

    async def gc(self, referenced: Collection[str], *, grace: float,
                 dry_run: bool = False) -> Collected:
        self._live()
        grace = check_grace(grace)
        keep = set(referenced)
        cutoff = self._clock() - grace

        async def work(session: Session) -> Collected:
            removed = freed = young = 0
            for digest, size, touched in await session.fetch(
                    "SELECT digest, size, touched_at FROM blobs"):
                if digest in keep:
                    continue
                if touched > cutoff:
                    young += 1
                    continue
                if not dry_run:
                    gone = await session.fetch(
                        "DELETE FROM blobs WHERE digest = ? AND touched_at <= ? RETURNING upload",
                        (digest, cutoff))
                    if not gone:
                        young += 1  # refreshed by a put meanwhile
                        continue
                    await _drop_upload(session, gone[0][0])
                removed += 1
                freed += size
            dead = await session.fetch(
                "SELECT upload FROM blob_chunks WHERE upload NOT IN (SELECT upload FROM blobs) "
                "GROUP BY upload HAVING max(at) <= ?", (cutoff,))
            if not dry_run:
                for (upload,) in dead:
                    await _drop_upload(session, upload)
            return Collected(removed, freed, young, len(dead))

        return await self._site.blob_transaction(work)

    # Reading ------------------------------------------------------------------------------

    async def open(self, digest: str) -> AsyncGenerator[bytes, None]:
        """The blob's bytes in chunks of at most ``chunk_size``, checked as they pass."""
        self._live()
        check_digest(digest)
        found = await self._site.blob_reader.read(lambda session: session.fetch(
            "SELECT upload, size FROM blobs WHERE digest = ?", (digest,)))
        if not found:
            raise IntegrityError(f"blob {digest} is missing: its bytes are not stored",
                                 where=digest)
        upload = found[0][0]
        verifier = Verifier(digest)
        seq = 0
        while True:
            rows = await self._site.blob_reader.read(
                lambda session, seq=seq: session.fetch(  # type: ignore[misc]
                    "SELECT data FROM blob_chunks WHERE upload = ? AND seq = ?", (upload, seq)))
            if not rows:
                break
            data = rows[0][0]
            if not isinstance(data, bytes):
                data = bytes(data)
            await anyio.to_thread.run_sync(verifier.update, data)
            for start in range(0, max(len(data), 1), self.chunk_size):
                piece = data[start:start + self.chunk_size]
                if piece:
                    yield piece
            seq += 1
        verifier.check()

    async def exists(self, digest: str) -> bool:
        return await self.size(digest) is not None

    async def size(self, digest: str) -> int | None:
        self._live()
        check_digest(digest)
        rows = await self._site.blob_reader.read(lambda session: session.fetch(
            "SELECT size FROM blobs WHERE digest = ?", (digest,)))
        return int(rows[0][0]) if rows else None

    async def digests(self) -> AsyncGenerator[str, None]:
        self._live()
        rows = await self._site.blob_reader.read(
            lambda session: session.fetch("SELECT digest FROM blobs"))
        for (digest,) in rows:
            yield digest


async def _name(session: Session, upload: str,
                blobs: Sequence[tuple[str, int, Buffer | None]], now: float, *,
                chunks: int | None = None) -> None:
    """Name each blob ``(digest, size, data)``: insert its row (and its one chunk, when
    ``data`` is given), or refresh the row that is there and drop what this upload wrote.
    ``chunks``: how many chunks the upload wrote, checked to be all there (a chunk's commit
    may not wait for the disk, and a database that restarted meanwhile lost it).

    :raises StorageError: when some of the upload's chunks are gone; nothing is named.
    """
    if chunks is not None:
        ((found,),) = await session.fetch(
            "SELECT count(*) FROM blob_chunks WHERE upload = ?", (upload,))
        if found != chunks:
            raise StorageError(f"storing file bytes failed: {chunks - found} of the "
                               f"{chunks} chunks written are gone (did the database "
                               "restart?); nothing was stored")
    for seq, (digest, size, data) in enumerate(blobs):
        owner = f"{upload}.{seq}" if data is not None else upload
        rows = await session.fetch(
            "INSERT INTO blobs (digest, size, upload, touched_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at "
            "RETURNING upload", (digest, size, owner, now))
        if rows[0][0] != owner:
            if data is None:
                await _drop_upload(session, upload)
            continue
        if data is not None:
            await session.execute(
                "INSERT INTO blob_chunks (upload, seq, at, data) VALUES (?, 0, ?, ?) "
                "ON CONFLICT (upload, seq) DO NOTHING", (owner, now, data))


async def _drop_upload(session: Session, upload: str) -> None:
    await session.execute("DELETE FROM blob_chunks WHERE upload = ?", (upload,))
