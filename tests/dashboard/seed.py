"""Runs for the dashboard's tests, logged through the server as a training script would."""

from __future__ import annotations

from pathlib import Path

import engine.sync
from engine.sync import SyncTracker
from tests.server.live import LiveServer

PROJECT = "team/vision"


def tracker(server: LiveServer, tmp_path: Path, project: str = PROJECT) -> SyncTracker:
    return engine.sync.connect(server.url, project=project, durability="normal",
                               spool=str(tmp_path / "spool.db"))


def sweep(server: LiveServer, tmp_path: Path) -> None:
    """Three finished runs of one experiment, and a fork of the second."""
    with tracker(server, tmp_path) as t:
        for i, (lr, final) in enumerate([(0.1, 0.2), (0.01, 0.5), (0.001, 0.9)]):
            with t.start_run(run_id=f"run-{i}", name=f"sweep-{i}", experiment="sweep",
                             tags=("baseline",) if i == 0 else ("lr",),
                             config={"optimizer": "adam", "lr": lr, "batch": 64}) as run:
                for step in range(50):
                    run.log_metrics({"train/loss": 1.0 - (1.0 - final) * step / 49,
                                     "eval/acc": step / 49}, step=step)
        with t.start_run(run_id="fork", name="forked", fork=("run-1", 20),
                         config={"optimizer": "sgd"}) as run:
            run.log_metrics({"train/loss": 0.1}, step=21)
