"""MLflow with a local SQLite tracking store (runs in the peers' virtual environment).

Workloads: ``w1`` (``mlflow.log_metrics`` once per step, the fluent API of the docs),
``w1-batch`` (``MlflowClient.log_batch`` with 1,000 metrics per call, the documented limit
of one request), ``w2`` (``MlflowClient.get_metric_history``), ``w3-create`` and
``w3-query`` (``MlflowClient.search_runs`` with a filter string, ``order_by`` and
``max_results``), ``w5-server`` (W1's points through ``mlflow server``).

MLflow params are strings and can only be compared for (in)equality in a filter, so the
W3 condition ``lr < 0.05`` is written ``params.lr != '0.1'``, which selects the same runs
(lr is one of 0.1, 0.03, 0.01, 0.003, 0.001).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    EXPERIMENT,
    POINTS,
    READ_METRIC,
    RUN_NAME,
    STEPS,
    W1_CONFIG,
    W3_M0_ABOVE,
    W3_RUNS,
    W3_STEPS,
    W3_TOP,
    Clock,
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

_BATCH = 1_000  # metrics per log_batch call: the limit of one MLflow request
W3_FILTER = f"metrics.m0 > {W3_M0_ABOVE} and params.lr != '0.1'"


def _uri(path: Path) -> str:
    return f"sqlite:///{path / 'mlflow.db'}"


def _version() -> Result:
    return {"version": version_of("mlflow")}


def _w1(path: Path) -> Result:
    rows = w1_rows()
    import mlflow

    rss_ready = max_rss_mb()
    with Clock() as setup:
        mlflow.set_tracking_uri(_uri(path))
        mlflow.set_experiment(EXPERIMENT)
        run = mlflow.start_run(run_name=RUN_NAME)
        mlflow.log_params(W1_CONFIG)
    with Clock() as total:
        for step, row in enumerate(rows):
            mlflow.log_metrics(row, step=step)
        with Clock() as durable:
            mlflow.end_run()
    (path / "run_id.txt").write_text(run.info.run_id)
    return {**_version(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "setup_seconds": setup.seconds, "points": POINTS, "rss_ready_mb": rss_ready,
            "durable_call": "mlflow.end_run() (each log_metrics call commits)"}


def _w1_batch(path: Path) -> Result:
    rows = w1_rows()
    import mlflow

    rss_ready = max_rss_mb()
    with Clock() as setup:
        mlflow.set_tracking_uri(_uri(path))
        client, run_id = _new_run()
    total, durable = _log_batches(client, run_id, rows)
    (path / "run_id.txt").write_text(run_id)
    return {**_version(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "setup_seconds": setup.seconds, "points": POINTS, "rss_ready_mb": rss_ready,
            "durable_call": "client.log_batch(...) of the last points, set_terminated()"}


def _new_run() -> tuple[Any, str]:
    """A client of the tracking URI set, and a new run with W1's params."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient()
    experiment = client.create_experiment(EXPERIMENT)
    run_id: str = client.create_run(experiment, run_name=RUN_NAME).info.run_id
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in W1_CONFIG.items()])
    return client, run_id


def _log_batches(client: Any, run_id: str, rows: list[dict[str, float]]) -> tuple[Clock, Clock]:
    """W1's rows in ``log_batch`` calls of 1,000 metrics, then the run ended: the clocks of
    the whole and of the last call."""
    from mlflow.entities import Metric

    with Clock() as total:
        pending: list[Any] = []
        for step, row in enumerate(rows):
            now = int(time.time() * 1000)
            pending.extend(Metric(name, value, now, step) for name, value in row.items())
            if len(pending) >= _BATCH:
                client.log_batch(run_id, metrics=pending)
                pending = []
        with Clock() as durable:
            if pending:
                client.log_batch(run_id, metrics=pending)
            client.set_terminated(run_id)
    return total, durable


def _w5_server(path: Path) -> Result:
    """W1's points through ``mlflow server`` (its SQLite store, as W1 uses) on this
    machine: ``MlflowClient.log_batch`` over REST, 1,000 metrics a request (the documented
    limit of one ``log-batch``); each call returns once the server has committed."""
    rows = w1_rows()
    import mlflow

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(port), "--backend-store-uri", _uri(path),
               "--default-artifact-root", (path / "artifacts").as_uri()]
    with server(command, url + "/health", cwd=path):
        mlflow.set_tracking_uri(url)
        client, run_id = _new_run()
        total, durable = _log_batches(client, run_id, rows)
        history = client.get_metric_history(run_id, READ_METRIC)
    return {**_version(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "points": POINTS, "correct": len(history) == STEPS,
            "how": "`mlflow server` on SQLite; `MlflowClient.log_batch` (REST `log-batch`), "
                   "1,000 metrics a call"}


def _w2(path: Path) -> Result:
    from mlflow import MlflowClient

    run_id = (path / "run_id.txt").read_text()
    client = MlflowClient(tracking_uri=_uri(path))
    client.get_run(run_id)  # opens the store (engine, schema check) outside the clock
    with Clock() as read:
        history = client.get_metric_history(run_id, READ_METRIC)
    history.sort(key=lambda m: m.step)
    return {**_version(), "seconds": read.seconds, "points": len(history),
            "correct": series_check([m.step for m in history], [m.value for m in history]),
            "api": "MlflowClient.get_metric_history(run_id, key)"}


def _w3_create(path: Path) -> Result:
    import mlflow

    mlflow.set_tracking_uri(_uri(path))
    mlflow.set_experiment("w3")
    with Clock() as total:
        for k in range(W3_RUNS):
            with mlflow.start_run(run_name=w3_name(k)):
                mlflow.log_params(w3_config(k))
                for step in range(W3_STEPS):
                    mlflow.log_metrics(w3_metrics(k, step), step=step)
    return {**_version(), "seconds": total.seconds, "runs": W3_RUNS,
            "how": "mlflow.start_run / log_params / log_metrics per step, one after another"}


def _w3_query(path: Path) -> Result:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=_uri(path))
    experiment = client.get_experiment_by_name("w3")
    assert experiment is not None
    with Clock() as query:
        runs = client.search_runs([experiment.experiment_id], filter_string=W3_FILTER,
                                  order_by=["metrics.m0 DESC"], max_results=W3_TOP)
    names = [run.info.run_name for run in runs]
    return {**_version(), "seconds": query.seconds, "correct": w3_check(names), "top": names,
            "api": f"search_runs(filter_string={W3_FILTER!r}, order_by=['metrics.m0 DESC'], "
                   f"max_results={W3_TOP})"}


if __name__ == "__main__":
    main("mlflow", {"w1": _w1, "w1-batch": _w1_batch, "w2": _w2, "w3-create": _w3_create,
                    "w3-query": _w3_query, "w5-server": _w5_server})
