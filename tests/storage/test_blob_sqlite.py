"""The blob store contract in an SQLite run database, and what only a database store can
show: bytes live in the database's own tables, in chunks of the chunk size."""

from __future__ import annotations

import time
from pathlib import Path

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
