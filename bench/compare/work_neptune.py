"""neptune-scale in offline mode (runs in the peers' virtual environment).

``Run(mode="offline", log_directory=...)`` needs neither a server nor an API token: it writes
the run's operations into a local SQLite file for a later ``neptune sync``. Reading back (W2)
and querying (W3) are not measured: Neptune's reading packages (neptune-query, formerly
neptune-fetcher) read from the Neptune server only.
"""

from __future__ import annotations

from pathlib import Path

from _common import (
    EXPERIMENT,
    POINTS,
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

_PROJECT = "bench/compare"  # offline runs still need a workspace/project name


def _w1(path: Path) -> Result:
    rows = w1_rows()
    from neptune_scale import Run

    rss_ready = max_rss_mb()
    with Clock() as setup:
        run = Run(mode="offline", project=_PROJECT, run_id=RUN_NAME,
                  experiment_name=EXPERIMENT, log_directory=str(path))
        run.log_configs(W1_CONFIG)
    with Clock() as total:
        for step, row in enumerate(rows):
            run.log_metrics(data=row, step=step)
        with Clock() as durable:
            run.close()
    return {"version": version_of("neptune-scale"), "seconds": total.seconds,
            "durable_call_seconds": durable.seconds, "setup_seconds": setup.seconds,
            "points": POINTS, "rss_ready_mb": rss_ready, "durable_call": "run.close()"}


def _w3_create(path: Path) -> Result:
    from neptune_scale import Run

    with Clock() as total:
        for k in range(W3_RUNS):
            run = Run(mode="offline", project=_PROJECT, run_id=w3_name(k),
                      log_directory=str(path))
            run.log_configs(w3_config(k))
            for step in range(W3_STEPS):
                run.log_metrics(data=w3_metrics(k, step), step=step)
            run.close()
    return {"version": version_of("neptune-scale"), "seconds": total.seconds, "runs": W3_RUNS,
            "how": "Run(mode='offline') / log_configs / log_metrics per step / close, in order"}


if __name__ == "__main__":
    main("neptune-scale", {"w1": _w1, "w3-create": _w3_create})
