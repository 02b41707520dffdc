"""Kittiwake's own benchmarks against its targets (docs/performance.md), each in a fresh
process.

    .venv/bin/python -m bench.engine            # every benchmark, on SQLite
    .venv/bin/python -m bench.engine ingest     # one of: ingest, read, rebuild, memory, create

Prints one JSON object per benchmark. Each benchmark takes ``url(name)``, which gives a
fresh database for a name, so another backend's bench module can run the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import engine

METRICS = [f"train/metric_{i}" for i in range(10)]


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


Url = Callable[[str], str]


async def ingest(url: Url, durability: str = "full", repeats: int = 5) -> dict[str, Any]:
    """10 metrics x 20,000 steps through log_metrics, timed until flushed and queryable: the
    clock stops once a read shows the last point (on SQLite a read first saves the
    projections' rows the commits left to save).

    The rows are built before the clock starts and the loop never awaits, as in the peer
    comparison (bench/compare): everything is written by the final flush.
    """
    rows = [{name: step * 0.001 + i for i, name in enumerate(METRICS)}
            for step in range(20_000)]
    rates = []
    for attempt in range(repeats):
        async with engine.connect(url(f"ingest-{durability}-{attempt}"),
                                  durability=durability) as tracker, \
                tracker.start_run(f"r{attempt}") as run:
            start = time.perf_counter()
            for step, row in enumerate(rows):
                run.log_metrics(row, step=step)
            await run.flush()
            state = await tracker.get_run(f"r{attempt}")
            elapsed = time.perf_counter() - start
            assert state.metrics[METRICS[0]].count == 20_000
        rates.append(200_000 / elapsed)
    return {"benchmark": f"ingest ({durability})", "points": 200_000,
            "points_per_s": statistics.median(rates), "runs": [round(r) for r in rates]}


async def _million(path: str) -> None:
    async with engine.connect(path, durability="normal") as tracker, \
            tracker.start_run("big") as run:
        for step in range(1_000_000):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            if step % 50_000 == 49_999:
                await run.flush()


async def read(url: Url, repeats: int = 15) -> dict[str, Any]:
    """Read back a 1,000,000-point series, whole and downsampled to 1,000 buckets."""
    path = url("read")
    await _million(path)
    async with engine.connect(path) as tracker:
        full, small = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            series = await tracker.read_series("big", "loss")
            full.append(time.perf_counter() - start)
            assert len(series) == 1_000_000
            start = time.perf_counter()
            chart = await tracker.read_series("big", "loss", max_points=4_000)
            small.append(time.perf_counter() - start)
            assert len(chart) <= 4_000
    return {"benchmark": "read 1M-point series", "full_ms": statistics.median(full) * 1e3,
            "downsampled_1000_buckets_ms": statistics.median(small) * 1e3,
            "points": 1_000_000}


async def rebuild(url: Url, repeats: int = 3) -> dict[str, Any]:
    """Rebuild every projection of a log holding 2,000,000 points (10 runs, 2 metrics)."""
    path = url("rebuild")
    async with engine.connect(path, durability="normal") as tracker:
        for r in range(10):
            async with tracker.start_run(f"r{r}") as run:
                for step in range(100_000):
                    run.log_metrics({"loss": 1.0 / (step + 1), "acc": step * 1e-5}, step=step)
                    if step % 50_000 == 49_999:
                        await run.flush()
    times, cleanup = [], []
    async with engine.connect(path, durability="normal") as tracker:
        store = tracker._store
        assert store is not None
        for _ in range(repeats):
            start = time.perf_counter()
            await store.rebuild()
            times.append(time.perf_counter() - start)
            start = time.perf_counter()
            await store.drop_retired()  # what rebuild_projections leaves to a background task
            cleanup.append(time.perf_counter() - start)
    elapsed = statistics.median(times)
    return {"benchmark": "rebuild", "points": 2_000_000, "seconds": elapsed,
            "points_per_s": 2_000_000 / elapsed,
            "cleanup_seconds_after_swap": statistics.median(cleanup)}


async def memory(url: Url) -> dict[str, Any]:
    """Resident memory while 10,000,000 points are logged and flushed."""
    samples = []
    async with engine.connect(url("memory"), durability="normal") as tracker, \
            tracker.start_run("long") as run:
        values = dict.fromkeys(METRICS, 0.0)
        for step in range(1_000_000):
            for name in METRICS:
                values[name] = step * 1e-3
            run.log_metrics(values, step=step)
            if step % 10_000 == 9_999:
                await asyncio.sleep(0)
            if step % 50_000 == 49_999:
                # Every 500,000 points: a million unflushed would meet the pending bound.
                await run.flush()
            if step % 100_000 == 99_999:
                samples.append(round(_rss_mb(), 1))
    return {"benchmark": "memory through 10M points", "rss_mb_every_1M_points": samples,
            "growth_mb_after_first_1M": round(samples[-1] - samples[0], 1)}


async def create(url: Url, durability: str = "full", given_ids: bool = False,
                 runs: int = 1_000) -> dict[str, Any]:
    """1,000 runs created one after another, each with a config and one metric, each ended
    (its block left, so its end is flushed at the tracker's durability)."""
    async with engine.connect(url(f"create-{durability}-{given_ids}"),
                              durability=durability) as tracker:
        start = time.perf_counter()
        for k in range(runs):
            async with tracker.start_run(f"run-{k}" if given_ids else None,
                                         config={"lr": 0.1, "seed": k}) as run:
                run.log_metrics({"loss": 1.0 / (k + 1)}, step=0)
        elapsed = time.perf_counter() - start
        assert len(await tracker.list_runs(limit=runs + 1)) == runs
    return {"benchmark": f"create {runs} runs ({durability}, "
                         f"{'given' if given_ids else 'generated'} ids)",
            "runs": runs, "seconds": elapsed, "ms_per_run": elapsed / runs * 1e3,
            "fsync_ms": _fsync_ms(url("fsync-probe"))}


def _fsync_ms(path: str, times: int = 200) -> float:
    """What one fsync costs on the benchmark's file system right now: the floor of a
    durable commit (durability="full")."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        start = time.perf_counter()
        for _ in range(times):
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        return (time.perf_counter() - start) / times * 1e3
    finally:
        os.close(fd)


BENCHMARKS: dict[str, Callable[..., Coroutine[Any, Any, dict[str, Any]]]] = {
    "ingest": ingest, "read": read, "rebuild": rebuild, "memory": memory, "create": create,
}


def _child(name: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        def url(base: str) -> str:
            return str(Path(directory) / f"{base}.db")

        if name == "ingest":
            results = [asyncio.run(ingest(url, "full")), asyncio.run(ingest(url, "normal"))]
        elif name == "create":
            results = [asyncio.run(create(url, durability, given))
                       for durability in ("full", "normal") for given in (False, True)]
        else:
            results = [asyncio.run(BENCHMARKS[name](url))]
    for result in results:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(result))


def machine() -> str:
    """The machine, as docs/performance.md records it."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, "
            f"SQLite {__import__('sqlite3').sqlite_version}, {platform.system()} "
            f"{platform.release()}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        _child(argv[1])
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m bench.engine",
        description="Kittiwake's own benchmarks against its targets (docs/performance.md), "
                    "each in a fresh process, on SQLite; one JSON object per benchmark.")
    parser.add_argument("names", nargs="*", metavar="BENCHMARK",
                        help=f"which to run: {', '.join(BENCHMARKS)} (default: all)")
    names = parser.parse_args(argv).names or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    print(f"# {machine()}")
    for name in names:
        out = subprocess.run([sys.executable, "-m", "bench.engine", "--child", name],
                             capture_output=True, text=True, check=False)
        sys.stdout.write(out.stdout)
        sys.stdout.flush()
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            sys.stderr.write(f"bench.engine: {name} failed (exit {out.returncode})\n")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
