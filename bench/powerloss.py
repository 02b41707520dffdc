"""Power loss, simulated: a disk that keeps only what was synced.

A killed process cannot tell ``durability="full"`` from ``"normal"``: the operating system
still writes what the process handed it. Power loss can: what was not synced is gone. This
module simulates it for SQLite, as LazyFS would, with a small C library
(``powerloss_shim.c``) loaded into the writer with ``LD_PRELOAD``: each ``fdatasync`` or
``fsync`` of a file in the database's directory copies that file, as it is once the sync
returned, into a shadow directory. The harness kills the writer with SIGKILL at a random
instant, then puts the shadow copies in place of the database's files — each file as its last
sync left it, a file never synced absent, the shared-memory index (``-shm``, never synced)
dropped — and reopens the database. The promise:

- ``full``: every point ``flush()`` confirmed is there, positions gap-free, the projections
  equal a rebuild and the pure fold (the checks of ``bench.torture``);
- ``normal``: the database opens, ``kittiwake check`` finds nothing, and it holds a prefix of
  the confirmed flushes: what is lost is only the last commits, never one before a kept one.

The shim counts the syncs it sees, and a trial in which a writer on ``full`` confirmed a flush
without one sync of the WAL is a violation: a shim out of the path would prove nothing.
PostgreSQL is not simulated (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import engine
from bench.torture import (
    RUNS,
    TRIALS_PER_DATABASE,
    WRITER,
    Ledger,
    _failure,
    _kill_child,
    verify,
)
from engine.errors import RunNotFoundError

__all__ = ["Disk", "build_shim", "sqlite_power_loss"]

SHIM_SOURCE = Path(__file__).with_name("powerloss_shim.c")
DATABASE = "power.db"
LONGEST = 2.0
"""The latest instant of a kill, in seconds after the writer's first flush: on ``normal``
the WAL is synced only by checkpoints (about every half second), so a shorter trial would
mostly lose everything it wrote and test little else."""


class NoCompiler(RuntimeError):
    """No C compiler to build the shim with."""


def build_shim(into: Path) -> Path:
    """Compile the shim into ``into``; the shared library's path."""
    compiler = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if compiler is None:
        raise NoCompiler("simulating power loss needs a C compiler (gcc) for its LD_PRELOAD "
                         "library")
    library = into / "powerloss_shim.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library),
                    str(SHIM_SOURCE), "-ldl"], check=True, capture_output=True)
    return library


@dataclass
class Disk:
    """A directory whose files lose, on :meth:`power_loss`, what was not synced."""

    data: Path
    shadow: Path
    shim: Path

    @classmethod
    def make(cls, workdir: Path, shim: Path) -> Disk:
        (workdir / "data").mkdir(parents=True)
        (workdir / "shadow").mkdir()
        return cls(workdir / "data", workdir / "shadow", shim)

    @property
    def database(self) -> str:
        return str(self.data / DATABASE)

    def env(self) -> dict[str, str]:
        """The environment of a process whose syncs the shim watches."""
        preload = " ".join(filter(None, [str(self.shim), os.environ.get("LD_PRELOAD")]))
        return {**os.environ, "LD_PRELOAD": preload,
                "KW_POWERLOSS_WATCH": str(self.data.resolve()),
                "KW_POWERLOSS_SHADOW": str(self.shadow.resolve())}

    def settle(self) -> None:
        """Take the files as they are now as durable (the harness's own clean close synced
        them), and start counting syncs afresh."""
        for old in self.shadow.iterdir():
            old.unlink()
        for path in self.data.iterdir():
            if not path.name.endswith("-shm"):
                shutil.copy2(path, self.shadow / path.name)

    def syncs(self) -> Counter[str]:
        """How many syncs of each file the shim saw since :meth:`settle`."""
        counts = self.shadow / ".syncs"
        return Counter(counts.read_text().split()) if counts.exists() else Counter()

    def power_loss(self) -> None:
        """Every file back to what its last sync made durable."""
        for path in self.data.iterdir():
            path.unlink()
        for path in self.shadow.iterdir():
            if not path.name.startswith("."):
                shutil.copy2(path, self.data / path.name)

    def wipe(self) -> None:
        for directory in (self.data, self.shadow):
            for path in directory.iterdir():
                path.unlink()


