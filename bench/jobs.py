"""The job queue's wake-up: enqueue → the job's process started, with an idle worker.

    .venv/bin/python -m bench.jobs              # SQLite, PostgreSQL and a server
    .venv/bin/python -m bench.jobs sqlite       # some of: sqlite, postgres, server

A ``kittiwake worker`` runs in a process of its own; this process enqueues one job at a time
after a random pause (the worker is idle, waiting on the log's live stream), and each job
(``sh -c 'date +%s.%N > FILE'``) writes the time it started. The latency is that time minus
the time just before ``enqueue`` was called: it covers the append, the wake-up of the other
process (LISTEN/NOTIFY on PostgreSQL, the watch of the log's head on SQLite, the server's
event stream for ``server``), the claim, and the fork and exec of the job. ``server`` is
``kittiwake serve --auth`` on a SQLite file, in a process of its own; the worker and this
process reach it over HTTP with a write token. Target: p99 ≤ 1 s. Prints one JSON object
per backend.
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
from bench.remote import free_port, start_server

_CLI = "import sys; from engine._cli.main import main; sys.exit(main(sys.argv[1:]))"
SAMPLES = 200


async def _measure(url: str, directory: Path, samples: int,
                   token: str | None = None) -> list[float]:
    latencies = []
    env = {**os.environ, **({"KITTIWAKE_TOKEN": token} if token else {})}
    async with engine.connect(url, durability="normal", token=token) as tracker:
        worker = await anyio.open_process(
            [sys.executable, "-c", _CLI, "--db", url, "worker"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env=env)
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


def _served(directory: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """``kittiwake serve --auth`` on a fresh SQLite file, and a write token for it."""
    db = str(directory / "served.db")
    with engine.sync.connect(db):
        pass  # the database exists before its first token
    created = subprocess.run(
        [sys.executable, "-c", _CLI, "--db", db, "tokens", "create", "--project", "default",
         "--role", "write"], capture_output=True, text=True, check=True)
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    return start_server(db, port, auth=True), f"http://127.0.0.1:{port}", token


def main(argv: list[str]) -> None:
    backends = argv or ["sqlite", "postgres", "server"]
    print(f"# {machine()}")
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            if backend == "server":
                served, url, token = _served(directory)
                try:
                    latencies = anyio.run(_measure, url, directory, SAMPLES, token)
                finally:
                    served.terminate()
                    served.wait(30)
            else:
                url = str(directory / "jobs.db") if backend == "sqlite" else \
                    schema_url(DEFAULT_URL, "jobs")
                latencies = anyio.run(_measure, url, directory, SAMPLES)
        print(json.dumps(_report(backend, latencies)), flush=True)


if __name__ == "__main__":
    os.environ.pop("KITTIWAKE_RUN_ID", None)
    main(sys.argv[1:])
