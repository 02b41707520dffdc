"""Draws ``docs/ingest-comparison.png``: W1 ingest points/s per tracker and baseline.

Runs in the peers' environment (matplotlib never enters the project's):
``bench/.peers/venv/bin/python bench/compare/plot.py results.json out.png``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend must be chosen first
from matplotlib.patches import Rectangle

TARGET = 1_000_000  # Kittiwake's ingest target, points/s
COLOURS = {"kittiwake": "#1f6feb", "peer": "#8c959f", "baseline": "#d4a72c"}


def main(results: Path, out: Path) -> None:
    """Read the results and write the bar chart."""
    info: dict[str, Any] = json.loads(results.read_text())
    bars = [(cell["label"], cell["points"] / cell["seconds"], cell["kind"])
            for cell in info["cells"]
            if cell["phase"] == "w1" and cell.get("seconds") and cell.get("points")]
    bars.sort(key=lambda bar: bar[1])
    machine = info["machine"]
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(bars) + 1.6), dpi=150)
    positions = range(len(bars))
    axes.barh(list(positions), [rate for _, rate, _ in bars],
              color=[COLOURS[kind] for _, _, kind in bars])
    axes.set_yticks(list(positions), [label for label, _, _ in bars])
    axes.set_xscale("log")
    axes.set_xlabel("points per second (log scale), higher is better")
    for position, (_, rate, _) in zip(positions, bars, strict=True):
        axes.text(rate * 1.08, position, f"{rate:,.0f}", va="center", fontsize=8)
    # Bars start at the left edge: put it a decade below the slowest so that none vanishes.
    slowest = min(rate for _, rate, _ in bars)
    axes.set_xlim(left=10 ** math.floor(math.log10(slowest / 2)),
                  right=max(rate for _, rate, _ in bars) * 6)
    axes.axvline(TARGET, color="#cf222e", linestyle="--", linewidth=1)
    axes.set_ylim(-1.1, len(bars) - 0.5)  # room under the bars for the target's label
    axes.text(TARGET * 1.05, -0.8, "target: 1,000,000 points/s", color="#cf222e", fontsize=8,
              va="center")
    axes.set_title("W1 ingest: 10 metrics × 20,000 steps, until durable\n"  # noqa: RUF001
                   f"{machine['cpu_model']}, {machine['nproc']} cores, "
                   f"Python {machine['python_project']}, {info['generated'][:10]}",
                   fontsize=10)
    handles = [Rectangle((0, 0), 1, 1, color=colour) for colour in COLOURS.values()]
    axes.legend(handles, ["Kittiwake", "other trackers", "raw baselines"], loc="center right",
                fontsize=8)
    axes.grid(axis="x", which="major", alpha=0.3)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
