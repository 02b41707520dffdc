"""Where Kittiwake's W1 ingest time goes: run the W1 loop many times under py-spy.

    bench/.peers/venv/bin/py-spy record --rate 1000 --idle --native --threads \\
        --format raw -o w1.txt -- .venv/bin/python bench/compare/profile_kittiwake.py 20
    .venv/bin/python bench/compare/profile_kittiwake.py --summarize w1.txt

The first command ingests the W1 data (10 metrics x 20,000 steps, flushed) into ``N`` runs of
one tracker, with the 20,000 dicts built once before; the second prints how each thread spent
its time and the functions with the largest share of the samples.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
from _common import EXPERIMENT, POINTS, PROJECT, RUN_NAME, W1_CONFIG, w1_rows

import engine


async def _ingest(path: Path, rows: list[dict[str, float]], times: int) -> None:
    # One tracker for every run, so that opening the database weighs little in the profile.
    tracker = engine.connect(str(path), project=PROJECT)
    async with tracker:
        for attempt in range(times):
            async with tracker.start_run(run_id=f"{RUN_NAME}-{attempt}", experiment=EXPERIMENT,
                                         config=W1_CONFIG) as run:
                start = time.perf_counter()
                for step, row in enumerate(rows):
                    run.log_metrics(row, step=step)
                logged = time.perf_counter()
                await run.flush()
                done = time.perf_counter()
            print(f"run {attempt + 1}: log_metrics loop {(logged - start) * 1000:.1f} ms, "
                  f"flush {(done - logged) * 1000:.1f} ms, "
                  f"{POINTS / (done - start):,.0f} points/s", flush=True)


def ingest(times: int) -> None:
    """Run W1 ``times`` times and print the split between logging and flushing."""
    rows = w1_rows()
    with tempfile.TemporaryDirectory(prefix="kittiwake-profile-") as scratch:
        anyio.run(_ingest, Path(scratch) / "profile.db", rows, times)


# Deterministic timings: wrap the engine's coarse steps (a handful of calls per flush, so the
# wrappers cost nothing measurable) and add up their wall time inside the timed region only.
_TOTALS: dict[str, float] = {}
_ACTIVE = [False]


def _add(label: str, seconds: float) -> None:
    if _ACTIVE[0]:
        _TOTALS[label] = _TOTALS.get(label, 0.0) + seconds


def _wrap_async(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            _add(label, time.perf_counter() - start)

    setattr(owner, name, timed)


def _wrap_sync(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _add(label, time.perf_counter() - start)

    setattr(owner, name, timed)


def _wrap_sqlite_calls() -> None:
    """Time every call aiosqlite sends to its thread: the SQLite work itself, and the round
    trip around it (queueing, thread switch, waking the event loop)."""
    import aiosqlite

    original = aiosqlite.Connection._execute

    async def timed(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sql = args[0] if args and isinstance(args[0], str) else ""
        label = f"{getattr(fn, '__name__', 'call')} {' '.join(sql.split()[:3])}".strip()
        inside = [0.0]

        def work(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                inside[0] = time.perf_counter() - start

        start = time.perf_counter()
        try:
            return await original(self, work, *args, **kwargs)  # type: ignore[no-untyped-call]
        finally:
            _add(f"sqlite work: {label}", inside[0])
            _add("sqlite round trips (queue, thread switch, wake-up)",
                 time.perf_counter() - start - inside[0])

    aiosqlite.Connection._execute = timed  # type: ignore[method-assign]


# The timed steps, in the order they nest; the names are what the report shows.
_STEPS: tuple[tuple[str, str], ...] = (
    ("cycle", "writer cycle: everything the writer does for the flush"),
    ("arrays", "  building the event's columns (metrics_event: lists to array.array)"),
    ("transaction", "  store transaction (BEGIN … COMMIT)"),
    ("apply", "    projector.apply: summaries and series chunks in memory"),
    ("encode", "    encoding the event payload (codec)"),
    ("save", "    projector.save: writing the projections"),
)


def timings(times: int) -> dict[str, Any]:
    """Run W1 ``times`` times with the engine's steps timed; returns (and prints) the average
    milliseconds per run of each step."""
    from engine._projections import projector as _projector
    from engine._runtime import buffer as _buffer
    from engine._runtime import writer as _writer
    from engine._storage import commit as _commit
    from engine._storage.sqlite import commit as _sqlite_commit

    _wrap_async(_writer.Writer, "cycle", "cycle")
    _wrap_sync(_buffer, "metrics_event", "arrays")
    _wrap_async(_sqlite_commit.Committer, "transaction", "transaction")
    _wrap_async(_projector.Projector, "apply", "apply")
    _wrap_async(_projector.Projector, "save", "save")
    _wrap_sync(_commit, "encode", "encode")
    _wrap_sqlite_calls()
    rows = w1_rows()
    loops: list[float] = []
    flushes: list[float] = []

    async def go(path: Path) -> None:
        tracker = engine.connect(str(path), project=PROJECT)
        async with tracker:
            for attempt in range(times):
                async with tracker.start_run(run_id=f"{RUN_NAME}-{attempt}",
                                             experiment=EXPERIMENT, config=W1_CONFIG) as run:
                    _ACTIVE[0] = True
                    start = time.perf_counter()
                    for step, row in enumerate(rows):
                        run.log_metrics(row, step=step)
                    logged = time.perf_counter()
                    await run.flush()
                    done = time.perf_counter()
                    _ACTIVE[0] = False
                loops.append(logged - start)
                flushes.append(done - logged)

    with tempfile.TemporaryDirectory(prefix="kittiwake-profile-") as scratch:
        anyio.run(go, Path(scratch) / "timings.db")
    loop, flush = sum(loops) / times, sum(flushes) / times
    per_run = {key: round(seconds / times * 1000, 2) for key, seconds in _TOTALS.items()}
    steps = [["log_metrics loop (checking and buffering 20,000 calls)", round(loop * 1000, 2)],
             ["await run.flush()", round(flush * 1000, 2)]]
    steps += [[f"  {label}", per_run.get(key, 0.0)] for key, label in _STEPS]
    steps.append(["  of which SQLite statements (their own work; INSERT OR REPLACE runs "
                  "inside projector.save):", None])
    sqlite = sorted(((k, v) for k, v in per_run.items() if k.startswith("sqlite")),
                    key=lambda item: -item[1])
    steps += [[f"      {label.removeprefix('sqlite work: ')}", value] for label, value in sqlite
              if value >= 0.1]
    found = {"runs": times, "points_per_second": round(POINTS / (loop + flush)),
             "total_ms": round((loop + flush) * 1000, 2), "steps": steps}
    print(f"average of {times} runs in one tracker: {found['points_per_second']:,} points/s")
    for label, value in steps:
        print(f"{value:8.1f} ms  {label}" if value is not None else f"{'':11s}{label}")
    return found


def _frame(frame: str) -> str:
    # py-spy frames look like "function (path/to/file.py:123)"; drop the line number.
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1] if where else ""
    return f"{name} ({file})" if file else name


def _bucket(frames: list[str]) -> str:
    """What a sample of the main thread or of aiosqlite's thread was doing."""
    names = " ".join(frames)
    leaf = frames[-1]
    if "_connection_worker_thread" in names:
        if "core.py:59" in names:  # waiting on its queue for work
            return "sqlite thread: idle"
        for call in ("fdatasync", "fsync", "pwrite", "pread"):
            if leaf.startswith(call):
                return f"sqlite thread: {call}"
        return "sqlite thread: SQLite (other)"
    if "Run.log_metrics" in names:
        return "main: log_metrics (buffering)"
    if "EpollSelector.select" in names:
        return "main: event loop waits (for the sqlite thread)"
    for marker, label in (("Projector", "main: projector (summaries, chunks)"),
                          ("_codec", "main: codec (encoding payloads)"),
                          ("metrics_event", "main: writer (building arrays)"),
                          ("_series", "main: series chunking"),
                          ("Writer", "main: writer (other)"),
                          ("SqliteStore", "main: store (other)"),
                          ("_ingest", "main: benchmark loop")):
        if marker in names:
            return label
    return "main: other (imports, setup, event loop)"


