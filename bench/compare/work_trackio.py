"""trackio, local-first on SQLite (runs in the peers' virtual environment).

``TRACKIO_DIR`` points at the workload's data directory. trackio's Python API logs; its
documented way to read is the ``trackio`` command (``trackio get metric``, ``trackio query
project --sql``). To time the reading itself rather than a process start, the workers call
the functions those commands call: ``SQLiteStorage.get_metric_values`` and
``SQLiteStorage.query_project``. With psutil installed (Aim and neptune-scale need it)
trackio also logs CPU metrics in the background by default; that default is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

from _common import (
    EXPERIMENT,
    POINTS,
    PROJECT,
    READ_METRIC,
    RUN_NAME,
    W1_CONFIG,
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

# SQLite returns the bare columns of the row that holds MAX(step).
W3_SQL = (
    "WITH last AS (SELECT run_id, run_name, MAX(step), json_extract(metrics, '$.m0') AS m0 "
    "FROM metrics GROUP BY run_id) "
    "SELECT last.run_name AS name FROM last JOIN configs ON configs.run_id = last.run_id "
    f"WHERE json_extract(configs.config, '$.lr') < {W3_LR_BELOW} AND last.m0 > {W3_M0_ABOVE} "
    f"ORDER BY last.m0 DESC LIMIT {W3_TOP}"
)


def _env(path: Path) -> None:
    # Read by trackio when it is imported.
    os.environ["TRACKIO_DIR"] = str(path)


def _version() -> Result:
    return {"version": version_of("trackio")}


def _w1(path: Path) -> Result:
    _env(path)
    rows = w1_rows()
    import trackio

    rss_ready = max_rss_mb()
    with Clock() as setup:
        trackio.init(project=PROJECT, name=RUN_NAME, group=EXPERIMENT, config=W1_CONFIG)
    with Clock() as total:
        for step, row in enumerate(rows):
            trackio.log(row, step=step)
        with Clock() as durable:
            trackio.finish()
    return {**_version(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "setup_seconds": setup.seconds, "points": POINTS, "rss_ready_mb": rss_ready,
            "durable_call": "trackio.finish()"}


def _w2(path: Path) -> Result:
    _env(path)
    from trackio.sqlite_storage import SQLiteStorage

    with Clock() as read:
        found = SQLiteStorage.get_metric_values(PROJECT, RUN_NAME, READ_METRIC)
    return {**_version(), "seconds": read.seconds, "points": len(found),
            "correct": series_check([p["step"] for p in found], [p["value"] for p in found]),
            "api": "SQLiteStorage.get_metric_values (what `trackio get metric` runs)"}


def _w3_create(path: Path) -> Result:
    _env(path)
    import trackio

    with Clock() as total:
        for k in range(W3_RUNS):
            trackio.init(project=PROJECT, name=w3_name(k), group="w3", config=w3_config(k))
            for step in range(W3_STEPS):
                trackio.log(w3_metrics(k, step), step=step)
            trackio.finish()
    return {**_version(), "seconds": total.seconds, "runs": W3_RUNS,
            "how": "trackio.init / trackio.log per step / trackio.finish, in order"}


def _w3_query(path: Path) -> Result:
    _env(path)
    from trackio.sqlite_storage import SQLiteStorage

    with Clock() as query:
        found = SQLiteStorage.query_project(PROJECT, W3_SQL)
    names = [row["name"] for row in found["rows"]]
    return {**_version(), "seconds": query.seconds, "correct": w3_check(names), "top": names,
            "api": "SQL through SQLiteStorage.query_project (what `trackio query project "
                   "--sql` runs)"}


if __name__ == "__main__":
    main("trackio", {"w1": _w1, "w2": _w2, "w3-create": _w3_create, "w3-query": _w3_query})
