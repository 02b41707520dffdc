"""The blob store contract on a directory, and what only the directory store can show: its
layout, crash leftovers, a gc that died half-way, and a file system that fails."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from engine._storage.blobs.contract import CHUNK_SIZE, BlobStore, digest_of
from engine._storage.blobs.directory import DirectoryBlobStore
from engine.errors import StorageError, ValidationError
from tests.storage.blob_contract import BlobStoreContract, Clock, chunked


def blob_path(store: BlobStore, digest: str) -> Path:
    assert isinstance(store, DirectoryBlobStore)
    return Path(store.root, digest[7:9], digest[9:])


class TestDirectoryBlobStore(BlobStoreContract):
    def make_store(self, place: Path, *, clock: Clock,
                   chunk_size: int = CHUNK_SIZE) -> BlobStore:
        return DirectoryBlobStore(place / "blobs", chunk_size=chunk_size, clock=clock)

    async def corrupt(self, store: BlobStore, digest: str) -> None:
        await anyio.to_thread.run_sync(flip_a_byte, blob_path(store, digest))

    async def dead_put(self, store: BlobStore) -> None:
        assert isinstance(store, DirectoryBlobStore)
        part = os.path.join(store.root, "tmp", "0123456789abcdef0123456789abcdef.part")
        await anyio.to_thread.run_sync(leave, part, store._clock())


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(data)


def leave(part: str, now: float) -> None:
    """What a put leaves when its process is killed mid-way: a part file, of its age."""
    with open(part, "wb") as out:
        out.write(b"the first chunks of an upload whose process was killed")
    os.utime(part, (now, now))


async def test_blobs_are_files_named_by_digest_under_a_fan_out(tmp_path: Path) -> None:
    async with DirectoryBlobStore(tmp_path / "blobs") as store:
        info = await store.put_bytes(b"hello")
        assert blob_path(store, info.digest).read_bytes() == b"hello"
        assert os.listdir(tmp_path / "blobs" / "tmp") == []  # nothing left in flight
        (tmp_path / "blobs" / "notes.txt").write_text("not a blob")
        (tmp_path / "blobs" / info.digest[7:9] / "README").write_text("nor this")
        assert [d async for d in store.digests()] == [info.digest]
        collected = await store.gc(set(), grace=0)
        assert collected.removed == 1
        assert (tmp_path / "blobs" / "notes.txt").exists()  # gc touches only blob names


async def test_a_gc_that_died_half_way_is_finished_by_the_next(tmp_path: Path) -> None:
    clock = Clock()
    async with DirectoryBlobStore(tmp_path, clock=clock) as store:
        referenced = await store.put_bytes(b"named by an event")
        orphan = await store.put_bytes(b"named by nothing")
        young = await store.put_bytes(b"just put again")
        # What a gc leaves when it dies between moving a blob aside and deleting it.
        for info in (referenced, orphan, young):
            os.replace(blob_path(store, info.digest),
                       tmp_path / "tmp" / f"{info.digest[7:]}.1a2b3c4d.gc")
        clock.now += 100
        os.utime(tmp_path / "tmp" / f"{young.digest[7:]}.1a2b3c4d.gc", (clock.now, clock.now))
        collected = await store.gc({referenced.digest}, grace=50)
        assert collected.leftovers == 1
        assert await store.read(referenced.digest) == b"named by an event"
        assert await store.read(young.digest) == b"just put again"
        assert not await store.exists(orphan.digest)
        assert os.listdir(tmp_path / "tmp") == []


async def test_normal_durability_stores_the_same_way(tmp_path: Path) -> None:
    async with DirectoryBlobStore(tmp_path, durability="normal") as store:
        info = await store.put_bytes(b"fast")
        assert await store.read(info.digest) == b"fast"
    with pytest.raises(ValidationError) as caught:
        DirectoryBlobStore(tmp_path, durability="fsync")  # type: ignore[arg-type]
    assert caught.value.key == "durability"
    with pytest.raises(ValidationError) as caught:
        DirectoryBlobStore(tmp_path, chunk_size=0)
    assert caught.value.key == "chunk_size"


async def test_a_file_system_that_fails_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a file where the root should be")
    with pytest.raises(StorageError, match="could not create the directory"):
        await DirectoryBlobStore(tmp_path / "file").start()
    async with DirectoryBlobStore(tmp_path / "blobs") as store:
        info = await store.put_bytes(b"kept")
        os.rmdir(tmp_path / "blobs" / "tmp")
        with pytest.raises(StorageError, match="could not store the blob"):
            await store.put_bytes(b"lost")
        with pytest.raises(StorageError, match="could not create a temporary file"):
            await store.put(chunked(b"lost"))
        assert await store.read(info.digest) == b"kept"


async def test_a_blob_with_a_changed_size_is_damaged(tmp_path: Path) -> None:
    async with DirectoryBlobStore(tmp_path) as store:
        info = await store.put_bytes(b"abc")
        blob_path(store, info.digest).write_bytes(b"abcd")
        with pytest.raises(Exception, match="damaged: its 4 stored bytes"):
            await store.read(info.digest)
        assert digest_of(b"abc") == info.digest


async def test_a_put_replaces_a_blob_a_crash_cut_short(tmp_path: Path) -> None:
    async with DirectoryBlobStore(tmp_path, durability="normal") as store:
        info = await store.put_bytes(b"checkpoint bytes")
        blob_path(store, info.digest).write_bytes(b"")  # what a power cut can leave
        assert await store.put_bytes(b"checkpoint bytes") == info
        assert await store.read(info.digest) == b"checkpoint bytes"
