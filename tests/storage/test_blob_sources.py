"""Reading file sources into a blob store: every kind of source, in chunks, and sources that
went bad between the call that logged them and the reading of their bytes."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from engine._core.files import File
from engine._core.images import Image
from engine._storage.blobs.contract import digest_of
from engine._storage.blobs.directory import DirectoryBlobStore
from engine._storage.blobs.sources import read_source, store_file
from engine.errors import FileSourceError

DATA = bytes(range(256)) * 40  # 10 KiB


async def chunks_of(file: File, chunk_size: int = 4096) -> list[bytes]:
    return [bytes(c) async for c in read_source(file, chunk_size=chunk_size)]


async def test_paths_bytes_and_file_objects_are_read_in_chunks(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(DATA)
    stream = io.BytesIO(b"skip" + DATA)
    stream.seek(4)  # a file object is read from where it stands
    for file in (File(tmp_path / "data.bin"), File(DATA), File(stream)):
        chunks = await chunks_of(file)
        assert [len(c) for c in chunks] == [4096, 4096, 2048]
        assert b"".join(chunks) == DATA
    assert await chunks_of(File(b"")) == []


async def test_store_file_puts_the_bytes_and_returns_their_digest(tmp_path: Path) -> None:
    png = Image(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x02\x00\x00\x00\x03")
    async with DirectoryBlobStore(tmp_path / "blobs", chunk_size=1000) as store:
        info = await store_file(store, png)
        assert (info.digest, info.size) == (digest_of(png.source), len(png.source))  # type: ignore[arg-type]
        (tmp_path / "data.bin").write_bytes(DATA)
        info = await store_file(store, File(tmp_path / "data.bin"))
        assert await store.read(info.digest) == DATA


async def test_a_path_that_went_bad_after_the_call_is_a_file_source_error(
        tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(DATA)
    file = File(path)
    path.unlink()
    async with DirectoryBlobStore(tmp_path / "blobs") as store:
        with pytest.raises(FileSourceError, match=r"'model/weights'.*no such file") as caught:
            await store_file(store, file, key="model/weights")
        assert caught.value.key == "model/weights"
        path.mkdir()
        with pytest.raises(FileSourceError, match="directory"):
            await store_file(store, file)
        assert [d async for d in store.digests()] == []
        assert (await store.gc(set(), grace=0)).leftovers == 0  # the put left nothing


async def test_a_file_object_that_fails_is_a_file_source_error(tmp_path: Path) -> None:
    class Flaky(io.RawIOBase):
        def __init__(self) -> None:
            self.reads = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.reads += 1
            if self.reads > 2:
                raise OSError("the network share went away")
            return b"x" * 10

    async with DirectoryBlobStore(tmp_path / "blobs") as store:
        with pytest.raises(FileSourceError, match="went away") as caught:
            await store_file(store, File(Flaky()), key="data")
        assert caught.value.key == "data"
        closed = io.BytesIO(DATA)
        file = File(closed)
        closed.close()
        with pytest.raises(FileSourceError, match="closed"):
            await store_file(store, file)
        assert [d async for d in store.digests()] == []


async def test_a_stream_that_gives_text_or_nothing_is_refused() -> None:
    class Texty(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> str:
            return "text"

    class Empty(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> None:
            return None

    with pytest.raises(FileSourceError, match="gave str"):
        await chunks_of(File(Texty(), media_type="text/plain"))  # type: ignore[arg-type]
    with pytest.raises(FileSourceError, match="no data ready"):
        await chunks_of(File(Empty()))


async def test_reading_runs_on_worker_threads() -> None:
    loop_thread = threading.get_ident()

    class Watched(io.BytesIO):
        readers: ClassVar[set[int]] = set()

        def read(self, size: int | None = -1, /) -> bytes:
            self.readers.add(threading.get_ident())
            return super().read(size)

    stream = Watched(DATA)
    assert b"".join(await chunks_of(File(stream, media_type="text/plain"))) == DATA
    assert Watched.readers
    assert loop_thread not in Watched.readers
