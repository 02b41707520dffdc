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


def recorded(server: LiveServer, tmp_path: Path, run_id: str = "rich") -> None:
    """One run that records every kind of content: output lines, text, histograms over
    steps, confusion matrices, an image series and an uploaded file."""
    import numpy as np

    with tracker(server, tmp_path) as t, t.start_run(
            run_id=run_id, name="rich", notes="first line\n<b>not bold</b>", capture_env=True,
            config={"lr": 0.1}) as run:
        for i in range(3):
            run.log_text({"logs/stdout": f"epoch {i}: loss {1 / (i + 1):.3f}"}, step=i)
        run.log_text({"logs/stderr": "warning: <script>alert(1)</script>"}, step=0)
        run.log_text({"eval/sample": "a cat on a mat"}, step=3)
        for step in range(5):
            # Step s: every value in the bins from s to s + 1, so the rows move right.
            run.log_histograms({"grad/norm": engine.Histogram(
                [float(step), step + 0.5, step + 1.0], [10 * (step + 1), step])}, step=step)
        for step, right in ((0, 30), (1, 40), (2, 45)):
            run.log_confusion_matrices({"eval/cm": engine.ConfusionMatrix(
                ["cat", "dog"], [[right, 50 - right], [5, 45]])}, step=step)
        for step in range(3):
            pixels = np.zeros((8, 12, 3), dtype=np.uint8)
            pixels[:, : 4 * (step + 1)] = (220, 40, 40)
            run.log_files({"eval/pred": engine.Image(pixels, caption=f"epoch {step}")},
                          step=step)
        run.upload({"model/weights": b"\x00" * 3000})
        run.log_metrics({"loss": 0.5}, step=0)
