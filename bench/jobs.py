"""The job queue's wake-up: enqueue → the job's process started, with an idle worker.

    .venv/bin/python -m bench.jobs              # SQLite and PostgreSQL
    .venv/bin/python -m bench.jobs sqlite       # one of: sqlite, postgres

A ``kittiwake worker`` runs in a process of its own; this process enqueues one job at a time
after a random pause (the worker is idle, waiting on the log's live stream), and each job
(``sh -c 'date +%s.%N > FILE'``) writes the time it started. The latency is that time minus
the time just before ``enqueue`` was called: it covers the append, the wake-up of the other
process (LISTEN/NOTIFY on PostgreSQL, the watch of the log's head on SQLite), the claim, and
the fork and exec of the job. Target: p99 ≤ 1 s. Prints one JSON object per backend.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

import engine
from bench.engine import machine
from bench.postgres import DEFAULT_URL, schema_url

_CLI = "import sys; from engine._cli.main import main; sys.exit(main(sys.argv[1:]))"
SAMPLES = 200


async def _measure(url: str, directory: Path, samples: int) -> list[float]:
    latencies = []
    async with engine.connect(url, durability="normal") as tracker:
        worker = await anyio.open_process(
            [sys.executable, "-c", _CLI, "--db", url, "worker"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        async with worker:
            await anyio.sleep(2.0)  # started and subscribed: idle from here on
            for number in range(samples):
                await anyio.sleep(random.uniform(0.05, 0.25))
                mark = directory / f"job-{number}"
                before = time.time()
                await tracker.enqueue(["sh", "-c", f"date +%s.%N > {mark}"])
                latencies.append(float(await _written(anyio.Path(mark))) - before)
            worker.terminate()
            await worker.wait()
    return latencies


async def _written(path: anyio.Path) -> str:
    """The file's text once the job wrote it (the time is in the text: how soon this loop
    notices does not change the figure)."""
    for _ in range(15_000):  # 30 s
        if await path.exists():
            text = (await path.read_text()).strip()
            if text:
                return text
        await anyio.sleep(0.002)
    raise TimeoutError(f"no job wrote {path}")


def _report(backend: str, latencies: list[float]) -> dict[str, object]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"benchmark": "enqueue to job process started, idle worker", "backend": backend,
            "samples": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1),
            "target_p99_ms": 1000, "met": p99 <= 1.0}


def main(argv: list[str]) -> None:
    backends = argv or ["sqlite", "postgres"]
    print(f"# {machine()}")
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            url = str(directory / "jobs.db") if backend == "sqlite" else \
                schema_url(DEFAULT_URL, "jobs")
            latencies = anyio.run(_measure, url, directory, SAMPLES)
        print(json.dumps(_report(backend, latencies)), flush=True)


if __name__ == "__main__":
    os.environ.pop("KITTIWAKE_RUN_ID", None)
    main(sys.argv[1:])