def summarize(raw: Path, top: int = 25) -> None:
    """Print a py-spy ``--format raw --threads --idle --native`` profile: where each thread
    spent its samples, then the heaviest functions by own time and including callees."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        if not frames:
            continue
        buckets[_bucket(frames)] += count
        if any(f.startswith("_connection_worker_thread") and "core.py:59" in f
               for f in frames):
            continue  # an idle thread is not where time goes
        names = [_frame(f) for f in frames]
        total += count
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    threads: Counter[str] = Counter()
    for name, count in buckets.items():
        threads[name.split(":")[0]] += count
    print("-- where each thread's samples went (wall clock, idle included) --")
    for name, count in sorted(buckets.items(), key=lambda item: (item[0].split(":")[0],
                                                                  -item[1])):
        share = 100 * count / threads[name.split(":")[0]]
        print(f"{share:6.1f}%  {name}")
    print(f"\n{total} samples that were not an idle sqlite thread")
    for title, counter in (("own time", own), ("including callees", inclusive)):
        print(f"\n-- {title} --")
        for name, count in counter.most_common(top):
            print(f"{100 * count / total:6.1f}%  {name}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--summarize":
        summarize(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--timings":
        result = timings(int(sys.argv[2]) if len(sys.argv) > 2 else 20)
        print("RESULT " + json.dumps(result))
    else:
        ingest(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
