"""The blob store contract in an SQLite run database, and what only a database store can
show: bytes live in the database's own tables, in chunks of the chunk size."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine._storage.blobs.contract import CHUNK_SIZE, Buffer
from engine.errors import StorageError
from tests.storage.blob_contract import MiB, generated
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


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
async def test_reading_a_large_blob_back_does_not_fill_a_page_cache(tmp_path: Path) -> None:
    """SQLite keeps the pages a connection reads, up to 64 MiB of them: a file read back on
    the connection reads of runs use would grow the process by as much (and evict what
    those reads keep there)."""
    async with Owned(str(tmp_path / "runs.db"), chunk_size=CHUNK_SIZE,
                     clock=time.time) as store:
        info = await store.put(generated(160 * MiB))
        before = peak = _rss()
        async for _ in store.open(info.digest):
            peak = max(peak, _rss())
        grew = (peak - before) / MiB
        assert grew < 32, f"reading grew the process by {grew:.0f} MiB"
