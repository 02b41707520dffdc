"""Runs-table query benchmark: 100,000 runs with 10 configs and 10 metrics each.

    .venv/bin/python -m bench.query [--runs 100000] [--db PATH] [--repeat 30]

The targets, each at most 100 ms on a 2-core machine: a filter on a metric and a config joined
by OR, sorted by a metric, top 10 — which the top-k walk answers — and the same shape with a
selective OR, which the walk cannot answer (too few of the best runs match), so the full plan
must. Each query's line says which plan answered it. The figures go into ``docs/queries.md``;
the exit status is 1 when a target is missed.

Populating 100,000 runs through ``start_run`` one by one would take most of the benchmark's
time, so the runs are written through the store's group-commit append in batches of 1,000
runs (a ``RunCreated`` and a ``MetricsLogged`` event each): the same projections, the same
tables, the same indexes as runs logged through the API. With ``--db PATH`` the database is
kept and reused by the next run with the same ``--runs``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import engine
from engine._core import events as ev
from engine._core.events import NewEvent
from engine._query.execute import top_keys
from engine._query.parser import selection
from engine._query.sql import SQLITE, Compiled
from engine._storage.contract import AppendRequest

BATCH = 1000
POINTS = 3  # points per metric: last, min and max differ
METRICS = ("train/loss", "val/loss", "train/acc", "val/acc", "lr", "grad_norm", "throughput",
           "epoch_time", "val/f1", "val/auc")
TARGET_MS = 100.0

# The queries of the targets, and a few neighbours for context.
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("target: metric OR config, sorted by a metric, top 10",
     {"where": "metrics.val/loss.min < 0.2 or config.optimizer = 'adam'",
      "order_by": "-metrics.val/acc", "limit": 10}),
    ("target: selective metric OR config (the full plan), sorted by a metric, top 10",
     {"where": "metrics.val/auc > 0.9995 or config.seed < 20000",
      "order_by": "-metrics.val/acc", "limit": 10}),
    ("metric AND config, sorted by a metric, top 10",
     {"where": "metrics.val/loss.min < 0.2 and config.optimizer = 'adam'",
      "order_by": "-metrics.val/acc", "limit": 10}),
    ("no filter, sorted by a metric aggregate, top 10",
     {"order_by": "metrics.train/loss.min", "limit": 10}),
    ("three-way OR with a tag, sorted by a config, top 10",
     {"where": "config.`optimizer/lr` < 0.0002 or tags contains 'baseline' or "
               "metrics.grad_norm.max > 9.9", "order_by": "-config.batch_size", "limit": 10}),
    ("selective filter, every match (no limit)",
     {"where": "metrics.val/auc > 0.999 and config.layers in (2, 4)"}),
]


def _run_events(i: int, rng: random.Random, now: float) -> list[NewEvent]:
    config = {
        "optimizer": rng.choice(("adam", "sgd", "rmsprop", "adagrad")),
        "optimizer/lr": 10 ** rng.uniform(-5, -1),
        "batch_size": rng.choice((16, 32, 64, 128, 256, 512)),
        "seed": rng.randrange(2**31),
        "dropout": round(rng.random() * 0.5, 3),
        "layers": rng.randrange(1, 13),
        "activation": rng.choice(("relu", "gelu", "silu", "tanh")),
        "warmup": rng.randrange(0, 5000, 100),
        "weight_decay": rng.choice((0.0, 1e-5, 1e-4, 1e-3)),
        "scheduler": rng.choice(("cosine", "linear", "constant")),
    }
    tags = ["baseline"] if rng.random() < 0.05 else []
    created = {"name": f"run-{i}", "experiment": f"exp-{i % 500}", "tags": tags,
               "config": config, "fork": None}
    metrics = {}
    for name in METRICS:
        scale = 10.0 if name == "grad_norm" else 1.0
        values = [rng.random() * scale for _ in range(POINTS)]
        metrics[name] = {"steps": list(range(POINTS)), "values": values,
                         "timestamps": [now] * POINTS}
    return [NewEvent(ev.RUN_CREATED, created), NewEvent(ev.METRICS_LOGGED, {"metrics": metrics})]


async def populate(tracker: engine.Tracker, runs: int) -> float:
    """Write ``runs`` runs in batches through the store; returns the seconds it took."""
    store = tracker._store
    assert store is not None
    rng = random.Random(4)
    started = time.perf_counter()
    for first in range(0, runs, BATCH):
        now = time.time()
        requests = [AppendRequest(tracker.project, f"r{i:06d}", _run_events(i, rng, now))
                    for i in range(first, min(runs, first + BATCH))]
        for outcome in await store.append(requests, now=now):
            if isinstance(outcome, BaseException):
                raise outcome
        done = min(runs, first + BATCH)
        if done % 20_000 == 0 or done == runs:
            print(f"  populated {done:,} runs ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    return time.perf_counter() - started


async def plan_of(path: str, query: dict[str, Any]) -> str:
    """Which plan answers ``query``: the top-k walk when it proves its answer, else the full
    plan (asked of the database directly, outside the timings)."""
    chosen = selection(query.get("where"), query.get("order_by"), query.get("limit"),
                       query.get("offset", 0), False)
    db = sqlite3.connect(path)

    async def fetch(statement: Compiled) -> list[Any]:
        return db.execute(statement.sql, statement.params).fetchall()

    try:
        walked = await top_keys(fetch, SQLITE, "default", chosen, False)
    finally:
        db.close()
    return "full plan" if walked is None else "top-k walk"


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[list[float], Any]:
    result = await call()  # warm the page cache and the statement cache
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = await call()
        times.append((time.perf_counter() - started) * 1000)
    return times, result


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


async def main(runs: int, db: str | None, repeat: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = db or os.path.join(tmp, "query.db")
        print(f"machine: {os.cpu_count()} cores, {_cpu()}, Python {platform.python_version()}, "
              f"SQLite {__import__('sqlite3').sqlite_version}")
        async with engine.connect(path, durability="normal") as tracker:
            have = len(await tracker.list_runs(limit=1, offset=runs - 1)) if runs else 0
            if have and len(await tracker.list_runs(limit=1, offset=runs)) == 0:
                print(f"reusing {path} ({runs:,} runs)")
            else:
                print(f"populating {runs:,} runs, 10 configs and {len(METRICS)} "
                      f"metrics each, through the store's batch append ({BATCH:,} runs per "
                      "call)...")
                seconds = await populate(tracker, runs)
                print(f"populated in {seconds:.1f} s")
            failed = False
            for label, query in QUERIES:
                times, result = await timed(lambda q=query: tracker.list_runs(**q), repeat)
                median = statistics.median(times)
                line = (f"{label}: median {median:.1f} ms, p95 {_p95(times):.1f} ms, "
                        f"min {min(times):.1f} ms ({len(result):,} runs; "
                        f"{await plan_of(path, query)})")
                if label.startswith("target"):
                    verdict = "met" if median <= TARGET_MS else "MISSED"
                    line += f" -- target {TARGET_MS:.0f} ms {verdict}"
                    failed = failed or median > TARGET_MS
                print(line, flush=True)
            times, groups = await timed(lambda: tracker.group_runs(
                "config.optimizer", aggregates="metrics.val/acc.max, metrics.val/loss.min"),
                max(3, repeat // 5))
            print(f"group_runs by config.optimizer, 2 aggregates: median "
                  f"{statistics.median(times):.1f} ms ({len(groups)} groups)")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--db", help="keep the database here and reuse it next time")
    parser.add_argument("--repeat", type=int, default=30, help="timed repetitions per query")
    args = parser.parse_args()
    raise SystemExit(anyio.run(main, args.runs, args.db, args.repeat))
