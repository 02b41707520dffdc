"""What a run records besides metrics, against its targets, each in a fresh process.

    .venv/bin/python -m bench.content                      # every benchmark, SQLite
    .venv/bin/python -m bench.content files --db postgresql://...
                                                           # one of: files, upload, tail, start

``files``: ``log_files`` of 1,000 distinct 10 KiB PNG images (one per step), then ``flush()``:
files per second until durable (``durability="full"``); target >= 2,000/s. ``upload``:
``await run.upload`` of a 1 GiB file on disk, MiB/s and how much the process's RSS grew;
targets >= 200 MiB/s and < 64 MiB. ``tail``: ``read_text(tail=100)`` on a run whose captured
output has 1,000,000 lines, the median of 50 reads; target <= 5 ms. ``start``: what
``start_run`` (entering its block, a run id given) costs with every capture at its default
and with none, medians of 50 runs; target: within a few ms of each other.

Prints one JSON object per measurement, with its target and whether it is met.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from typing import Any

import anyio
import anyio.to_thread

import engine
from bench.engine import machine
from bench.postgres import schema_url

MiB = 1 << 20
BENCHES = ("files", "upload", "tail", "start")


def _png(seed: int, size: int = 10 << 10) -> bytes:
    """A distinct PNG of about ``size`` bytes (stored, not compressed, pixels)."""
    side = 58
    rows = b"".join(b"\x00" + (seed.to_bytes(4, "little") * side)[:side * 3]
                    for _ in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    head = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(rows, 0))
            + chunk(b"IEND", b""))


async def _files(url: str) -> dict[str, Any]:
    images = [engine.Image(_png(i)) for i in range(1000)]
    async with engine.connect(url, durability="full") as tracker, tracker.start_run(
            f"files-{os.getpid()}", capture_env=False, capture_source=False) as run:
        started = time.perf_counter()
        for step, image in enumerate(images):
            run.log_files({"eval/image": image}, step=step)
        await run.flush()
        took = time.perf_counter() - started
    rate = len(images) / took
    return {"bench": "log_files of 1,000 10 KiB images to durable", "files_per_s": round(rate),
            "target": ">= 2000", "met": rate >= 2000}


def _write_gib(path: str) -> None:
    """1 GiB of distinct MiBs, written before the clock starts."""
    with open(path, "wb") as out:
        block = os.urandom(MiB)
        for i in range(1024):
            out.write(i.to_bytes(8, "little") + block[8:])


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


async def _upload(url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "weights.bin")
        await anyio.to_thread.run_sync(_write_gib, path)
        async with engine.connect(url, durability="full") as tracker:
            async with tracker.start_run(f"upload-{os.getpid()}", capture_env=False,
                                         capture_source=False) as run:
                before = _rss_mib()
                started = time.perf_counter()
                await run.upload({"model/weights": path})
                took = time.perf_counter() - started
                grew = _rss_mib() - before
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rate = 1024 / took
    return {"bench": "upload of a 1 GiB file", "mib_per_s": round(rate), "rss_growth_mib":
            round(grew, 1), "peak_rss_mib": round(peak), "target": ">= 200 MiB/s, < 64 MiB",
            "met": rate >= 200 and grew < 64}


async def _tail(url: str) -> dict[str, Any]:
    async with engine.connect(url, durability="normal") as tracker:
        run_id = f"tail-{os.getpid()}"
        async with tracker.start_run(run_id, capture_env=False, capture_source=False) as run:
            for number in range(1_000_000):
                run.record_line("logs/stdout", number, f"epoch {number // 1000} batch "
                                f"{number % 1000}: loss 0.{number % 97:02d}")
                if number % 50_000 == 0:
                    await run.flush()
        times = []
        for _ in range(50):
            started = time.perf_counter()
            text = await tracker.read_text(run_id, "logs/stdout", tail=100)
            times.append((time.perf_counter() - started) * 1000)
        assert text.steps[-1] == 999_999 and len(text) == 100
    median = statistics.median(times)
    return {"bench": "read_text(tail=100) of 1,000,000 lines", "median_ms": round(median, 2),
            "target": "<= 5 ms", "met": median <= 5}


async def _start(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "start_run (block entered; run id given, or generated)"}
    async with engine.connect(url, durability="normal") as tracker:
        await anyio.sleep(1)  # the tracker learns the environment (git) in the background
        # The first run with the source captured reads and stores it; the ones measured
        # after it find it known, as every run of a script after its first does.
        async with tracker.start_run(f"first-{os.getpid()}"):
            pass
        for given in (True, False):
            for label, options in (("none", {"capture_env": False, "capture_source": False}),
                                   ("defaults", {})):
                times = []
                for i in range(50):
                    run_id = f"{label}-{i}-{os.getpid()}" if given else None
                    started = time.perf_counter()
                    async with tracker.start_run(run_id, **options):  # type: ignore[arg-type]
                        times.append((time.perf_counter() - started) * 1000)
                prefix = "" if given else "generated_"
                out[f"{prefix}{label}_median_ms"] = round(statistics.median(times), 2)
    out["target"] = "defaults within a few ms of none"
    out["met"] = (out["defaults_median_ms"] - out["none_median_ms"] <= 3
                  and out["generated_defaults_median_ms"] - out["generated_none_median_ms"] <= 3)
    return out


def _one(name: str, url: str) -> dict[str, Any]:
    runner = {"files": _files, "upload": _upload, "tail": _tail, "start": _start}[name]
    return anyio.run(runner, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", choices=BENCHES)
    parser.add_argument("--db", help="a postgresql:// URL (default: a fresh SQLite file)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url = (schema_url(args.db, f"content_{args.which}") if args.db
               else os.path.join(tempfile.mkdtemp(), "runs.db"))
        print(json.dumps(_one(args.which, url)))
        return
    print(json.dumps({"machine": machine()}))
    for name in [args.which] if args.which else BENCHES:
        command = [sys.executable, "-m", "bench.content", name, "--child"]
        if args.db:
            command += ["--db", args.db]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
