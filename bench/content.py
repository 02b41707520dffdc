"""What a run records besides metrics, against its targets, each in a fresh process.

    .venv/bin/python -m bench.content                      # every benchmark, SQLite
    .venv/bin/python -m bench.content files --db postgresql://...
                                                           # one of: files, upload, tail, start
    .venv/bin/python -m bench.content upload --gib 2       # a 2 GiB file both ways

``files``: ``log_files`` of 1,000 distinct 10 KiB PNG images (one per step), then ``flush()``:
files per second until durable (``durability="full"``); target >= 2,000/s. ``upload``:
``await run.upload`` of a 1 GiB file on disk (``--gib N``: N GiB), then reading it back
with ``open_file`` and ``download``: MiB/s of each, and how far the process's RSS rose over
where it was at each one's start (its peak, sampled every 5 ms); targets >= 200 MiB/s for
the upload and < 64 MiB each way. ``tail``: ``read_text(tail=100)`` on a run whose captured
output has 1,000,000 lines, the median of 50 reads; target <= 5 ms. ``start``: what
``start_run`` (entering its block, a run id given) costs with every capture at its default
and with none, medians of 50 runs; target: within a few ms of each other.

Prints one JSON object per measurement, with its target and whether it is met.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
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


def _write_file(path: str, gib: int) -> None:
    """``gib`` GiB of distinct MiBs, written before the clock starts."""
    with open(path, "wb") as out:
        block = os.urandom(MiB)
        for i in range(gib * 1024):
            out.write(i.to_bytes(8, "little") + block[8:])


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


class _Peak:
    """The highest RSS while the block runs, read every 5 ms on a thread of its own, as
    growth over the RSS when it began (the end alone would miss a transient peak)."""

    def __enter__(self) -> _Peak:
        self.before = self.peak = _rss_mib()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._started = time.perf_counter()
        return self

    def _watch(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc: object) -> None:
        self.took = time.perf_counter() - self._started
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())

    @property
    def growth(self) -> float:
        return round(self.peak - self.before, 1)


async def _upload(url: str, gib: int) -> dict[str, Any]:
    size = gib * 1024
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "weights.bin")
        await anyio.to_thread.run_sync(_write_file, path, gib)
        async with engine.connect(url, durability="full") as tracker:
            async with tracker.start_run(f"upload-{os.getpid()}", capture_env=False,
                                         capture_source=False) as run:
                await run.upload({"warm": b"up"})  # connections and statements, not timed
                with _Peak() as up:
                    await run.upload({"model/weights": path})
            os.remove(path)
            ref = (await tracker.get_run(f"upload-{os.getpid()}")).files["model/weights"]
            with _Peak() as streamed:
                seen = 0
                async for chunk in tracker.open_file(ref):
                    seen += len(chunk)
            assert seen == ref.size == size * MiB
            with _Peak() as fetched:
                await tracker.download(ref, os.path.join(folder, "copy.bin"))
    rate = size / up.took
    grew = max(up.growth, streamed.growth, fetched.growth)
    return {"bench": f"upload of a {gib} GiB file, then open_file and download of it",
            "upload_mib_per_s": round(rate), "open_file_mib_per_s": round(size / streamed.took),
            "download_mib_per_s": round(size / fetched.took),
            "rss_growth_mib": {"upload": up.growth, "open_file": streamed.growth,
                               "download": fetched.growth},
            "target": ">= 200 MiB/s upload, RSS growth < 64 MiB each way",
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


def _one(name: str, url: str, gib: int) -> dict[str, Any]:
    if name == "upload":
        return anyio.run(_upload, url, gib)
    runner = {"files": _files, "tail": _tail, "start": _start}[name]
    return anyio.run(runner, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", choices=BENCHES)
    parser.add_argument("--db", help="a postgresql:// URL (default: a fresh SQLite file)")
    parser.add_argument("--gib", type=int, default=1, help="the upload's size (default 1 GiB)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url = (schema_url(args.db, f"content_{args.which}") if args.db
               else os.path.join(tempfile.mkdtemp(), "runs.db"))
        print(json.dumps(_one(args.which, url, args.gib)))
        return
    print(json.dumps({"machine": machine()}))
    for name in [args.which] if args.which else BENCHES:
        command = [sys.executable, "-m", "bench.content", name, "--child",
                   "--gib", str(args.gib)]
        if args.db:
            command += ["--db", args.db]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
