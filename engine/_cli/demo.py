"""``kittiwake demo``: a simulated experiment on the embedded database.

Four runs of one experiment train side by side: a baseline; a run whose learning rate is too
high and diverges (it fails); a fork of the baseline from its checkpoint at mid-training with a
decayed learning rate; and a run that is preempted, then resumed with ``rewind_to`` its last
checkpoint. A live view follows them through the log, and a summary table ends the demo.
"""

from __future__ import annotations

import contextlib
import math
import random
import struct
import sys
import zlib
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TextIO, TypedDict, Unpack

import anyio

from engine._core.confusion import ConfusionMatrix
from engine._core.histograms import Histogram
from engine._core.images import Image
from engine._core.model import RunState
from engine._runtime.subscriptions import Subscription
from engine._runtime.tracker import Tracker

from .display import fit_line, fmt, table, terminal_width

__all__ = ["run_demo"]

EXPERIMENT = "gull-flying"


class _Start(TypedDict, total=False):
    """How a simulated run starts, besides its id and experiment."""

    fork: tuple[str, int]
    tags: tuple[str, ...]
    resume: bool
    rewind_to: int


class Diverged(FloatingPointError):
    """The loss became NaN."""


class Preempted(RuntimeError):
    """The simulated machine went away."""


@dataclass
class _Board:
    """What the live view shows: per run, the latest step and loss.

    On a terminal the view redraws the board in place; elsewhere (a pipe, a log file) each
    run's end is written as a line at once, so progress shows without a terminal too.
    """

    out: TextIO
    tty: bool
    order: list[str] = field(default_factory=list)
    rows: dict[str, tuple[str, int, float, str]] = field(default_factory=dict)

    def update(self, run_id: str, label: str, step: int, loss: float, note: str = "") -> None:
        if run_id not in self.rows:
            self.order.append(run_id)
        self.rows[run_id] = (label, step, loss, note)

    def label(self, run_id: str, label: str) -> None:
        """A run is training under this label (which clears any note)."""
        _, step, loss, _ = self.rows.get(run_id, (label, 0, math.nan, ""))
        self.update(run_id, label, step, loss)

    def point(self, run_id: str, step: int, loss: float) -> None:
        if run_id in self.rows:
            label, _, _, note = self.rows[run_id]
            self.update(run_id, label, step, loss, note)

    def ended(self, state: RunState) -> None:
        """A run's block ended with this (committed) state."""
        label, step, loss, _ = self.rows.get(state.run_id, (state.run_id, 0, math.nan, ""))
        loss_summary = state.metrics.get("train/loss")
        if loss_summary is not None:
            step, loss = int(loss_summary.last_step), loss_summary.last
        reason = state.status_reason
        self.update(state.run_id, label, step, loss,
                    f"{state.status}: {reason}" if reason else str(state.status))
        if not self.tty:
            self.out.write(f"  {label}: {state.status} at step {step}"
                           + (f" ({reason})\n" if reason else "\n"))
            self.out.flush()


def _loss(step: int, lr: float, seed: int, start: float = 2.5, origin: int = 0) -> float:
    noise = random.Random(seed * 100_003 + step).gauss(0, 0.01)
    return start * math.exp(-lr * (step - origin) / 5) + 0.1 + noise


async def _train(tracker: Tracker, board: _Board, run_id: str, label: str, *, lr: float,
                 steps: range, delay: float, seed: int, checkpoints: list[int] | None = None,
                 diverge_at: int | None = None, preempt_at: int | None = None,
                 start_loss: float = 2.5, origin: int = 0, **start: Unpack[_Start]) -> None:
    try:
        await _steps(tracker, board, run_id, label, lr=lr, steps=steps, delay=delay, seed=seed,
                     checkpoints=checkpoints, diverge_at=diverge_at, preempt_at=preempt_at,
                     start_loss=start_loss, origin=origin, **start)
    finally:
        board.ended(await tracker.get_run(run_id))


