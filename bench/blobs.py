"""The directory blob store's benchmarks, each in a fresh process.

    .venv/bin/python -m bench.blobs            # every benchmark
    .venv/bin/python -m bench.blobs upload     # one of: upload, small

Prints one JSON object per measurement. ``upload`` puts a 1 GiB generated stream (no file
is read: the figure is the store's) and reads it back, with the RSS the process grew by;
targets: >= 200 MiB/s, < 64 MiB of growth. ``small`` puts 1,000 distinct 10 KiB blobs one
after another and 16 at a time. Durable means ``durability="full"``: every put fsyncs its
file and its directory before it returns.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio

from bench.engine import _fsync_ms, machine
from engine._storage.blobs.contract import CHUNK_SIZE
from engine._storage.blobs.directory import DirectoryBlobStore

MiB = 1 << 20
GiB = 1 << 30
Durability = Literal["full", "normal"]


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _stream(size: int, chunk: int) -> AsyncIterator[bytes]:
    """``size`` bytes, chunk by chunk, each chunk different (as a file read would give)."""
    block = os.urandom(chunk)
    for number, start in enumerate(range(0, size, chunk)):
        yield number.to_bytes(8, "little") + block[8:min(chunk, size - start)]


async def upload(root: str, durability: Durability = "full",
                 chunk: int = CHUNK_SIZE) -> dict[str, Any]:
    """1 GiB through ``put``, then back through ``open``."""
    async with DirectoryBlobStore(root, durability=durability, chunk_size=chunk) as store:
        before = _rss_mib()
        start = time.perf_counter()
        info = await store.put(_stream(GiB, chunk))
        put_s = time.perf_counter() - start
        put_growth = _peak_rss_mib() - before
        start = time.perf_counter()
        total = 0
        async for part in store.open(info.digest):
            total += len(part)
        read_s = time.perf_counter() - start
        assert total == GiB
        growth = _peak_rss_mib() - before
    return {"benchmark": f"upload 1 GiB ({durability}, {chunk // MiB} MiB chunks)",
            "put_mib_per_s": round(GiB / MiB / put_s, 1),
            "read_mib_per_s": round(GiB / MiB / read_s, 1),
            "put_rss_growth_mib": round(put_growth, 1),
            "rss_growth_mib": round(growth, 1),
            "meets_targets": GiB / MiB / put_s >= 200 and growth < 64}


async def small(root: str, durability: Durability = "full", count: int = 1000,
                size: int = 10 * 1024, concurrency: int = 1) -> dict[str, Any]:
    """``count`` distinct blobs of ``size`` bytes, ``concurrency`` puts at a time."""
    blobs = [i.to_bytes(8, "little") + os.urandom(size - 8) for i in range(count)]
    rates = []
    for attempt in range(3):
        async with DirectoryBlobStore(os.path.join(root, str(attempt)),
                                      durability=durability) as store:
            limit = anyio.Semaphore(concurrency)

            async def put(data: bytes, store: DirectoryBlobStore = store,
                          limit: anyio.Semaphore = limit) -> None:
                async with limit:
                    await store.put_bytes(data)

            start = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for data in blobs:
                    tasks.start_soon(put, data)
            rates.append(count / (time.perf_counter() - start))
    return {"benchmark": f"{count} blobs of {size // 1024} KiB ({durability}, "
                         f"{concurrency} at a time)",
            "blobs_per_s": round(statistics.median(rates)), "runs": [round(r) for r in rates],
            "fsync_ms": round(_fsync_ms(os.path.join(root, "fsync-probe")), 2)}


def _child(name: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        if name == "upload":
            results = [asyncio.run(upload(os.path.join(directory, "full")))]
        elif name == "upload-chunks":
            results = [asyncio.run(upload(os.path.join(directory, f"c{chunk}"), chunk=chunk))
                       for chunk in (MiB, 4 * MiB)]
        elif name == "small":
            results = [asyncio.run(small(os.path.join(directory, f"{d}-{c}"), d,
                                         concurrency=c))
                       for d in ("full", "normal") for c in (1, 16)]
        else:
            raise SystemExit(f"unknown benchmark {name!r}; use one of {', '.join(BENCHMARKS)}")
    for result in results:
        result["peak_rss_mb"] = round(_peak_rss_mib(), 1)
        print(json.dumps(result))


BENCHMARKS = ("upload", "small")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(argv[1])
        return
    print(f"# {machine()}")
    for name in argv or BENCHMARKS:
        out = subprocess.run([sys.executable, "-m", "bench.blobs", "--child", name],
                             capture_output=True, text=True, check=True)
        sys.stdout.write(out.stdout)
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
