"""A day of load, compressed: a server with 100 writing clients and 100 live subscribers.

    .venv/bin/python -m bench.soak                   # 10 minutes (stops by itself)
    .venv/bin/python -m bench.soak --seconds 120     # shorter

``kittiwake serve`` runs in a process of its own on a SQLite file (or on PostgreSQL when
``KITTIWAKE_BENCH_POSTGRES`` names a server). 100 remote trackers, in a second process, each
log a point a second into a run of their own — its value the time it was logged — for the
whole duration, then flush. 100 clients in this process follow the project's live stream
(server-sent events) from before the first point. At the end every subscriber must have
read exactly the points that were written (no loss, no duplicate), and nothing may have
raised. Every 5 s the resident memory of the server, of the writers' process and of the
subscribers' process is sampled; latency (log -> subscriber) is kept per 30 s window.

Prints one JSON object, and draws RSS and p99 latency over time into an SVG
(``--plot``, by default docs/soak.svg). Figures in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import psutil

from bench.remote import server

SUBSCRIBERS = 100
WRITERS = 100
WINDOW = 30.0
# Latencies are counted in log-spaced buckets 1% wide (0.01 ms to 1,000 s), in one array
# made at the start: the harness's own memory stays the same however long the soak runs,
# so the subscribers' RSS shows the clients alone.
_LOW_MS = 0.01
_RATIO = 1.01
BUCKETS = math.ceil(math.log(1e8) / math.log(_RATIO)) + 1


def _bucket(ms: float) -> int:
    if ms <= _LOW_MS:
        return 0
    return min(BUCKETS - 1, int(math.log(ms / _LOW_MS) / math.log(_RATIO)) + 1)


def _upper_ms(bucket: int) -> float:
    """The upper edge of a bucket: a quantile read from the counts errs by at most 1%."""
    return _LOW_MS * _RATIO ** bucket

WRITER_PROCESS = """
import asyncio, json, sys, time
import engine

async def one(url, index, until, errors):
    written = 0
    try:
        async with engine.connect(url, project="soak", durability="normal") as tracker, \\
                tracker.start_run(f"w{index}") as run:
            step = 0
            while time.monotonic() < until:
                run.log_metrics({"t": time.time()}, step=step)
                step += 1
                written += 1
                await asyncio.sleep(1.0)
            await run.flush()
    except Exception as exc:
        errors.append(f"writer {index}: {type(exc).__name__}: {exc}")
    return written

