"""The screenshots in docs/dashboard.md: a small experiment, served and photographed.

    .venv/bin/python -m tests.dashboard.screenshots [--out docs/images]

Rerun it when the pages change (``make screenshots``). It needs the system's Chromium, as
the browser tests do.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
from pathlib import Path

import numpy as np

import engine.sync
from engine.sync import SyncRun
from tests.dashboard.conftest import CHROMIUM
from tests.server.live import LiveServer

PROJECT = "team/vision"
SHOTS = [
    ("dashboard-runs.png", f"#/runs?project={PROJECT}", "table.runs tr[data-run-id]"),
    ("dashboard-query-error.png",
     f"#/runs?project={PROJECT}&q=metrics.val/acc > and config.optimizer = 'adam'",
     "#query-error mark"),
    ("dashboard-run.png", f"#/run?project={PROJECT}&id=lr-3e-4&smooth=0.6",
     "figure[data-metric='train/loss'] canvas"),
    ("dashboard-run-logs.png", f"#/run?project={PROJECT}&id=lr-3e-4&tab=logs",
     ".log .line"),
    ("dashboard-run-files.png", f"#/run?project={PROJECT}&id=lr-3e-4&tab=files",
     ".image-card img"),
    ("dashboard-run-histograms.png", f"#/run?project={PROJECT}&id=lr-3e-4&tab=histograms",
     ".hist-summary"),
    ("dashboard-run-matrices.png", f"#/run?project={PROJECT}&id=lr-3e-4&tab=matrices",
     "table.matrix td"),
    ("dashboard-compare.png",
     f"#/compare?project={PROJECT}&runs=lr-1e-3,lr-3e-4,lr-3e-4-ft,lr-1e-4",
     "figure[data-metric='train/loss'] canvas"),
]


def seed(url: str, spool: str) -> None:
    rng = random.Random(7)
    with engine.sync.connect(url, project=PROJECT, durability="normal", spool=spool) as t:
        for run_id, lr, opt in (("lr-1e-3", 1e-3, "adam"), ("lr-3e-4", 3e-4, "adam"),
                                ("lr-1e-4", 1e-4, "sgd"), ("lr-3e-3", 3e-3, "adam")):
            tags = {"lr-3e-4": ("baseline",),
                    "lr-1e-4": ("sweep", "sgd", "long-schedule")}.get(run_id, ("sweep",))
            with t.start_run(run_id=run_id, experiment="resnet-sweep", tags=tags,
                             config={"optimizer": opt, "lr": lr, "batch_size": 128,
                                     "model": "resnet50", "epochs": 30}) as run:
                speed = lr * 3000
                for step in range(0, 3000, 5):
                    loss = 2.3 * math.exp(-step * speed / 3000) + 0.15
                    if run_id == "lr-3e-3" and step > 1800:
                        loss = float("nan")
                    run.log_metrics({
                        "train/loss": loss + rng.gauss(0, 0.04),
                        "train/acc": 1 - loss / 2.5 + rng.gauss(0, 0.01),
                        "val/loss": loss * 1.1 + 0.05 + rng.gauss(0, 0.02),
                        "val/acc": 1 - loss / 2.3,
                        "lr": lr * (0.5 + 0.5 * math.cos(math.pi * step / 3000)),
                    }, step=step)
                    if run_id == "lr-3e-4":
                        _content(run, step, loss, rng)
                if run_id == "lr-3e-3":
                    run.add_tags("diverged")
                if run_id == "lr-3e-4":
                    run.set_notes("Baseline for the sweep: cosine decay, no warmup.\n"
                                  "Validation loss still falling at the end.")
                    run.upload({"model/weights": rng.randbytes(256 << 10)})
        with t.start_run(run_id="lr-3e-4-ft", fork=("lr-3e-4", 1500),
                         tags=("finetune", "frozen-backbone", "mixup", "label-smoothing",
                               "cutout"),
                         config={"optimizer": "sgd", "lr": 1e-4}) as run:
            for step in range(1505, 3000, 5):
                loss = 2.3 * math.exp(-step * 0.9 / 3000) + 0.1
                run.log_metrics({"train/loss": loss + rng.gauss(0, 0.03),
                                 "val/loss": loss * 1.05 + 0.05}, step=step)


def _content(run: SyncRun, step: int, loss: float, rng: random.Random) -> None:
    """What the demo's runs record besides metrics: printed lines, gradient histograms, a
    confusion matrix and a predicted image now and then."""
    if step % 100 == 0:
        run.log_text({"logs/stdout": f"[{step:>4}/3000] loss {loss:.4f}  "
                      f"lr {3e-4 * (0.5 + 0.5 * math.cos(math.pi * step / 3000)):.2e}"},
                     step=step // 100)
    if step % 250 == 0:
        grads = [rng.gauss(0, 0.2 + loss / 2) for _ in range(2000)]
        run.log_histograms({"grad/norm": engine.Histogram.from_values(grads, bins=40)},
                           step=step)
    if step % 1000 == 0:
        right = min(95, 40 + step // 50)
        run.log_confusion_matrices({"eval/confusion": engine.ConfusionMatrix(
            ["cat", "dog", "bird"], [[right, 100 - right - 5, 5], [12, right, 88 - right],
                                     [3, 100 - right - 3, right]])}, step=step)
        size = 48
        pixels = [[[int(255 * (1 - abs(x - y) / size) * min(1, step / 2000 + 0.3)),
                    int(200 * x / size), int(255 * y / size)] for x in range(size)]
                  for y in range(size)]
        run.log_files({"eval/prediction": engine.Image(np.array(pixels, dtype=np.uint8),
                                                       caption=f"prediction at step {step}")},
                      step=step)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/images")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, \
            LiveServer(str(Path(tmp) / "db.sqlite"), durability="normal") as server:
        seed(server.url, str(Path(tmp) / "spool.db"))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            for name, fragment, ready in SHOTS:
                page.goto(f"{server.url}/{fragment}")
                page.wait_for_selector("h1")
                # Bring every chart into view once, so that each loads its points.
                page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                page.wait_for_selector(ready)
                page.wait_for_timeout(600)
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(out / name), full_page="run" in name)
                print(out / name)
            browser.close()


if __name__ == "__main__":
    main()
