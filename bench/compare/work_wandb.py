"""Weights & Biases in offline mode (runs in the peers' virtual environment).

``run.run.py`` sets ``WANDB_MODE=offline``, ``WANDB_SILENT=true`` and ``WANDB_DIR`` to the
workload's data directory. Reading back (W2) and querying runs (W3) are not measured: the
only documented reading API, ``wandb.Api()``, asks the W&B server, and an offline run is on
that server only after ``wandb sync``.
"""

from __future__ import annotations

import os
from pathlib import Path

from _common import (
    EXPERIMENT,
    POINTS,
    PROJECT,
    RUN_NAME,
    W1_CONFIG,
    W3_RUNS,
    W3_STEPS,
    Clock,
    Result,
    main,
    max_rss_mb,
    version_of,
    w1_rows,
    w3_config,
    w3_metrics,
    w3_name,
)


def _env(path: Path) -> None:
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ["WANDB_DIR"] = str(path)


def _w1(path: Path) -> Result:
    _env(path)
    rows = w1_rows()
    import wandb

    rss_ready = max_rss_mb()
    with Clock() as setup:
        run = wandb.init(project=PROJECT, name=RUN_NAME, group=EXPERIMENT, config=W1_CONFIG)
    with Clock() as total:
        for step, row in enumerate(rows):
            run.log(row, step=step)
        with Clock() as durable:
            run.finish()
    # Stop the wandb-core helper so that its peak memory is counted (RUSAGE_CHILDREN).
    wandb.teardown()
    return {"version": version_of("wandb"), "seconds": total.seconds,
            "durable_call_seconds": durable.seconds, "setup_seconds": setup.seconds,
            "points": POINTS, "rss_ready_mb": rss_ready, "durable_call": "run.finish()"}


def _w3_create(path: Path) -> Result:
    _env(path)
    import wandb

    with Clock() as total:
        for k in range(W3_RUNS):
            run = wandb.init(project=PROJECT, name=w3_name(k), group="w3", config=w3_config(k))
            for step in range(W3_STEPS):
                run.log(w3_metrics(k, step), step=step)
            run.finish()
    wandb.teardown()
    return {"version": version_of("wandb"), "seconds": total.seconds, "runs": W3_RUNS,
            "how": "wandb.init / run.log / run.finish, one run after another"}


if __name__ == "__main__":
    main("wandb", {"w1": _w1, "w3-create": _w3_create})
