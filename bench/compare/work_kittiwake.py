"""Kittiwake's side of the comparison (runs in the project's virtual environment).

Workloads: ``w1`` (async API), ``w1-sync`` (blocking facade), ``w2``, ``w3-create``
(runs started 50 at a time), ``w3-create-seq`` (one after another), ``w3-query``, ``w4``,
``w5-remote`` (W1 through ``kittiwake serve``).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from _common import (
    EXPERIMENT,
    POINTS,
    PROJECT,
    READ_METRIC,
    RUN_NAME,
    W1_CONFIG,
    W3_GROUP,
    W3_LR_BELOW,
    W3_M0_ABOVE,
    W3_RUNS,
    W3_STEPS,
    W3_TOP,
    Clock,
    Handler,
    Result,
    free_port,
    main,
    max_rss_mb,
    series_check,
    server,
    version_of,
    w1_rows,
    w3_check,
    w3_config,
    w3_metrics,
    w3_name,
)

import engine

W3_WHERE = f"metrics.m0.last > {W3_M0_ABOVE} and config.lr < {W3_LR_BELOW}"
W3_ORDER = "-metrics.m0.last"


def _db(path: Path) -> str:
    return str(path / "kittiwake.db")


def _base() -> Result:
    return {"version": version_of("kittiwake")}


async def _log_rows(tracker: engine.Tracker, rows: list[dict[str, float]]) -> tuple[Clock, Clock]:
    """W1's run with its rows logged and flushed: the clocks of the whole and of the flush."""
    async with tracker.start_run(run_id=RUN_NAME, experiment=EXPERIMENT,
                                 config=W1_CONFIG) as run:
        with Clock() as total:
            # The loop never awaits: 200,000 points stay under max_pending_points, so the
            # writer does its work inside flush().
            for step, row in enumerate(rows):
                run.log_metrics(row, step=step)
            with Clock() as durable:
                await run.flush()
    return total, durable


