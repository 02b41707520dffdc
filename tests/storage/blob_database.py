"""The blob store contract over the blob store in the run database: a base class each
backend's test module subclasses (one subclass per module: hypothesis runs each test
function from one class)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from engine._core.events import default_upcasters
from engine._storage.blobdb import DatabaseBlobStore
from engine._storage.blobs.contract import CHUNK_SIZE, BlobStore, Buffer
from engine._storage.contract import Store
from engine._storage.registry import open_store
from engine.errors import StorageError
from tests.storage.blob_contract import BlobStoreContract, Clock


class OnStore(BlobStoreContract):
    """A database blob store over a log store opened for each test."""

    def url(self, place: Path) -> str:
        raise NotImplementedError

    def make_store(self, place: Path, *, clock: Clock,
                   chunk_size: int = CHUNK_SIZE) -> BlobStore:
        return Owned(self.url(place), chunk_size=chunk_size, clock=clock)

    @asynccontextmanager
    async def opened(self, place: Path, clock: Clock | None = None,
                     chunk_size: int = CHUNK_SIZE) -> AsyncIterator[BlobStore]:
        async with self.make_store(place, clock=clock or Clock(),
                                   chunk_size=chunk_size) as store:
            yield store

    async def corrupt(self, store: BlobStore, digest: str) -> None:
        assert isinstance(store, Owned)

        async def work(session: Any) -> None:
            rows = await session.fetch("SELECT upload FROM blobs WHERE digest = ?", (digest,))
            chunk = await session.fetch("SELECT data FROM blob_chunks WHERE upload = ? "
                                        "AND seq = 0", (rows[0][0],))
            data = bytearray(chunk[0][0])
            data[len(data) // 2] ^= 0xFF
            await session.execute("UPDATE blob_chunks SET data = ? WHERE upload = ? AND "
                                  "seq = 0", (bytes(data), rows[0][0]))

        await store.log.blob_transaction(work)

    async def test_a_put_failing_with_chunks_in_flight_leaves_nothing(
            self, tmp_path: Path) -> None:
        """Chunks are written while the next are read (several at once where the backend
        takes them): whether the source or a write fails, every write in flight ends before
        the put cleans up, so none of its chunks outlives it."""

        async def failing() -> AsyncIterator[bytes]:
            for number in range(12):
                yield number.to_bytes(1, "little") * 1000
            raise OSError("the disk went away")

        class Refusing(Owned):
            async def _write_chunk(self, upload: str, seq: int, data: Buffer) -> None:
                if seq == 5:
                    raise StorageError("the database refused chunk 5")
                await super()._write_chunk(upload, seq, data)

        async with Owned(self.url(tmp_path), chunk_size=1000, clock=Clock()) as store:
            with pytest.raises(OSError, match="went away"):
                await store.put(failing())
            assert await _chunk_rows(store) == 0
        async with Refusing(self.url(tmp_path), chunk_size=1000, clock=Clock()) as store:
            with pytest.raises(StorageError, match="chunk 5"):
                await store.put_bytes(bytes(12_500))
            assert await _chunk_rows(store) == 0
            assert [d async for d in store.digests()] == []

    async def dead_put(self, store: BlobStore) -> None:
        assert isinstance(store, Owned)
        now = store.clock()

        async def work(session: Any) -> None:
            await session.execute("INSERT INTO blob_chunks (upload, seq, at, data) VALUES "
                                  "(?, 0, ?, ?)", ("deadbeef", now, b"half an upload"))

        await store.log.blob_transaction(work)


async def _chunk_rows(store: Owned) -> int:
    rows = await store.log.blob_reader.read(
        lambda session: session.fetch("SELECT count(*) FROM blob_chunks"))
    return int(rows[0][0])


class Owned(DatabaseBlobStore):
    """A database blob store that opens (and closes) the log store it lives in: the
    contract tests start and close blob stores on their own."""

    def __init__(self, url: str, *, chunk_size: int, clock: Clock) -> None:
        self.log: Store = open_store(url, durability="normal", upcasters=default_upcasters())
        self.clock = clock
        super().__init__(self.log, chunk_size=chunk_size, clock=clock)

    async def _start(self) -> None:
        await self.log.open()

    async def _stop(self) -> None:
        await self.log.close()


