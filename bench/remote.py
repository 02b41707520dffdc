"""The server and the remote tracker, side by side with the embedded engine, in one run.

    .venv/bin/python -m bench.remote              # every measurement
    .venv/bin/python -m bench.remote ingest       # or subscribers, subscribers-httpx, writers

- ingest: 10 metrics x 20,000 steps through ``log_metrics``, timed to a confirmed flush —
  embedded (SQLite file) and remote (``kittiwake serve`` on the same kind of file, in a
  process of its own, over loopback, through the client's spool). Target: remote
  >= 1,000,000 points/s and >= 0.4x embedded.
- subscribers: 100 clients following the project's live stream (server-sent events) while a
  writer logs a point every 10 ms; latency from ``log_metrics`` (the point's value is the time
  it was logged) to each client holding it. Target: p99 <= 100 ms. The clients are lean
  readers of the stream on asyncio connections, in this process; ``subscribers-httpx`` is the
  same with httpx clients, whose own parsing dominates what they measure.
- writers: 100 remote trackers logging at once into one server; the server's resident
  memory sampled every second through a warm-up — until every writer has filled its first
  chunk of 4,096 steps, the most of each series the server keeps open in memory — and 60 s
  after it. Target: flat after the warm-up (the last third no higher than the first third
  by more than 10%).

Prints one JSON object per measurement.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

import engine
from engine._core.series import CHUNK

METRICS = [f"train/metric_{i}" for i in range(10)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(db: str, port: int, *, auth: bool = False) -> subprocess.Popen[bytes]:
    """``kittiwake serve`` on ``db`` at ``port`` (with ``--auth``: tokens required), in a
    process of its own, once it answers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine._cli.main", "--db", db, "serve", "--port", str(port),
         *(["--auth"] if auth else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
            return process
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the server did not start") from None
            time.sleep(0.05)


@contextmanager
def server(db: str) -> Iterator[tuple[str, psutil.Process]]:
    """``kittiwake serve`` on ``db`` in a process of its own."""
    port = free_port()
    process = start_server(db, port)
    try:
        yield f"http://127.0.0.1:{port}", psutil.Process(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


async def _ingest_once(url: str, run_id: str, rows: list[dict[str, float]],
                       **options: Any) -> float:
    async with engine.connect(url, durability="full", **options) as tracker, \
            tracker.start_run(run_id) as run:
        start = time.perf_counter()
        for step, row in enumerate(rows):
            run.log_metrics(row, step=step)
        await run.flush()
        elapsed = time.perf_counter() - start
        state = await tracker.get_run(run_id)
        assert state.metrics[METRICS[0]].count == 20_000
    return 200_000 / elapsed


async def ingest(tmp: Path, repeats: int = 5) -> dict[str, Any]:
    rows = [{name: step * 0.001 + i for i, name in enumerate(METRICS)}
            for step in range(20_000)]
    embedded, remote = [], []
    with server(str(tmp / "served.db")) as (url, _):
        for attempt in range(repeats):  # interleaved, so both see the same machine
            embedded.append(await _ingest_once(str(tmp / f"embedded-{attempt}.db"),
                                               f"e{attempt}", rows))
            remote.append(await _ingest_once(url, f"r{attempt}", rows,
                                             spool=str(tmp / "spool.sqlite")))
    e, r = statistics.median(embedded), statistics.median(remote)
    return {"benchmark": "ingest, 10 metrics x 20,000 steps, to a confirmed flush",
            "embedded_points_per_s": round(e), "remote_points_per_s": round(r),
            "ratio": round(r / e, 3), "embedded_runs": [round(x) for x in embedded],
            "remote_runs": [round(x) for x in remote],
            "target": "remote >= 1,000,000 points/s and >= 0.4x embedded",
            "target_met": r >= 1_000_000 and r >= 0.4 * e}


async def _follow(url: str, latencies: list[float], ready: asyncio.Event, count: int) -> None:
    """One client of the live stream, as lean as a browser's ``EventSource`` (native code):
    an HTTP/1.1 request on an asyncio connection, the chunked body cut into messages, each
    message's data parsed with orjson. (With httpx's ``aiter_lines`` a hundred clients in one
    process cost that process six times the CPU, and the latency measured is mostly theirs:
    ``subscribers-httpx`` measures that.)"""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/v1/projects/bench/events?from=live&types=MetricsLogged HTTP/1.1\r\n"
                 b"Host: bench\r\nAccept: text/event-stream\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(), head
    seen, pending = 0, b""
    try:
        while seen < count:
            size = int(await reader.readline(), 16)
            body = await reader.readexactly(size + 2)
            now = time.time()
            *messages, pending = (pending + body[:-2]).split(b"\n\n")
            for message in messages:
                if message.startswith(b"retry:"):
                    ready.set()
                at = message.find(b"\ndata: ")
                if at < 0:
                    continue
                for value in orjson.loads(message[at + 7:])["data"]["metrics"]["t"]["values"]:
                    latencies.append((now - value) * 1000)
                    seen += 1
    finally:
        writer.close()


async def _follow_httpx(url: str, latencies: list[float], ready: asyncio.Event,
                        count: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client, \
            client.stream("GET", "/api/v1/projects/bench/events",
                          params={"from": "live", "types": "MetricsLogged"}) as response:
        seen = 0
        async for line in response.aiter_lines():
            if line.startswith("retry:"):
                ready.set()
            if not line.startswith("data: "):
                continue
            now = time.time()
            data = orjson.loads(line[6:])
            for value in data["data"]["metrics"]["t"]["values"]:
                latencies.append((now - value) * 1000)
                seen += 1
            if seen >= count:
                return


WRITER = """
import asyncio, sys, time
import engine

async def main(url, spool, points):
    async with engine.connect(url, project="bench", spool=spool,
                              durability=sys.argv[4]) as tracker, \\
            tracker.start_run("writer") as run:
        for step in range(points):
            run.log_metrics({"t": time.time()}, step=step)
            await asyncio.sleep(0.01)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def subscribers(tmp: Path, clients: int = 100, points: int = 200,
                      durability: str = "full", client: str = "asyncio") -> dict[str, Any]:
    """The writer is a process of its own (as a training job is); the clients share this
    one, so their parsing is charged to the latency they measure."""
    follow = _follow if client == "asyncio" else _follow_httpx
    latencies: list[float] = []
    with server(str(tmp / "subscribers.db")) as (url, process):
        readies = [asyncio.Event() for _ in range(clients)]
        followers = [asyncio.create_task(follow(url, latencies, r, points)) for r in readies]
        await asyncio.gather(*(r.wait() for r in readies))
        await asyncio.sleep(0.5)
        server_cpu, own_cpu = _cpu(process), _cpu(psutil.Process())
        writer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, url, str(tmp / "sub-spool.sqlite"), str(points),
            durability)
        await asyncio.wait_for(asyncio.gather(*followers), 120)
        await writer.wait()
        server_cpu, own_cpu = _cpu(process) - server_cpu, _cpu(psutil.Process()) - own_cpu
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(len(latencies) * 0.99)]
    return {"benchmark": f"log -> remote subscriber, {clients} SSE clients ({client}), "
                         f"writer's durability {durability!r}",
            "samples": len(latencies), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
            "server_cpu_s": round(server_cpu, 2), "clients_cpu_s": round(own_cpu, 2),
            "load_average": os.getloadavg(),
            "target": "p99 <= 100 ms", "target_met": p99 <= 100}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class _Window:
    """When the writers stop (None: not before the warm-up is over), and who is warm."""

    def __init__(self) -> None:
        self.until: float | None = None
        self.warm: set[int] = set()
        self.logged_after_warm = 0

    def open(self) -> bool:
        return self.until is None or time.monotonic() < self.until


async def _writer(url: str, index: int, window: _Window, spool: str) -> int:
    logged = 0
    async with engine.connect(url, project="bench", spool=spool) as tracker, \
            tracker.start_run(f"w{index}") as run:
        step = 0
        while window.open():
            for _ in range(50):
                run.log_metrics({"loss": 1.0 / (step + 1), "acc": step * 1e-6}, step=step)
                step += 1
            logged += 100
            if window.until is not None:
                window.logged_after_warm += 100
            if step > CHUNK:
                window.warm.add(index)
            await asyncio.sleep(0.05)
    return logged


async def writers(tmp: Path, count: int = 100, seconds: float = 60.0) -> dict[str, Any]:
    """On PostgreSQL when ``KITTIWAKE_BENCH_POSTGRES`` names a server (then the server's
    memory is its own alone), else on a SQLite file — whose page cache (64 MB on each of
    the store's two connections) fills as the database grows, and counts in the server's
    memory until it is full.

    The warm-up lasts until every writer has filled its first chunk (``CHUNK`` steps): the
    server keeps each series' open chunk, so its memory grows with the writers' first
    chunks, up to its bound, and not after. Then ``seconds`` are measured."""
    base = os.environ.get("KITTIWAKE_BENCH_POSTGRES")
    if base:
        from bench.postgres import schema_url

        db = schema_url(base, "remote_writers")
    else:
        db = str(tmp / "writers.db")
    window = _Window()
    with server(db) as (url, process):
        warming: list[float] = []
        samples: list[float] = []

        async def sample() -> None:
            started = time.monotonic()
            while len(window.warm) < count:
                warming.append(process.memory_info().rss / 2**20)
                await asyncio.sleep(1.0)
            window.until = time.monotonic() + seconds
            stats["warm_up_s"] = time.monotonic() - started
            while window.open():
                samples.append(process.memory_info().rss / 2**20)
                await asyncio.sleep(1.0)

        stats: dict[str, float] = {}
        sampler = asyncio.create_task(sample())
        logged = await asyncio.gather(*(
            _writer(url, i, window, str(tmp / "writers-spool.sqlite")) for i in range(count)))
        await sampler
    third = max(1, len(samples) // 3)
    first = statistics.mean(samples[:third])
    last = statistics.mean(samples[-third:])
    return {"benchmark": f"{count} concurrent remote writers, {seconds:.0f} s after the "
                         f"warm-up, {'PostgreSQL' if base else 'SQLite'}",
            "points": sum(logged), "points_measured": window.logged_after_warm,
            "warm_up_s": round(stats["warm_up_s"], 1),
            "warm_up_rss_mb": [round(s, 1) for s in warming],
            "server_rss_mb": [round(s, 1) for s in samples],
            "first_third_mb": round(first, 1), "last_third_mb": round(last, 1),
            "max_mb": round(max(samples), 1), "load_average": os.getloadavg(),
            "target": "flat after the warm-up: last third <= first third + 10%",
            "target_met": last <= first * 1.10}


async def subscribers_httpx(tmp: Path) -> dict[str, Any]:
    return await subscribers(tmp, client="httpx")


BENCHMARKS = {"ingest": ingest, "subscribers": subscribers,
              "subscribers-httpx": subscribers_httpx, "writers": writers}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHMARKS)
    print(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(),
                      "python": platform.python_version()}))
    for name in names:
        with tempfile.TemporaryDirectory(prefix="kw-bench-remote-") as tmp:
            os.environ["XDG_CACHE_HOME"] = tmp
            print(json.dumps(asyncio.run(BENCHMARKS[name](Path(tmp)))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
