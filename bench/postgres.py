"""Kittiwake's benchmarks on PostgreSQL, the same code as ``bench.engine`` runs on SQLite.

    .venv/bin/python -m bench.postgres                       # every benchmark
    .venv/bin/python -m bench.postgres ingest latency        # some of: ingest, read,
                                                             # rebuild, latency, idle
    .venv/bin/python -m bench.postgres --url postgresql://user@host/db

Each benchmark runs in a fresh process on fresh schemas (``kwbench_<name>``, dropped first,
and all of them dropped at the end) of the server named by ``--url`` (default:
``KITTIWAKE_TEST_POSTGRES`` or ``postgresql://postgres@127.0.0.1:5432/test``). Prints one JSON
object per measurement, as ``bench.engine`` does: ``ingest`` (points/s, both durabilities),
``read`` (a 1M-point series, whole and downsampled), ``rebuild`` (2M points), ``latency``
(log -> subscriber, p50/p99, with the subscriber in the writer's process and in another one:
``bench.subscribe``'s measurements) and ``idle`` (the head queries per second of a tracker
that follows the log with nothing happening: the doorbell, not polling, wakes it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import engine
from bench.engine import ingest, machine, read, rebuild
from bench.subscribe import latency_across_processes, latency_in_process

DEFAULT_URL = os.environ.get("KITTIWAKE_TEST_POSTGRES",
                             "postgresql://postgres@127.0.0.1:5432/test")
PREFIX = "kwbench_"


def _on_fresh_loop(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine on an event loop of its own thread (callers may be inside a loop)."""
    result: list[Any] = []

    def target() -> None:
        result.append(asyncio.run(make()))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    return result[0] if result else None


def _drop(base_url: str, pattern: str) -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(base_url)
        try:
            names = [r[0] for r in await connection.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", pattern)]
            for name in names:
                await connection.execute(f'DROP SCHEMA "{name}" CASCADE')
        finally:
            await connection.close()

    _on_fresh_loop(drop)


def schema_url(base_url: str, name: str) -> str:
    """A URL on ``base_url``'s database whose tables live in a fresh schema for ``name``
    (the schema of that name is dropped first)."""
    schema = PREFIX + re.sub(r"[^a-z0-9]+", "_", name.lower())
    _drop(base_url, schema)
    parts = urlsplit(base_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("search_path", schema)])))


async def _latency(url: Callable[[str], str]) -> list[dict[str, Any]]:
    return [await latency_in_process(url, 1), await latency_across_processes(url, 1),
            await latency_in_process(url, 100), await latency_across_processes(url, 100)]


async def idle(url: Callable[[str], str], seconds: float = 5.0) -> dict[str, Any]:
    """Head queries per second of a tracker with one subscriber and nothing to see, at the
    default poll interval."""
    async with engine.connect(url("idle")) as tracker:
        store = tracker._store
        assert store is not None
        real = store.head
        calls = [0]

        async def counted() -> int:
            calls[0] += 1
            return await real()

        store.head = counted  # type: ignore[method-assign]
        subscription = tracker.subscribe(from_position="live")
        await subscription.wait_caught_up()
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
    return {"benchmark": "idle tracker following the log", "seconds": round(elapsed, 2),
            "head_queries_per_s": calls[0] / elapsed}


def _child(name: str, base_url: str) -> None:
    def url(label: str) -> str:
        return schema_url(base_url, label)

    if name == "ingest":
        results = [asyncio.run(ingest(url, "full")), asyncio.run(ingest(url, "normal"))]
    elif name == "read":
        results = [asyncio.run(read(url))]
    elif name == "rebuild":
        results = [asyncio.run(rebuild(url))]
    elif name == "idle":
        results = [asyncio.run(idle(url))]
    else:
        results = asyncio.run(_latency(url))
    for result in results:
        result["backend"] = "postgresql"
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(result), flush=True)


def _server(base_url: str) -> str:
    import asyncpg

    async def version() -> str:
        connection = await asyncpg.connect(base_url)
        try:
            return str(await connection.fetchval("SHOW server_version"))
        finally:
            await connection.close()

    return str(_on_fresh_loop(version))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[2])
        return
    parser = argparse.ArgumentParser(prog="bench.postgres")
    parser.add_argument("--url", default=DEFAULT_URL, help="the PostgreSQL server's URL")
    parser.add_argument("names", nargs="*",
                        choices=["ingest", "read", "rebuild", "latency", "idle", []], default=[])
    args = parser.parse_args(argv)
    print(f"# {machine()}, PostgreSQL {_server(args.url)} at {urlsplit(args.url).hostname}")
    try:
        for name in args.names or ["ingest", "read", "rebuild", "latency", "idle"]:
            out = subprocess.run([sys.executable, "-m", "bench.postgres", "--child", name,
                                  args.url], capture_output=True, text=True, check=False)
            sys.stdout.write(out.stdout)
            sys.stdout.flush()
            if out.returncode:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"bench.postgres {name} failed")
    finally:
        _drop(args.url, PREFIX + "%")


if __name__ == "__main__":
    main(sys.argv[1:])
