"""The blob store contract: file bytes, addressed by their SHA-256 digest.

A run's files are events that name bytes by digest (``sha256:<64 hex>``); a blob store
keeps the bytes. Every store keeps these promises, and the contract tests prove them:

- **Content addressed.** ``put`` hashes the bytes as they stream in and returns their
  digest and size; the same bytes put twice, or by two callers at once, are stored once.
- **Streamed both ways, memory flat.** ``put`` takes an async iterable of chunks and
  ``open`` yields chunks of at most ``chunk_size`` bytes, so a 2 GiB file never sits in
  memory whole. Hashing and copying run on worker threads, never on the event loop.
- **Checked on every read.** ``open`` hashes what it yields and, after the last chunk,
  raises ``IntegrityError`` (``where`` = the digest) when the bytes do not match their
  digest; so does ``read``. A consumer that must not keep damaged bytes (a download)
  writes them aside and keeps them only once the iteration ended without an error. Reading
  a digest the store does not hold raises ``IntegrityError`` too: an event names it, so
  its bytes are lost.
- **Durable, and never half there.** When ``put`` returns, the blob survives a crash, and
  a crash during a put never leaves partial bytes under a digest. Callers write the blob
  first and the event that names it after, so the log never names bytes that are not
  stored; a crash between the two leaves an orphan blob, which is harmless.
- **Collected, never raced.** ``gc(referenced, grace=...)`` removes the blobs no event
  names, and the leftovers of puts that never finished, but nothing that was put (or put
  again) less than ``grace`` seconds ago: between a put and the commit of the event that
  names its blob, no event names it yet, and removing it would leave the event naming lost
  bytes. A put that finds its bytes already stored refreshes the blob's age for the same
  reason. ``grace`` must exceed the longest time from a put to the commit of its event,
  and the longest pause inside one put (an hour is a safe default). ``referenced`` is
  every digest any event in the log names, deleted runs' included: their events stay in
  the log, ``as_of`` reads show them, and forks inherit them.
- **Failures are typed.** Bad digests raise ``ValidationError``; the store failing (a full
  disk, a read-only file system, a database out of reach) raises ``StorageError``; using a
  store before ``start`` or after ``aclose`` raises ``ClosedError``.

Ages come from the store's ``clock`` (``time.time`` unless one is injected), so tests
move time instead of sleeping.

How an in-database store fits (SQLite and PostgreSQL, in the run database, so one backup
holds a run's log and its files):

- Two tables: ``blob_chunks(upload, seq, data)`` with one row per chunk of 1-4 MiB (never
  one giant value), and ``blobs(digest PRIMARY KEY, size, upload, touched_at)``.
- ``put`` takes a fresh upload id and inserts each chunk as it arrives, in short
  transactions of their own (a few chunks each), through the store's own writer and its
  transaction discipline: a 2 GiB upload never holds the single SQLite writer for its
  whole length, and group commits of events go on between its chunks. Hashing runs in a
  worker thread as each chunk passes. At the end one transaction either inserts the
  ``blobs`` row for the new digest (committed with the store's durability setting) or,
  when the digest is already there, refreshes its ``touched_at`` and deletes the
  upload's chunks.
- ``open`` selects the chunks of the digest's upload in ``seq`` order, one or a few rows
  per query, and hashes them in a worker thread as they pass.
- ``gc`` deletes, in one transaction, the ``blobs`` rows not referenced and touched before
  ``now - grace``, with their chunks, and the chunks of uploads with no ``blobs`` row whose
  newest chunk is older than ``grace`` (puts that died). The database serialises a put's
  refresh and a gc's delete, so neither can undo the other.
"""

from __future__ import annotations

import enum
import hashlib
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Collection
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from engine.errors import ClosedError, IntegrityError, ValidationError

__all__ = ["CHUNK_SIZE", "BlobInfo", "BlobStore", "Buffer", "Clock", "Collected", "Verifier",
           "check_digest", "check_grace", "digest_of"]

CHUNK_SIZE = 4 << 20
"""The chunk size a store reads and writes unless told otherwise (4 MiB: each chunk costs
a hand-off to a worker thread, and on a busy two-core machine a 1 GiB put ran at 220-280
MiB/s in 1 MiB chunks and 280-400 MiB/s in 4 MiB ones, for 12 MiB more memory)."""

Buffer = bytes | bytearray | memoryview
"""A chunk of bytes as ``put`` takes it."""

Clock = Callable[[], float]
"""Seconds since the epoch: ``time.time`` unless a test injects a clock it moves."""

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What ``put`` stored: the bytes' digest (``sha256:<hex>``) and their size."""

    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class Collected:
    """What ``gc`` did (or, with ``dry_run``, would do).

    :ivar removed: how many blobs were removed.
    :ivar freed: how many bytes they held.
    :ivar kept_young: unreferenced blobs kept because they are younger than the grace.
    :ivar leftovers: pieces of puts that never finished, removed.
    """

    removed: int
    freed: int
    kept_young: int
    leftovers: int


def check_digest(digest: object) -> str:
    """``digest`` if it is ``sha256:`` followed by 64 lowercase hex digits, else raise
    ``ValidationError``."""
    if type(digest) is not str or not _DIGEST.fullmatch(digest):
        raise ValidationError(f"digest {digest!r} is not allowed; a digest is 'sha256:' and 64 "
                              "lowercase hex digits", key="digest")
    return digest


