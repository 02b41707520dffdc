"""Power loss, simulated (``bench/powerloss.py``): ``durability="full"`` keeps every flushed
point, ``"normal"`` opens consistent with a prefix of them. The full run, hundreds of trials,
is ``make torture``; here a few, and proof that the simulated disk does lose what was not
synced — a simulation that lost nothing would pass any database."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import powerloss

# Rows committed one by one, each printed once its COMMIT returned.
INSERTER = textwrap.dedent("""
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    db.execute(f"PRAGMA synchronous = {sys.argv[2]}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY)")
    for n in range(200):
        db.execute("INSERT INTO t VALUES (?)", (n,))
        print(n, flush=True)
    sys.stdout.close()
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)  # power goes before any checkpoint or close
""")


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        if os.environ.get("CI"):
            pytest.fail("simulating power loss needs gcc, which CI must have")
        pytest.skip("no C compiler to build the power-loss library with")
    return powerloss.build_shim(tmp_path_factory.mktemp("shim"))


def _inserted(disk: powerloss.Disk, synchronous: str) -> tuple[int, int]:
    """Rows a child committed before the power went, and rows left after."""
    disk.settle()
    child = subprocess.run([sys.executable, "-c", INSERTER, disk.database, synchronous],
                           env=disk.env(), capture_output=True, text=True, timeout=120)
    committed = len(child.stdout.split())
    disk.power_loss()
    if not Path(disk.database).exists():
        return committed, 0
    with sqlite3.connect(disk.database) as db:
        (left,) = db.execute("SELECT count(*) FROM t").fetchone()
    return committed, left


def test_the_simulated_disk_keeps_what_was_synced_and_loses_the_rest(
        shim: Path, tmp_path: Path) -> None:
    full = powerloss.Disk.make(tmp_path / "full", shim)
    assert _inserted(full, "FULL") == (200, 200)
    # The shim was in the path of SQLite's syncs: one of the WAL per commit at least.
    assert full.syncs()[powerloss.DATABASE + "-wal"] >= 200
    off = powerloss.Disk.make(tmp_path / "off", shim)
    assert _inserted(off, "OFF") == (200, 0)  # nothing synced: the file itself is gone
    assert not off.syncs()
    assert not Path(off.database).exists()


def test_a_later_flush_kept_after_an_earlier_one_lost_is_a_violation() -> None:
    flushes = powerloss.Flushes([("victim-0", 9), ("victim-1", 4), ("victim-0", 19)])
    assert powerloss.lost_out_of_order(flushes, {"victim-0": 20, "victim-1": 5}) == []
    assert powerloss.lost_out_of_order(flushes, {"victim-0": 10, "victim-1": 0}) == []
    assert powerloss.lost_out_of_order(flushes, {"victim-0": 0, "victim-1": 0}) == []
    assert powerloss.lost_out_of_order(flushes, {"victim-0": 20, "victim-1": 0}) == [
        "run victim-1: step 4 was lost, though a flush confirmed after it was kept"]


@pytest.mark.slow
def test_a_few_power_losses_on_each_durability_keep_the_promise(
        shim: Path, tmp_path: Path) -> None:
    violations, syncs = powerloss.sqlite_power_loss(4, random.Random(), tmp_path)
    assert violations == []
    assert syncs[powerloss.DATABASE + "-wal"] > 0
