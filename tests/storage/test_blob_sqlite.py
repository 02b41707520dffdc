"""The blob store contract in an SQLite run database, and what only a database store can
show: bytes live in the database's own tables, in chunks of the chunk size."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine._storage.blobs.contract import Buffer
from engine.errors import StorageError
from tests.storage.blob_database import OnStore, Owned


class TestSqliteBlobStore(OnStore):
    def url(self, place: Path) -> str:
        return str(place / "runs.db")


async def test_a_large_blob_is_kept_in_chunks_of_the_chunk_size(tmp_path: Path) -> None:
    async with Owned(str(tmp_path / "runs.db"), chunk_size=1000, clock=time.time) as store:
        info = await store.put_bytes(bytes(range(256)) * 10)
        rows = await store.log.blob_reader.read(lambda s: s.fetch(
            "SELECT seq, length(data) FROM blob_chunks ORDER BY seq"))
        assert [tuple(r) for r in rows] == [(0, 1000), (1, 1000), (2, 560)]
        assert await store.read(info.digest) == bytes(range(256)) * 10


async def test_an_upload_whose_chunks_went_missing_names_no_blob(tmp_path: Path) -> None:
    """A chunk's commit may not wait for the disk (PostgreSQL): if the database lost one
    before the upload is named, the put fails and no blob names the rest."""

    class Lossy(Owned):
        async def _write_chunk(self, upload: str, seq: int, data: Buffer) -> None:
            if seq != 1:  # the database "lost" the second chunk
                await super()._write_chunk(upload, seq, data)

    async with Lossy(str(tmp_path / "runs.db"), chunk_size=1000, clock=time.time) as store:
        with pytest.raises(StorageError, match="1 of the 3 chunks"):
            await store.put_bytes(bytes(2500))
        assert [d async for d in store.digests()] == []
        assert (await store.gc(set(), grace=0)).leftovers == 0  # its chunks went with it