async def _steps(tracker: Tracker, board: _Board, run_id: str, label: str, *, lr: float,
                 steps: range, delay: float, seed: int, checkpoints: list[int] | None,
                 diverge_at: int | None, preempt_at: int | None, start_loss: float,
                 origin: int, **start: Unpack[_Start]) -> None:
    async with tracker.start_run(run_id, experiment=EXPERIMENT, **start) as run:
        run.log_configs({"optimizer": {"name": "sgd", "lr": lr}, "seed": seed})
        run.set_notes(f"{label}: a simulated training run of `kittiwake demo`")
        shake = random.Random(seed)
        for step in steps:
            loss = _loss(step, lr, seed, start_loss, origin)
            if diverge_at is not None and step >= diverge_at:
                loss = loss * 10 ** (step - diverge_at + 1)
                if step - diverge_at > 4:
                    loss = math.nan
            run.log_metrics({"train/loss": loss, "train/acc": max(0.0, 1 - loss / 3)},
                            step=step)
            if step % 10 == 0:
                run.log_metrics({"val/loss": loss * 1.05}, step=step)
            board.label(run_id, label)
            if math.isnan(loss):
                raise Diverged(f"train/loss is NaN at step {step}")
            if step % 50 == 0:  # what else a run records: a sample, a histogram
                run.log_text({"eval/sample": f"step {step}: loss {loss:.4f}"}, step=step)
                grads = [shake.gauss(0, max(loss, 1e-3)) for _ in range(256)]
                run.log_histograms({"grad/norm": Histogram.from_values(grads, bins=16)},
                                   step=step)
            if checkpoints is not None and step % 50 == 0:
                await run.flush()  # a checkpoint's metrics are durable with it
                checkpoints.append(step)
            if preempt_at is not None and step == preempt_at:
                raise Preempted(f"machine preempted at step {step}")
            await anyio.sleep(delay)
        if steps:  # the end of training: an evaluation and the model's weights
            last = steps[-1]
            right = round(100 * max(0.0, 1 - loss / 3))
            run.log_confusion_matrices({"eval/confusion": ConfusionMatrix(
                ["cat", "dog"], [[right, 100 - right], [100 - right // 2, right // 2]])},
                step=last)
            run.log_files({"eval/prediction": Image(_png(seed, last), caption=f"step {last}")},
                          step=last)
            await run.upload({"model/weights": random.Random(seed).randbytes(64 << 10)})


async def _follow(feed: Subscription, board: _Board) -> None:
    """Feed the board from the log itself: what the view shows is what was committed."""
    async for event in feed:
        column = event.data["metrics"]["train/loss"]
        board.point(event.run_id, column["steps"][-1], column["values"][-1])


async def _view(board: _Board, done: anyio.Event, finished: anyio.Event) -> None:
    """Redraw the board in place on a terminal, ten times a second, until ``done``; then draw
    it a last time and set ``finished``."""
    try:
        if board.tty:  # elsewhere runs' ends are written as lines as they come (_Board.ended)
            await _redraw(board, done)
    finally:
        finished.set()


async def _redraw(board: _Board, done: anyio.Event) -> None:
    out = board.out
    drawn = 0
    while True:
        # A line wider than the terminal would wrap, and the redraw would miss it.
        width = terminal_width() if out is sys.stdout else None
        lines = [fit_line(f"  {label:<34} step {step:>5}  loss {fmt(loss):>9}  {note}".rstrip(),
                          width)
                 for label, step, loss, note in (board.rows[r] for r in board.order)]
        out.write(("\x1b[F" * drawn) + "".join(line + "\x1b[K\n" for line in lines))
        drawn = len(lines)
        out.flush()
        if done.is_set():
            return
        with anyio.move_on_after(0.1):
            await done.wait()


async def run_demo(tracker: Tracker, *, steps: int, delay: float, out: TextIO,
                   command: str = "kittiwake") -> list[RunState]:
    """Simulate the experiment and print the summary table; returns the runs' final states.

    ``command`` is how the closing hints spell the ``kittiwake`` command (as it was invoked,
    with ``--db`` when the database is not the default), so they work as printed.
    """
    board = _Board(out, out.isatty())
    suffix = random.Random().randrange(16**6)
    ids = {k: f"{k}-{suffix:06x}" for k in ("baseline", "high-lr", "decay", "preempt")}
    fork_step = steps // 2
    out.write(f"kittiwake demo: experiment {EXPERIMENT!r}, {steps} steps per run, database "
              f"{tracker.url}\n")
    done = anyio.Event()
    feed = tracker.subscribe(metrics=["train/loss"], from_position="live")
    async with feed, anyio.create_task_group() as view:
        finished = anyio.Event()
        view.start_soon(_view, board, done, finished)
        view.start_soon(_follow, feed, board)
        baseline_checkpoints: list[int] = []
        async with anyio.create_task_group() as runs:
            runs.start_soon(_guard, _train(
                tracker, board, ids["high-lr"], "high-lr (lr=1.5, diverges)", lr=1.5,
                steps=range(steps), delay=delay, seed=2, diverge_at=steps // 3))
            runs.start_soon(_preemptible, tracker, board, ids["preempt"], steps, delay)
            await _train(tracker, board, ids["baseline"], "baseline (lr=0.1)", lr=0.1,
                         steps=range(fork_step + 1), delay=delay, seed=1,
                         checkpoints=baseline_checkpoints, tags=("baseline",))
            # Fork from the baseline's last checkpoint with a decayed learning rate, while the
            # baseline would go on; the fork shares its history up to the checkpoint.
            checkpoint = baseline_checkpoints[-1]
            board.update(ids["decay"], f"decay (fork of baseline @ {checkpoint})", checkpoint,
                         math.nan)
            at_checkpoint = _loss(checkpoint, 0.1, 1) - 0.1
            await _train(tracker, board, ids["decay"], f"decay (fork of baseline @ {checkpoint})",
                         lr=0.05, steps=range(checkpoint + 1, steps), delay=delay, seed=3,
                         start_loss=at_checkpoint, origin=checkpoint,
                         fork=(ids["baseline"], checkpoint), tags=("fork",))
        done.set()
        await finished.wait()  # the view has drawn the runs' final state
        view.cancel_scope.cancel()
    states = [await tracker.get_run(ids[k]) for k in ("baseline", "high-lr", "decay", "preempt")]
    out.write("\n" + _summary(states) + "\n")
    head = await tracker.get_experiment(EXPERIMENT)
    out.write(f"\nexperiment {EXPERIMENT!r}: head {head.head}, {len(head.history)} runs in its "
              "history\n")
    best = _best(states)
    if best is not None:
        out.write(f"best run: {best.run_id} ({best.name}), lowest loss "
                  f"{fmt(best.metrics['train/loss'].min)} among the runs that succeeded\n")
    # The best run first, as chosen above: among the runs that succeeded (the diverged run's
    # loss went lower before it failed).
    out.write(f"look around: {command} runs show {ids['decay']}\n"
              f"             {command} runs list --where \"status = 'succeeded'\" "
              "--order-by metrics.train/loss.min\n"
              f"             {command} files {ids['decay']}\n"
              f"             {command} download {ids['decay']} model/weights weights.bin\n"
              f"             {command} events | tail -3\n"
              f"in the browser: {command} ui\n")
    return states


def _png(seed: int, step: int, size: int = 32) -> bytes:
    """A small grey-scale PNG (no Pillow needed): the demo's "prediction" image."""
    noise = random.Random(seed * 7919 + step)
    rows = b"".join(b"\x00" + bytes(min(255, (x * y) % 256 + noise.randrange(32))
                                    for x in range(size)) for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def _best(states: list[RunState]) -> RunState | None:
    """The succeeded run with the lowest loss: a run that diverged or failed is never it,
    however low its loss went before."""
    finished = [s for s in states if s.status == "succeeded" and "train/loss" in s.metrics
                and not math.isnan(s.metrics["train/loss"].min)]
    return min(finished, key=lambda s: s.metrics["train/loss"].min, default=None)


async def _guard(training: Awaitable[None]) -> None:
    """Let the diverging run fail as the product records it, without ending the demo."""
    with contextlib.suppress(Diverged):  # recorded failed, and shown so, by _train
        await training


async def _preemptible(tracker: Tracker, board: _Board, run_id: str, steps: int,
                       delay: float) -> None:
    checkpoints: list[int] = []
    preempt_at = steps * 3 // 4 + 7
    with contextlib.suppress(Preempted):  # the run ends failed; the job restarts it
        await _train(tracker, board, run_id, "preempt (restarts from checkpoint)", lr=0.08,
                     steps=range(steps), delay=delay, seed=4, checkpoints=checkpoints,
                     preempt_at=preempt_at)
    resume_from = checkpoints[-1]
    label = f"preempt (resumed @ {resume_from})"
    board.update(run_id, label, resume_from, math.nan, "restarting")
    await anyio.sleep(delay * 20)
    await _train(tracker, board, run_id, label, lr=0.08, steps=range(resume_from + 1, steps),
                 delay=delay, seed=4, resume=True, rewind_to=resume_from)


def _summary(states: list[RunState]) -> str:
    rows = []
    for s in states:
        loss = s.metrics.get("train/loss")
        val = s.metrics.get("val/loss")
        fork = f"{s.fork.run_id}@{fmt(s.fork.step)}" if s.fork else None
        rows.append((s.run_id, s.name, s.status, fork, loss.count if loss else 0,
                     loss.last if loss else None, loss.min if loss else None,
                     val.last if val else None, s.status_reason))
    return table(("run", "name", "status", "fork", "points", "last loss", "min loss",
                  "val loss", "reason"), rows, numeric=(4, 5, 6, 7))