async def main(url, count, seconds):
    until = time.monotonic() + seconds
    errors = []
    written = await asyncio.gather(*(one(url, i, until, errors) for i in range(count)))
    print(json.dumps({"written": sum(written), "errors": errors}), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


class Subscriber:
    """One client following the live stream: the points it read, per run and step."""

    def __init__(self) -> None:
        self.points = 0
        self.last: dict[str, int] = {}  # each run's last step read (its steps only grow)
        self.duplicates = 0
        self.ready = asyncio.Event()
        self.error: str | None = None

    async def follow(self, url: str, latencies: np.ndarray, began: float) -> None:
        try:
            async with httpx.AsyncClient(base_url=url, timeout=None) as client, \
                    client.stream("GET", "/api/v1/projects/soak/events",
                                  params={"from": "live", "types": "MetricsLogged"}) as answer:
                async for line in answer.aiter_lines():
                    if line.startswith("retry:"):
                        self.ready.set()
                    if not line.startswith("data: "):
                        continue
                    now = time.time()
                    event = orjson.loads(line[6:])
                    column = event["data"]["metrics"]["t"]
                    window = min(len(latencies) - 1, int((time.monotonic() - began) // WINDOW))
                    counts = latencies[window]
                    run = event["run_id"]
                    for step, value in zip(column["steps"], column["values"], strict=True):
                        if int(step) <= self.last.get(run, -1):
                            self.duplicates += 1  # or out of order: either breaks the promise
                        self.last[run] = int(step)
                        self.points += 1
                        counts[_bucket((now - value) * 1000)] += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.ready.set()


def _quantile(counts: np.ndarray, q: float) -> float | None:
    """The ``q`` quantile (ms) of the latencies counted in ``counts``."""
    total = int(counts.sum())
    if not total:
        return None
    rank = min(total - 1, int(total * q))
    return round(_upper_ms(int(np.searchsorted(np.cumsum(counts), rank, side="right"))), 1)


def _database_mib(tmp: Path) -> float:
    """The SQLite database as the soak left it, its WAL included: the most the server's page
    caches could have come to hold."""
    return sum(p.stat().st_size for p in tmp.glob("soak.db*")) / 2**20


async def soak(seconds: float, tmp: Path) -> dict[str, Any]:
    base = os.environ.get("KITTIWAKE_BENCH_POSTGRES")
    if base:
        from bench.postgres import schema_url

        db = schema_url(base, "soak")
    else:
        db = str(tmp / "soak.db")
    began = time.monotonic()
    # One row per window, and one for anything later (the last points' way to everyone).
    latencies = np.zeros((int(seconds // WINDOW) + 2, BUCKETS), dtype=np.int64)
    rss: list[dict[str, float]] = []
    with server(db) as (url, server_process):
        subscribers = [Subscriber() for _ in range(SUBSCRIBERS)]
        tasks = [asyncio.create_task(s.follow(url, latencies, began)) for s in subscribers]
        await asyncio.gather(*(s.ready.wait() for s in subscribers))
        writers = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER_PROCESS, url, str(WRITERS), str(seconds),
            stdout=asyncio.subprocess.PIPE)
        writer_process = psutil.Process(writers.pid)
        me = psutil.Process()

        async def sample() -> None:
            while writers.returncode is None:
                try:
                    rss.append({"at": round(time.monotonic() - began, 1),
                                "server": server_process.memory_info().rss / 2**20,
                                "writers": writer_process.memory_info().rss / 2**20,
                                "subscribers": me.memory_info().rss / 2**20})
                except psutil.NoSuchProcess:
                    return
                await asyncio.sleep(5.0)

        sampler = asyncio.create_task(sample())
        out, _ = await writers.communicate()
        await sampler
        report = json.loads(out.decode().strip().splitlines()[-1])
        written = int(report["written"])
        for _ in range(300):  # up to a minute for the last points to reach every subscriber
            if all(s.points >= written or s.error is not None for s in subscribers):
                break
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        size = None if base else _database_mib(tmp)
    errors = [*report["errors"], *(f"subscriber: {s.error}" for s in subscribers if s.error)]
    read = [s.points for s in subscribers]
    everything = latencies.sum(axis=0)
    windows = [{"from_s": k * WINDOW, "p99_ms": _quantile(row, 0.99), "points": int(row.sum())}
               for k, row in enumerate(latencies) if row.any()]
    third = max(1, len(rss) // 3)

    def mean(key: str, part: list[dict[str, float]]) -> float:
        return sum(r[key] for r in part) / len(part)

    flat = {key: round(mean(key, rss[-third:]) / mean(key, rss[third:2 * third]), 3)
            for key in ("server", "writers", "subscribers")} if len(rss) >= 3 else {}
    return {
        "benchmark": f"soak: {WRITERS} writers, {SUBSCRIBERS} live subscribers, "
                     f"{seconds:.0f} s, {'PostgreSQL' if base else 'SQLite'}",
        "points_written": written,
        "points_read_by_every_subscriber": min(read) == max(read) == written,
        "read_min": min(read), "read_max": max(read),
        "duplicates": sum(s.duplicates for s in subscribers),
        "p50_ms": _quantile(everything, 0.5),
        "p99_ms": _quantile(everything, 0.99),
        "errors": errors,
        "database_mib": None if size is None else round(size, 1),
        "rss_last_third_over_middle_third": flat,
        "rss_mb": [{k: round(v, 1) for k, v in r.items()} for r in rss],
        "p99_by_window": windows,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """RSS (MiB) of each process and p99 latency (ms) per window, over time: an SVG."""
    width, height, pad = 720, 300, 50
    rss = result["rss_mb"]
    windows = result["p99_by_window"]
    span = max([r["at"] for r in rss] + [w["from_s"] + WINDOW for w in windows] + [1.0])
    top_mb = max([max(r["server"], r["writers"], r["subscribers"]) for r in rss] + [1.0])
    top_ms = max([w["p99_ms"] for w in windows] + [1.0])

    def x(t: float) -> float:
        return pad + (width - 2 * pad) * t / span

    def y(v: float, top: float) -> float:
        return height - pad - (height - 2 * pad) * v / (top * 1.1)

    def line(points: list[tuple[float, float]], colour: str, dash: str = "") -> str:
        path_d = " ".join(f"{'M' if i == 0 else 'L'}{a:.1f},{b:.1f}"
                          for i, (a, b) in enumerate(points))
        return (f'<path d="{path_d}" fill="none" stroke="{colour}" stroke-width="2"'
                f'{f" stroke-dasharray={chr(34)}{dash}{chr(34)}" if dash else ""}/>')

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
             'stroke="#888"/>',
             f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">seconds '
             f'(0-{span:.0f})</text>',
             f'<text x="10" y="20">RSS, MiB (max {top_mb:.0f}) — solid; p99 latency, ms '
             f'(max {top_ms:.0f}) — dashed</text>']
    for key, colour in (("server", "#1f77b4"), ("writers", "#2ca02c"),
                        ("subscribers", "#ff7f0e")):
        parts.append(line([(x(r["at"]), y(r[key], top_mb)) for r in rss], colour))
        last = rss[-1] if rss else {"at": 0, key: 0}
        parts.append(f'<text x="{x(last["at"]) - 4}" y="{y(last[key], top_mb) - 6}" '
                     f'text-anchor="end" fill="{colour}">{key}</text>')
    parts.append(line([(x(w["from_s"] + WINDOW / 2), y(w["p99_ms"], top_ms))
                       for w in windows], "#d62728", "6,4"))
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--plot", default="docs/soak.svg")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kw-soak-") as tmp:
        result = asyncio.run(soak(args.seconds, Path(tmp)))
    plot(result, Path(args.plot))
    print(json.dumps(result), flush=True)
    ok = (result["points_read_by_every_subscriber"] and not result["errors"]
          and result["duplicates"] == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