async def _w1(path: Path) -> Result:
    rows = w1_rows()
    rss_ready = max_rss_mb()
    with Clock() as setup:
        tracker = engine.connect(_db(path), project=PROJECT)
        await tracker.__aenter__()
    try:
        total, durable = await _log_rows(tracker, rows)
    finally:
        await tracker.aclose()
    return {**_base(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "setup_seconds": setup.seconds, "points": POINTS,
            "rss_ready_mb": rss_ready}


async def _w5_remote(path: Path) -> Result:
    """W1's points through ``kittiwake serve`` (a SQLite file, as the embedded W1 uses) on
    this machine, with the remote tracker's spool, timed to the flush the server confirmed."""
    rows = w1_rows()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "engine._cli.main", "--db", str(path / "served.db"),
               "serve", "--port", str(port)]
    with server(command, url + "/api/v1/health", cwd=path):
        async with engine.connect(url, project=PROJECT,
                                  spool=str(path / "spool.sqlite")) as tracker:
            total, durable = await _log_rows(tracker, rows)
            state = await tracker.get_run(RUN_NAME)
    points = sum(state.metrics[m].count for m in state.metrics)
    return {**_base(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "points": POINTS, "correct": points == POINTS,
            "how": "`kittiwake serve` on SQLite; `engine.connect(url)`, `log_metrics` per step, "
                   "`await run.flush()` (the server committed)"}


def _w1_sync(path: Path) -> Result:
    rows = w1_rows()
    rss_ready = max_rss_mb()
    with Clock() as setup:
        tracker = engine.sync.connect(_db(path), project=PROJECT)
        tracker.__enter__()
    try:
        with tracker.start_run(run_id=RUN_NAME, experiment=EXPERIMENT,
                               config=W1_CONFIG) as run, Clock() as total:
            for step, row in enumerate(rows):
                run.log_metrics(row, step=step)
            with Clock() as durable:
                run.flush()
    finally:
        tracker.close()
    return {**_base(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "setup_seconds": setup.seconds, "points": POINTS,
            "rss_ready_mb": rss_ready}


async def _w2(path: Path) -> Result:
    async with engine.connect(_db(path), project=PROJECT) as tracker:
        with Clock() as read:
            series = await tracker.read_series(RUN_NAME, READ_METRIC)
        ok = series_check(series.steps, series.values)
    return {**_base(), "seconds": read.seconds, "points": len(series), "correct": ok,
            "api": "await tracker.read_series(run_id, metric)"}


async def _one_w3_run(tracker: engine.Tracker, k: int) -> None:
    async with tracker.start_run(run_id=w3_name(k), name=w3_name(k), experiment="w3",
                                 config=w3_config(k)) as run:
        for step in range(W3_STEPS):
            run.log_metrics(w3_metrics(k, step), step=step)


async def _w3_create(path: Path) -> Result:
    async with engine.connect(_db(path), project=PROJECT) as tracker:
        with Clock() as total:
            for first in range(0, W3_RUNS, W3_GROUP):
                async with anyio.create_task_group() as group:
                    for k in range(first, min(first + W3_GROUP, W3_RUNS)):
                        group.start_soon(_one_w3_run, tracker, k)
    return {**_base(), "seconds": total.seconds, "runs": W3_RUNS,
            "how": f"{W3_GROUP} runs at a time in an anyio task group"}


async def _w3_create_seq(path: Path) -> Result:
    async with engine.connect(_db(path), project=PROJECT) as tracker:
        with Clock() as total:
            for k in range(W3_RUNS):
                await _one_w3_run(tracker, k)
    return {**_base(), "seconds": total.seconds, "runs": W3_RUNS, "how": "one run at a time"}


async def _w3_query(path: Path) -> Result:
    async with engine.connect(_db(path), project=PROJECT) as tracker:
        has_where = "where" in inspect.signature(tracker.list_runs).parameters
        with Clock() as query:
            if has_where:
                list_runs: Any = tracker.list_runs
                runs = await list_runs(where=W3_WHERE, order_by=W3_ORDER, limit=W3_TOP)
            else:
                # The query language is not there yet: filter and sort the projection's
                # run states in Python.
                hits = [r for r in await tracker.list_runs()
                        if "m0" in r.metrics and r.metrics["m0"].last > W3_M0_ABOVE
                        and r.config.get("lr", 1.0) < W3_LR_BELOW]
                hits.sort(key=lambda r: r.metrics["m0"].last, reverse=True)
                runs = hits[:W3_TOP]
    names = [r.name for r in runs]
    path_used = (f"list_runs(where={W3_WHERE!r}, order_by={W3_ORDER!r}, limit={W3_TOP})"
                 if has_where else "list_runs() + filter and sort in Python")
    return {**_base(), "seconds": query.seconds, "correct": w3_check(names), "top": names,
            "api": path_used, "query_path": "where" if has_where else "python"}


async def _w4(path: Path) -> Result:
    async with engine.connect(_db(path), project=PROJECT) as tracker:
        with Clock() as rebuild:
            await tracker.rebuild_projections()
        series = await tracker.read_series(RUN_NAME, READ_METRIC)
    return {**_base(), "seconds": rebuild.seconds, "points": POINTS,
            "correct": series_check(series.steps, series.values)}


def _sync(fn: Callable[[Path], Awaitable[Result]]) -> Handler:
    def run(path: Path) -> Result:
        return anyio.run(fn, path)
    return run


if __name__ == "__main__":
    main("kittiwake", {
        "w1": _sync(_w1),
        "w1-sync": _w1_sync,
        "w2": _sync(_w2),
        "w3-create": _sync(_w3_create),
        "w3-create-seq": _sync(_w3_create_seq),
        "w3-query": _sync(_w3_query),
        "w4": _sync(_w4),
        "w5-remote": _sync(_w5_remote),
    })