@dataclass
class Flushes:
    """The flushes a writer confirmed, in the order it confirmed them."""

    order: list[tuple[str, int]] = field(default_factory=list)

    def take(self, lines: str) -> None:
        for line in lines.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in RUNS:
                self.order.append((parts[0], int(parts[1])))


async def steps_present(url: str) -> dict[str, int]:
    """How many steps of ``m`` each run holds."""
    async with engine.connect(url, durability="normal") as tracker:
        present = {}
        for run_id in RUNS:
            try:
                present[run_id] = len((await tracker.read_series(run_id, "m")).steps)
            except RunNotFoundError:
                present[run_id] = 0
        return present


def lost_out_of_order(flushes: Flushes, present: dict[str, int]) -> list[str]:
    """Each confirmed flush that is gone while a later one is kept: on ``normal`` only the
    last commits may be lost, never one before a kept one."""
    kept = [present.get(run_id, 0) > step for run_id, step in flushes.order]
    last_kept = max((i for i, k in enumerate(kept) if k), default=0)
    return [f"run {run_id}: step {step} was lost, though a flush confirmed after it was kept"
            for (run_id, step), k in zip(flushes.order[:last_kept], kept[:last_kept],
                                          strict=True) if not k]


def kittiwake_check(url: str) -> list[str]:
    """``kittiwake check`` on the database, as a user runs it: what it said when it exits
    non-zero."""
    command = Path(sys.executable).with_name("kittiwake")
    done = subprocess.run([str(command), "--db", url, "check"], capture_output=True,
                          text=True, timeout=600)
    if done.returncode == 0:
        return []
    return [f"kittiwake check exited {done.returncode}: {(done.stdout + done.stderr)[-500:]}"]


def _trial(disk: Disk, durability: str, ledger: Ledger, rng: random.Random,
           seed: int) -> tuple[list[str], Counter[str]]:
    disk.settle()
    output = _kill_child([WRITER, disk.database, durability, str(seed)], rng, longest=LONGEST,
                         env=disk.env())
    syncs = disk.syncs()
    disk.power_loss()
    flushes = Flushes()
    flushes.take(output)
    broken: list[str] = []
    if durability == "full":
        if flushes.order and not syncs[DATABASE + "-wal"]:
            broken.append("flushes were confirmed, yet the shim saw no sync of the WAL")
        ledger.take(output)
    else:
        present = asyncio.run(steps_present(disk.database))
        broken += lost_out_of_order(flushes, present)
        broken += kittiwake_check(disk.database)
        broken += [f"run {run_id}: step {last} was there before the trial began, then lost"
                   for run_id, last in ledger.flushed.items() if present[run_id] <= last]
        # What survived is what the next trials must keep (it is durable now: the checks
        # closed the database cleanly, and the next trial starts from it).
        ledger.flushed = {run_id: count - 1 for run_id, count in present.items() if count}
    broken += asyncio.run(verify(disk.database, ledger))
    return broken, syncs


def sqlite_power_loss(trials: int, rng: random.Random, workdir: Path) -> tuple[
        list[str], Counter[str]]:
    """``trials`` power losses of a SQLite writer, half on ``full``, half on ``normal``: the
    violations (each prefixed with its seed) and the syncs the shim saw."""
    shim = build_shim(workdir)
    violations: list[str] = []
    syncs: Counter[str] = Counter()
    for durability in ("full", "normal"):
        share = (trials + 1) // 2 if durability == "full" else trials // 2
        disk = Disk.make(workdir / durability, shim)
        ledger = Ledger()
        for trial in range(share):
            if trial % TRIALS_PER_DATABASE == 0:
                disk.wipe()
                ledger = Ledger()
            seed = rng.randrange(2**32)
            try:
                broken, seen = _trial(disk, durability, ledger, rng, seed)
                syncs += seen
            except Exception as exc:  # a trial that cannot even be checked is a violation
                broken = [_failure(exc)]
            violations += [f"seed {seed} ({durability}): {line}" for line in broken]
    return violations, syncs