def digest_of(data: Buffer) -> str:
    """The digest of ``data``, as ``put`` would name it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Verifier:
    """Hashes bytes as a read yields them and checks, at the end, that they are the blob
    they claim to be. ``update`` is meant for a worker thread (hashing releases the GIL)."""

    __slots__ = ("_hash", "digest", "size")

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.size = 0
        self._hash = hashlib.sha256()

    def update(self, chunk: Buffer) -> None:
        """Count and hash ``chunk``."""
        self._hash.update(chunk)
        self.size += len(chunk)

    def check(self) -> None:
        """Raise ``IntegrityError`` unless the bytes seen hash to the digest."""
        seen = "sha256:" + self._hash.hexdigest()
        if seen != self.digest:
            raise IntegrityError(
                f"blob {self.digest} is damaged: its {self.size} stored bytes hash to {seen}",
                where=self.digest)


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class BlobStore(ABC):
    """Bytes by digest; see the module's docstring for the promises every store keeps.

    Use it as ``async with store:`` (or ``await store.start()`` and ``await
    store.aclose()``). Every method raises ``ClosedError`` before ``start`` or after
    ``aclose``.
    """

    chunk_size: int
    """The largest chunk ``open`` yields."""

    def __init__(self, *, chunk_size: int = CHUNK_SIZE) -> None:
        if type(chunk_size) is not int or chunk_size < 1:
            raise ValidationError(f"chunk_size={chunk_size!r} is not allowed; use a positive "
                                  "number of bytes", key="chunk_size")
        self.chunk_size = chunk_size
        self._state = _State.NEW

    def __del__(self) -> None:
        if getattr(self, "_state", None) is _State.OPEN:
            warnings.warn(f"{self!r} was never closed", ResourceWarning, stacklevel=1)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Make the store ready (create its directory or tables).

        :raises ClosedError: when it was started before.
        :raises StorageError: when the store cannot be reached or created.
        """
        if self._state is not _State.NEW:
            raise ClosedError(f"{self!r} can be started once; make a new store")
        await self._start()
        self._state = _State.OPEN

    async def aclose(self) -> None:
        """Release what the store holds. Idempotent."""
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
            await self._stop()
        self._state = _State.CLOSED

    def _live(self) -> None:
        """Raise ``ClosedError`` unless the store is started and not closed."""
        if self._state is not _State.OPEN:
            raise ClosedError(f"{self!r} is {self._state.value}; use it inside `async with`")

    @abstractmethod
    async def _start(self) -> None:
        """Acquire the store's resources: create its directory or tables, connect."""

    @abstractmethod
    async def _stop(self) -> None:
        """Release the store's resources."""

    # Writing ------------------------------------------------------------------------------

    @abstractmethod
    async def put(self, chunks: AsyncIterable[Buffer]) -> BlobInfo:
        """Store the bytes ``chunks`` yields (chunks of any size), hashing them as they
        pass, and return their digest and size once they are durable. Bytes already stored
        are not stored again; their age is refreshed.

        :raises StorageError: when the store fails; nothing is stored under the digest.
        :raises TypeError: for a chunk that is not bytes-like.
        """

    async def put_bytes(self, data: Buffer) -> BlobInfo:
        """``put`` for bytes already in memory, in chunks of ``chunk_size``."""
        view = memoryview(data).cast("B")

        async def chunks() -> AsyncIterator[Buffer]:
            for start in range(0, len(view), self.chunk_size):
                yield view[start:start + self.chunk_size]

        return await self.put(chunks())

    @abstractmethod
    async def delete(self, digest: str) -> bool:
        """Remove the blob; True when it was there. Only ``gc`` should call this on a live
        store: a blob an event names must stay."""

    @abstractmethod
    async def gc(self, referenced: Collection[str], *, grace: float,
                 dry_run: bool = False) -> Collected:
        """Remove every blob whose digest is not in ``referenced`` and that was put (or put
        again) at least ``grace`` seconds ago, and the leftovers of puts that died as long
        ago; with ``dry_run``, only count them.

        :raises ValidationError: for a negative ``grace``.
        """

    # Reading ------------------------------------------------------------------------------

    @abstractmethod
    def open(self, digest: str) -> AsyncGenerator[bytes, None]:
        """The blob's bytes, in chunks of at most ``chunk_size``, checked as they pass.

        Errors surface from the iteration, not from this call: ``IntegrityError`` at the
        first chunk when the blob is not stored, and after the last when the bytes do not
        match their digest; ``ValidationError`` for a malformed digest. Close an iteration
        left early with ``aclose()`` (``contextlib.aclosing``) to release it at once.
        """

    async def read(self, digest: str) -> bytes:
        """The blob's bytes, whole and checked (for small blobs; ``open`` streams).

        :raises IntegrityError: when the blob is not stored or its bytes are damaged.
        """
        parts = [chunk async for chunk in self.open(digest)]
        return b"".join(parts)

    @abstractmethod
    async def exists(self, digest: str) -> bool:
        """Whether the blob is stored (its bytes are not checked)."""

    @abstractmethod
    async def size(self, digest: str) -> int | None:
        """The blob's size in bytes, or None when it is not stored."""

    @abstractmethod
    def digests(self) -> AsyncGenerator[str, None]:
        """Every stored blob's digest, in no particular order."""


def check_grace(grace: object) -> float:
    """A gc grace period: a finite number of seconds >= 0."""
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not (
            0 <= grace < float("inf")):
        raise ValidationError(f"grace={grace!r} is not allowed; use a number of seconds >= 0",
                              key="grace")
    return float(grace)

