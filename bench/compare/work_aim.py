"""Aim with a local repository (runs in the peers' virtual environment).

The repository is created as ``aim init`` does (``Repo.from_path(path, init=True)``). Aim 3.29
writes each run into its own chunk and makes it visible to ``Repo`` queries only once its
index manager has indexed it (``aim up`` does this in the background). The workers run that
indexing step right after writing and report its time on its own (``index_seconds``); it is
not part of ingest or query times.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import (
    EXPERIMENT,
    POINTS,
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

W3_QUERY = (f"metric.name == 'm0' and metric.last > {W3_M0_ABOVE} "
            f"and run.hparams.lr < {W3_LR_BELOW}")


def _version() -> Result:
    return {"version": version_of("aim")}


def _index(path: Path, hashes: list[str]) -> float:
    """Index the runs as Aim's index manager does; returns the seconds it took."""
    from aim import Repo
    from aim.sdk.index_manager import RepoIndexManager

    manager = RepoIndexManager.get_index_manager(Repo.from_path(str(path)))
    with Clock() as clock:
        for run_hash in hashes:
            manager.index(run_hash)
    return clock.seconds


def _w1(path: Path) -> Result:
    rows = w1_rows()
    from aim import Repo, Run

    rss_ready = max_rss_mb()
    with Clock() as setup:
        Repo.from_path(str(path), init=True)
        run = Run(repo=str(path), experiment=EXPERIMENT)
        run.name = RUN_NAME
        run["hparams"] = W1_CONFIG
    with Clock() as total:
        for step, row in enumerate(rows):
            run.track(row, step=step)
        with Clock() as durable:
            run.close()
    index_seconds = _index(path, [run.hash])
    return {**_version(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "setup_seconds": setup.seconds, "index_seconds": index_seconds, "points": POINTS,
            "rss_ready_mb": rss_ready, "durable_call": "run.close()"}


def _w2(path: Path) -> Result:
    from aim import Repo

    repo = Repo.from_path(str(path))
    steps: Any = []
    values: Any = []
    with Clock() as read:
        # report_mode=0: no progress bar on the terminal.
        for collection in repo.query_metrics(f"metric.name == '{READ_METRIC}'",
                                             report_mode=0).iter_runs():
            for metric in collection:
                # metric.values.sparse_numpy() (the getting-started example) returns storage
                # keys in key order in Aim 3.29, not steps in step order.
                steps, (values,) = metric.data.view("val").numpy()
    return {**_version(), "seconds": read.seconds, "points": len(values),
            "correct": series_check(list(steps), list(values)),
            "api": "repo.query_metrics(\"metric.name == 'm3'\") … "
                   "metric.data.view('val').numpy()"}


def _w3_create(path: Path) -> Result:
    from aim import Repo, Run

    Repo.from_path(str(path), init=True)
    hashes: list[str] = []
    with Clock() as total:
        for k in range(W3_RUNS):
            run = Run(repo=str(path), experiment="w3")
            run.name = w3_name(k)
            run["hparams"] = w3_config(k)
            for step in range(W3_STEPS):
                run.track(w3_metrics(k, step), step=step)
            run.close()
            hashes.append(run.hash)
    index_seconds = _index(path, hashes)
    return {**_version(), "seconds": total.seconds, "index_seconds": index_seconds,
            "runs": W3_RUNS, "how": "Run(...) / run.track per step / run.close(), in order"}


def _w3_query(path: Path) -> Result:
    from aim import Repo

    repo = Repo.from_path(str(path))
    with Clock() as query:
        # Aim's query language filters; it has no ORDER BY or LIMIT, so sort in Python.
        hits = [(metric.values.last_value(), metric.run.name)
                for metric in repo.query_metrics(W3_QUERY, report_mode=0)]
        hits.sort(reverse=True)
        names = [name for _, name in hits[:W3_TOP]]
    return {**_version(), "seconds": query.seconds, "correct": w3_check(names), "top": names,
            "api": f"repo.query_metrics({W3_QUERY!r}), sorted in Python"}


if __name__ == "__main__":
    main("aim", {"w1": _w1, "w2": _w2, "w3-create": _w3_create, "w3-query": _w3_query})
