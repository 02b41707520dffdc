"""Promises every blob store keeps, written once; each store's test module subclasses them.

A subclass provides ``make_store(place, clock=..., chunk_size=...)`` (an unstarted store
whose data lives under the fresh directory ``place``, or in a fresh database),
``corrupt(store, digest)`` (change the stored bytes of a blob behind the store's back) and
``dead_put(store)`` (leave what a put leaves when its process dies mid-way).
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine._storage.blobs.contract import CHUNK_SIZE, BlobInfo, BlobStore, Buffer, digest_of
from engine.errors import ClosedError, IntegrityError, ValidationError

MiB = 1 << 20


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def chunked(data: bytes, cuts: Sequence[int] = ()) -> AsyncIterator[Buffer]:
    """``data`` in pieces split at ``cuts``, with a checkpoint between pieces."""
    view = memoryview(data)
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        if start <= cut:
            yield view[start:cut]
            start = cut
        await anyio.lowlevel.checkpoint()


async def generated(size: int, chunk: int = MiB) -> AsyncIterator[bytes]:
    """``size`` bytes made chunk by chunk (no two chunks alike), never all in memory."""
    block = hashlib.sha256(b"seed").digest() * (chunk // 32 + 1)
    for number, start in enumerate(range(0, size, chunk)):
        yield number.to_bytes(8, "little") + block[8:min(chunk, size - start)]


def digest_generated(size: int, chunk: int = MiB) -> str:
    hasher = hashlib.sha256()
    block = hashlib.sha256(b"seed").digest() * (chunk // 32 + 1)
    for number, start in enumerate(range(0, size, chunk)):
        hasher.update(number.to_bytes(8, "little") + block[8:min(chunk, size - start)])
    return "sha256:" + hasher.hexdigest()


class BlobStoreContract:
    """The contract of ``engine._storage.blobs.contract.BlobStore``."""

    def make_store(self, place: Path, *, clock: Clock,
                   chunk_size: int = CHUNK_SIZE) -> BlobStore:
        raise NotImplementedError

    async def corrupt(self, store: BlobStore, digest: str) -> None:
        raise NotImplementedError

    async def dead_put(self, store: BlobStore) -> None:
        raise NotImplementedError

    @asynccontextmanager
    async def opened(self, place: Path, clock: Clock | None = None,
                     chunk_size: int = CHUNK_SIZE) -> AsyncIterator[BlobStore]:
        async with self.make_store(place, clock=clock or Clock(),
                                   chunk_size=chunk_size) as store:
            yield store

    @staticmethod
    async def chunks_of(store: BlobStore, digest: str) -> list[bytes]:
        return [chunk async for chunk in store.open(digest)]

    @staticmethod
    async def drain(store: BlobStore, digest: str, into: list[bytes]) -> None:
        async for chunk in store.open(digest):
            into.append(chunk)

    # Round trips ---------------------------------------------------------------------------

    # Each store's subclass runs this one function (differing executors): each example
    # makes its own store, so no state passes between them.
    @settings(max_examples=40, suppress_health_check=[HealthCheck.differing_executors])
    @given(size=st.integers(0, 5000), chunk_size=st.sampled_from([13, 1000, 4096]),
           cuts=st.lists(st.integers(0, 5000), max_size=8), seed=st.integers(0, 2**32))
    async def test_any_bytes_in_any_chunks_come_back_whole_and_checked(
            self, tmp_path_factory: pytest.TempPathFactory, size: int, chunk_size: int,
            cuts: list[int], seed: int) -> None:
        data = seed.to_bytes(5, "little") * (size // 5 + 1)
        data = data[:size]
        async with self.opened(tmp_path_factory.mktemp("blobs"),
                               chunk_size=chunk_size) as store:
            info = await store.put(chunked(data, [c for c in cuts if c <= size]))
            assert info == BlobInfo(digest_of(data), size)
            chunks = await self.chunks_of(store, info.digest)
            assert b"".join(chunks) == data
            assert all(0 < len(c) <= chunk_size for c in chunks)
            assert await store.read(info.digest) == data
            assert await store.size(info.digest) == size
            assert await store.exists(info.digest)

    @pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1,
                                      3 * CHUNK_SIZE + 7])
    async def test_sizes_around_the_chunk_size(self, tmp_path: Path, size: int) -> None:
        data = bytes(range(256)) * (size // 256 + 1)
        data = data[:size]
        async with self.opened(tmp_path) as store:
            info = await store.put_bytes(data)
            assert info == BlobInfo(digest_of(data), size)
            chunks = await self.chunks_of(store, info.digest)
            assert [len(c) for c in chunks] == [min(CHUNK_SIZE, size - s)
                                                for s in range(0, size, CHUNK_SIZE)]
            assert b"".join(chunks) == data

    async def test_the_same_bytes_are_stored_once(self, tmp_path: Path) -> None:
        data = b"weights" * 1000
        async with self.opened(tmp_path, chunk_size=1000) as store:
            first = await store.put_bytes(data)
            second = await store.put(chunked(data, [3, 500, 4096]))
            assert first == second
            await store.put_bytes(b"other")
            assert sorted([d async for d in store.digests()]) == sorted(
                [first.digest, digest_of(b"other")])

    async def test_concurrent_puts_of_the_same_bytes_store_them_once(self, tmp_path: Path) -> None:
        data = bytes(range(256)) * 4000
        infos: list[BlobInfo] = []
        async with self.opened(tmp_path, chunk_size=4096) as store:

            async def put(cuts: list[int]) -> None:
                infos.append(await store.put(chunked(data, cuts)))

            async with anyio.create_task_group() as tasks:
                for i in range(8):
                    tasks.start_soon(put, list(range(i * 997 + 1, len(data), 65_536)))
            assert infos == [BlobInfo(digest_of(data), len(data))] * 8
            assert [d async for d in store.digests()] == [digest_of(data)]
            assert await store.read(digest_of(data)) == data
            collected = await store.gc({digest_of(data)}, grace=0)
            assert (collected.removed, collected.leftovers) == (0, 0)  # no strays either

    # Reads check what they give -------------------------------------------------------------

    async def test_damaged_bytes_raise_integrity_error_at_the_end_of_the_stream(
            self, tmp_path: Path) -> None:
        data = bytes(range(256)) * 100
        async with self.opened(tmp_path, chunk_size=1000) as store:
            info = await store.put_bytes(data)
            await self.corrupt(store, info.digest)
            seen: list[bytes] = []
            with pytest.raises(IntegrityError, match="damaged") as caught:
                await self.drain(store, info.digest, seen)
            assert caught.value.where == info.digest
            assert seen  # the chunks came first; the verdict after the last
            with pytest.raises(IntegrityError) as caught:
                await store.read(info.digest)
            assert caught.value.where == info.digest

    async def test_a_missing_blob_is_an_integrity_error_when_read(self, tmp_path: Path) -> None:
        async with self.opened(tmp_path) as store:
            info = await store.put_bytes(b"x")
            assert await store.delete(info.digest)
            assert not await store.delete(info.digest)
            for read in (store.read(info.digest), self.chunks_of(store, info.digest)):
                with pytest.raises(IntegrityError, match="missing") as caught:
                    await read
                assert caught.value.where == info.digest
            assert await store.size(info.digest) is None
            assert not await store.exists(info.digest)

    @pytest.mark.parametrize("digest", ["", "sha256:", "sha256:" + "A" * 64, "md5:" + "0" * 32,
                                        "sha256:" + "0" * 63, 3, "sha256:" + "0" * 64 + "\n"])
    async def test_a_malformed_digest_is_refused(self, tmp_path: Path, digest: Any) -> None:
        async with self.opened(tmp_path) as store:
            for call in (store.read(digest), self.chunks_of(store, digest), store.size(digest),
                         store.exists(digest), store.delete(digest)):
                with pytest.raises(ValidationError) as caught:
                    await call
                assert caught.value.key == "digest"

    async def test_a_read_left_early_can_be_closed(self, tmp_path: Path) -> None:
        async with self.opened(tmp_path, chunk_size=10) as store:
            info = await store.put_bytes(bytes(100))
            async with aclosing(store.open(info.digest)) as chunks:
                async for _ in chunks:
                    break
            assert await store.read(info.digest) == bytes(100)

    # Puts that fail store nothing -------------------------------------------------------------

    async def test_a_source_that_fails_mid_way_stores_nothing(self, tmp_path: Path) -> None:
        async def failing() -> AsyncIterator[bytes]:
            yield b"half"
            raise OSError("the disk went away")

        async with self.opened(tmp_path) as store:
            with pytest.raises(OSError, match="went away"):
                await store.put(failing())
            with pytest.raises(TypeError, match="bytes-like"):
                await store.put(chunked("text"))  # type: ignore[arg-type]
            assert [d async for d in store.digests()] == []
            assert (await store.gc(set(), grace=0)).leftovers == 0

    async def test_a_cancelled_put_stores_nothing(self, tmp_path: Path) -> None:
        started = anyio.Event()

        async def endless() -> AsyncIterator[bytes]:
            while True:
                yield bytes(1000)
                started.set()

        async with self.opened(tmp_path) as store:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(store.put, endless())
                await started.wait()
                tasks.cancel_scope.cancel()
            assert [d async for d in store.digests()] == []
            assert (await store.gc(set(), grace=0)).leftovers == 0

    # Garbage collection ----------------------------------------------------------------------

    async def test_gc_keeps_referenced_and_young_blobs_and_removes_the_rest(
            self, tmp_path: Path) -> None:
        clock = Clock()
        async with self.opened(tmp_path, clock) as store:
            kept = await store.put_bytes(b"named by an event")
            old = await store.put_bytes(b"orphan from a crash")
            again = await store.put_bytes(b"put long ago, and again just now")
            clock.now += 100
            young = await store.put_bytes(b"an upload in flight")
            await store.put_bytes(b"put long ago, and again just now")

            dry = await store.gc({kept.digest}, grace=50, dry_run=True)
            assert (dry.removed, dry.freed, dry.kept_young) == (1, old.size, 2)
            assert await store.exists(old.digest)

            done = await store.gc({kept.digest}, grace=50)
            assert (done.removed, done.freed, done.kept_young) == (1, old.size, 2)
            assert not await store.exists(old.digest)
            for info in (kept, young, again):
                assert await store.exists(info.digest)

            clock.now += 50  # now every unreferenced blob is old enough
            done = await store.gc([kept.digest], grace=50)
            assert (done.removed, done.freed) == (2, young.size + again.size)
            assert [d async for d in store.digests()] == [kept.digest]

    async def test_gc_removes_what_dead_puts_left_once_they_are_old(self, tmp_path: Path) -> None:
        clock = Clock()
        async with self.opened(tmp_path, clock) as store:
            await self.dead_put(store)
            clock.now += 10
            assert (await store.gc(set(), grace=60)).leftovers == 0
            clock.now += 60
            assert (await store.gc(set(), grace=60, dry_run=True)).leftovers == 1
            assert (await store.gc(set(), grace=60)).leftovers == 1
            assert (await store.gc(set(), grace=0)).leftovers == 0

    async def test_a_put_racing_gc_always_leaves_its_blob(self, tmp_path: Path) -> None:
        clock = Clock()
        data = b"orphaned, then logged again"
        async with self.opened(tmp_path, clock) as store:
            for _ in range(50):
                await store.put_bytes(data)
                clock.now += 100
                infos: list[BlobInfo] = []

                async def put() -> None:
                    infos.append(await store.put_bytes(data))  # noqa: B023

                async def gc() -> None:
                    await store.gc(set(), grace=50)

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(gc)
                    tasks.start_soon(put)
                assert await store.read(infos[0].digest) == data

    async def test_grace_must_be_seconds(self, tmp_path: Path) -> None:
        async with self.opened(tmp_path) as store:
            for grace in (-1, float("nan"), float("inf"), "1", True):
                with pytest.raises(ValidationError) as caught:
                    await store.gc(set(), grace=grace)  # type: ignore[arg-type]
                assert caught.value.key == "grace"

    # Lifecycle ---------------------------------------------------------------------------------

    async def test_a_store_is_used_between_start_and_aclose(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path, clock=Clock())
        with pytest.raises(ClosedError):
            await store.put_bytes(b"x")
        async with store:
            info = await store.put_bytes(b"x")
            with pytest.raises(ClosedError):
                await store.start()
        await store.aclose()  # idempotent
        for call in (store.put_bytes(b"x"), store.read(info.digest),
                     self.chunks_of(store, info.digest), store.exists(info.digest),
                     store.size(info.digest), store.delete(info.digest),
                     store.gc(set(), grace=0)):
            with pytest.raises(ClosedError):
                await call
        async with self.opened(tmp_path) as again:  # the bytes outlive the store
            assert await again.read(info.digest) == b"x"

    # Memory and the event loop ------------------------------------------------------------------

    @pytest.mark.slow
    async def test_memory_stays_flat_for_a_large_blob_both_ways(self, tmp_path: Path) -> None:
        size = 256 * MiB
        async with self.opened(tmp_path) as store:
            tracemalloc.start()
            try:
                info = await store.put(generated(size))
                _, put_peak = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                total = 0
                async for chunk in store.open(info.digest):
                    total += len(chunk)
                _, read_peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert info == BlobInfo(digest_generated(size), size)
            assert total == size
            # A put holds the chunk it reads and the chunks being written, each once more in
            # the driver's buffer: a few chunks, however large the blob.
            assert put_peak < 8 * CHUNK_SIZE, f"put peaked at {put_peak / MiB:.1f} MiB"
            assert read_peak < 6 * CHUNK_SIZE, f"read peaked at {read_peak / MiB:.1f} MiB"

    async def test_hashing_and_copying_run_off_the_event_loop(self, tmp_path: Path) -> None:
        """The loop's own thread spends almost none of the CPU time a put and a read take
        (hashing alone, on the loop, would cost it ``hash_cpu``), and a task running beside
        them keeps ticking."""
        # Big chunks, so the cost of handing each to a thread is small beside hashing it.
        chunk, count = bytes(range(256)) * (16 * MiB // 256), 8
        started = time.thread_time()
        for _ in range(count):
            hashlib.sha256(chunk).digest()
        hash_cpu = time.thread_time() - started

        async def source() -> AsyncIterator[bytes]:
            for _ in range(count):
                yield chunk

        async with self.opened(tmp_path, chunk_size=len(chunk)) as store:
            started = time.thread_time()
            info = await store.put(source())
            put_cpu = time.thread_time() - started
            started = time.thread_time()
            async for _ in store.open(info.digest):
                pass
            read_cpu = time.thread_time() - started
            assert put_cpu < hash_cpu / 4, (put_cpu, hash_cpu)
            assert read_cpu < hash_cpu / 4, (read_cpu, hash_cpu)

            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await anyio.sleep(0.001)
                    ticks += 1

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(tick)
                await store.put(source())
                put_ticks, ticks = ticks, 0
                async for _ in store.open(info.digest):
                    pass
                tasks.cancel_scope.cancel()
            assert put_ticks >= 10
            assert ticks >= 10
