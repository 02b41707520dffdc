"""tensorboardX event files, read back with TensorBoard's own reader (peers' environment).

Each run is a log directory written by ``SummaryWriter``: ``add_scalar`` once per metric and
step (the documented way; ``add_scalars`` would write one directory per metric), configs with
``add_hparams`` (into the ``hparams`` sub-directory, as TensorBoard's HParams dashboard
expects). TensorBoard has no query API, so reading uses its ``EventAccumulator`` with
``size_guidance={SCALARS: 0}`` — the default keeps a random sample of 10,000 points per tag —
and W3 loads every run and filters and sorts in Python. Scalars are stored as float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _version() -> Result:
    return {"version": version_of("tensorboardX"),
            "reader_version": f"tensorboard {version_of('tensorboard')}"}


def _accumulator(directory: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import (
        SCALARS,
        EventAccumulator,
    )

    loaded = EventAccumulator(str(directory), size_guidance={SCALARS: 0})
    loaded.Reload()
    return loaded


def _w1(path: Path) -> Result:
    rows = w1_rows()
    from tensorboardX import SummaryWriter

    rss_ready = max_rss_mb()
    with Clock() as setup:
        writer = SummaryWriter(logdir=str(path / RUN_NAME))
    with Clock() as total:
        add_scalar = writer.add_scalar
        for step, row in enumerate(rows):
            for name, value in row.items():
                add_scalar(name, value, step)
        with Clock() as durable:
            writer.close()
    return {**_version(), "seconds": total.seconds, "durable_call_seconds": durable.seconds,
            "setup_seconds": setup.seconds, "points": POINTS, "rss_ready_mb": rss_ready,
            "durable_call": "writer.close()"}


def _w2(path: Path) -> Result:
    with Clock() as read:
        events = _accumulator(path / RUN_NAME).Scalars(READ_METRIC)
    return {**_version(), "seconds": read.seconds, "points": len(events),
            "correct": series_check([e.step for e in events], [e.value for e in events]),
            "api": "EventAccumulator(logdir, size_guidance={SCALARS: 0}).Reload()"
                   ".Scalars('m3')"}


def _w3_create(path: Path) -> Result:
    from tensorboardX import SummaryWriter

    with Clock() as total:
        for k in range(W3_RUNS):
            writer = SummaryWriter(logdir=str(path / w3_name(k)))
            for step in range(W3_STEPS):
                for name, value in w3_metrics(k, step).items():
                    writer.add_scalar(name, value, step)
            writer.add_hparams(w3_config(k), {}, name="hparams")
            writer.close()
    return {**_version(), "seconds": total.seconds, "runs": W3_RUNS,
            "how": "SummaryWriter / add_scalar / add_hparams / close, in order"}


def _lr(run_dir: Path) -> float:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = _accumulator(run_dir / "hparams").PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return float(data.session_start_info.hparams["lr"].number_value)


def _w3_query(path: Path) -> Result:
    with Clock() as query:
        hits: list[tuple[float, str]] = []
        for run_dir in sorted(p for p in path.iterdir() if p.is_dir()):
            m0 = _accumulator(run_dir).Scalars("m0")[-1].value
            if m0 > W3_M0_ABOVE and _lr(run_dir) < W3_LR_BELOW:
                hits.append((m0, run_dir.name))
        hits.sort(reverse=True)
        names = [name for _, name in hits[:W3_TOP]]
    return {**_version(), "seconds": query.seconds, "correct": w3_check(names), "top": names,
            "api": "EventAccumulator per run (scalars and hparams), filter and sort in Python"}


if __name__ == "__main__":
    main("tensorboardx", {"w1": _w1, "w2": _w2, "w3-create": _w3_create,
                          "w3-query": _w3_query})
