"""The raw baselines no tracker can beat (run in the project's virtual environment, with the
same interpreter and orjson as Kittiwake).

- ``sqlite``: the standard library's sqlite3 with its defaults (rollback journal,
  ``synchronous=FULL``), every point inserted by one ``executemany`` in one transaction;
  no index, so nothing is paid for that a reader would need.
- ``orjson``: one orjson line per logged dict appended to a file, one ``fsync`` at the end.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from _common import (
    POINTS,
    READ_METRIC,
    RUN_NAME,
    W3_LR_BELOW,
    W3_M0_ABOVE,
    W3_RUNS,
    W3_STEPS,
    W3_TOP,
    Clock,
    Result,
    main,
    max_rss_mb,
    series_check,
    version_of,
    w1_rows,
    w3_check,
    w3_config,
    w3_metrics,
    w3_name,
)

_POINTS_TABLE = "CREATE TABLE points (run TEXT, metric TEXT, step INTEGER, value REAL, ts REAL)"


def _sqlite_version() -> Result:
    return {"version": f"sqlite {sqlite3.sqlite_version}"}


def _orjson_version() -> Result:
    return {"version": f"orjson {version_of('orjson')}"}


def _w1_points(rows: list[dict[str, float]]) -> Iterator[tuple[str, str, int, float, float]]:
    for step, row in enumerate(rows):
        now = time.time()
        for name, value in row.items():
            yield RUN_NAME, name, step, value, now


def _w1_sqlite(path: Path) -> Result:
    rows = w1_rows()
    rss_ready = max_rss_mb()
    con = sqlite3.connect(path / "baseline.db")
    con.execute(_POINTS_TABLE)
    con.commit()
    with Clock() as total, con:
        con.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?)", _w1_points(rows))
    con.close()
    return {**_sqlite_version(), "seconds": total.seconds, "points": POINTS,
            "rss_ready_mb": rss_ready}


def _w2_sqlite(path: Path) -> Result:
    con = sqlite3.connect(path / "baseline.db")
    with Clock() as read:
        found = con.execute("SELECT step, value FROM points WHERE run = ? AND metric = ? "
                            "ORDER BY step", (RUN_NAME, READ_METRIC)).fetchall()
    con.close()
    steps = [s for s, _ in found]
    values = [v for _, v in found]
    return {**_sqlite_version(), "seconds": read.seconds, "points": len(found),
            "correct": series_check(steps, values),
            "api": "SELECT step, value … ORDER BY step (full scan, no index)"}


def _w1_orjson(path: Path) -> Result:
    rows = w1_rows()
    rss_ready = max_rss_mb()
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with Clock() as total, open(path / "points.jsonl", "ab") as out:
        write = out.write
        for step, row in enumerate(rows):
            write(dumps({"step": step, "ts": time.time(), "metrics": row}, option=newline))
        out.flush()
        os.fsync(out.fileno())
    return {**_orjson_version(), "seconds": total.seconds, "points": POINTS,
            "rss_ready_mb": rss_ready}


def _w2_orjson(path: Path) -> Result:
    with Clock() as read:
        steps: list[int] = []
        values: list[float] = []
        with open(path / "points.jsonl", "rb") as source:
            for line in source:
                record = orjson.loads(line)
                value = record["metrics"].get(READ_METRIC)
                if value is not None:
                    steps.append(record["step"])
                    values.append(value)
    return {**_orjson_version(), "seconds": read.seconds, "points": len(steps),
            "correct": series_check(steps, values), "api": "parse every line, keep one key"}


def _w3_create_sqlite(path: Path) -> Result:
    con = sqlite3.connect(path / "baseline.db")
    con.execute("CREATE TABLE runs (name TEXT PRIMARY KEY, lr REAL, optimizer TEXT, "
                "batch_size INTEGER, layers INTEGER, dropout REAL)")
    con.execute(_POINTS_TABLE)
    con.commit()
    with Clock() as total, con:
        con.executemany("INSERT INTO runs VALUES (:name, :lr, :optimizer, :batch_size, "
                        ":layers, :dropout)",
                        ({"name": w3_name(k), **w3_config(k)} for k in range(W3_RUNS)))
        con.executemany("INSERT INTO points VALUES (?, ?, ?, ?, ?)",
                        ((w3_name(k), name, step, value, time.time())
                         for k in range(W3_RUNS) for step in range(W3_STEPS)
                         for name, value in w3_metrics(k, step).items()))
    con.close()
    return {**_sqlite_version(), "seconds": total.seconds, "runs": W3_RUNS,
            "how": "two executemany in one transaction"}


def _w3_query_sqlite(path: Path) -> Result:
    con = sqlite3.connect(path / "baseline.db")
    # SQLite gives the bare column `value` from the row holding MAX(step).
    query = ("WITH last AS (SELECT run, value, MAX(step) FROM points WHERE metric = 'm0' "
             "GROUP BY run) SELECT last.run FROM last JOIN runs ON runs.name = last.run "
             "WHERE runs.lr < ? AND last.value > ? ORDER BY last.value DESC LIMIT ?")
    with Clock() as read:
        names = [name for (name,) in con.execute(query, (W3_LR_BELOW, W3_M0_ABOVE, W3_TOP))]
    con.close()
    return {**_sqlite_version(), "seconds": read.seconds, "correct": w3_check(names),
            "top": names, "api": "one SQL query over the raw points (no index)"}


def _w3_create_orjson(path: Path) -> Result:
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with Clock() as total, open(path / "runs.jsonl", "ab") as out:
        for k in range(W3_RUNS):
            name = w3_name(k)
            out.write(dumps({"run": name, "config": w3_config(k)}, option=newline))
            for step in range(W3_STEPS):
                out.write(dumps({"run": name, "step": step, "ts": time.time(),
                                 "metrics": w3_metrics(k, step)}, option=newline))
        out.flush()
        os.fsync(out.fileno())
    return {**_orjson_version(), "seconds": total.seconds, "runs": W3_RUNS,
            "how": "one line per run and per logged dict, one fsync"}


def _w3_query_orjson(path: Path) -> Result:
    with Clock() as read:
        configs: dict[str, dict[str, Any]] = {}
        last: dict[str, tuple[int, float]] = {}
        with open(path / "runs.jsonl", "rb") as source:
            for line in source:
                record = orjson.loads(line)
                run = record["run"]
                if "config" in record:
                    configs[run] = record["config"]
                    continue
                value = record["metrics"].get("m0")
                if value is not None and record["step"] >= last.get(run, (-1, 0.0))[0]:
                    last[run] = (record["step"], value)
        hits = [(value, run) for run, (_, value) in last.items()
                if value > W3_M0_ABOVE and configs[run]["lr"] < W3_LR_BELOW]
        hits.sort(reverse=True)
        names = [run for _, run in hits[:W3_TOP]]
    return {**_orjson_version(), "seconds": read.seconds, "correct": w3_check(names),
            "top": names, "api": "parse every line, filter and sort in Python"}


if __name__ == "__main__":
    main("baselines", {
        "w1-sqlite": _w1_sqlite,
        "w2-sqlite": _w2_sqlite,
        "w3-create-sqlite": _w3_create_sqlite,
        "w3-query-sqlite": _w3_query_sqlite,
        "w1-orjson": _w1_orjson,
        "w2-orjson": _w2_orjson,
        "w3-create-orjson": _w3_create_orjson,
        "w3-query-orjson": _w3_query_orjson,
    })
