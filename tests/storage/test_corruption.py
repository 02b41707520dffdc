"""A damaged SQLite file is never served as if it were whole: a page that no longer makes
sense is an ``IntegrityError`` naming the file, and ``check`` says what is damaged; a WAL cut
short on reopen loses only the commits it no longer holds, whole, and leaves a database that
checks clean."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import engine
from engine._cli.main import main
from engine.errors import EngineError, IntegrityError


def logged(path: Path) -> None:
    with engine.sync.connect(str(path), durability="normal") as tracker:
        for r in range(4):
            with tracker.start_run(f"r{r}", config={"lr": 0.1 * r}) as run:
                for step in range(2_000):
                    run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 2_000}, step=step)


def page_size(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA page_size").fetchone()[0])


def test_a_damaged_page_is_named_by_check_and_never_read_as_data(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "runs.db"
    logged(path)
    size = page_size(path)
    pages = path.stat().st_size // size
    with open(path, "r+b") as file:  # scribble over every page of the file's second quarter
        for page in range(pages // 4, pages // 2):
            file.seek(page * size + 100)
            file.write(b"\xa5" * (size - 200))
    code = main(["--db", str(path), "check"])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert f"database: {path}:" in out
    failures = []
    with engine.sync.connect(str(path)) as tracker:
        for r in range(4):
            try:
                tracker.read_series(f"r{r}", "loss")
                tracker.get_run(f"r{r}")
            except EngineError as exc:
                failures.append(exc)
        with pytest.raises(EngineError):
            list(tracker.events())
    assert failures
    damaged = [e for e in failures if isinstance(e, IntegrityError)]
    assert damaged
    assert all(e.where == str(path) for e in damaged)


WRITER = textwrap.dedent("""
    import os, signal, sys
    import engine
    with engine.sync.connect(sys.argv[1], durability="full") as tracker:
        with tracker.start_run("r") as run:
            for step in range(300):
                run.log_metrics({"m": float(step)}, step=step)
                run.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # before any checkpoint could empty the WAL
""")


def test_a_wal_cut_short_loses_whole_commits_only(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    subprocess.run([sys.executable, "-c", WRITER, str(path)], check=False, timeout=120)
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 0
    for cut in (0.9, 0.5):
        copy = tmp_path / f"cut-{cut}.db"
        shutil.copy(path, copy)
        data = wal.read_bytes()
        Path(f"{copy}-wal").write_bytes(data[: int(len(data) * cut)])
        with engine.sync.connect(str(copy)) as tracker:
            assert tracker.check() == []
            series = tracker.read_series("r", "m")
            steps = [int(s) for s in series.steps]
            assert steps == list(range(len(steps)))  # a prefix of the commits, none torn
            assert list(series.values) == [float(s) for s in steps]
