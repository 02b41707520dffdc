"""A SQLite database on a small file system of its own (a tmpfs) that fills up under a live
tracker: flushes raise ``StorageError`` while it cannot be written, nothing accepted is
dropped, and once there is room again everything is written exactly once. And a database that
cannot be opened — a directory, a missing directory, a file that is not a database, a
read-only file system — is a ``StorageError`` that names the file.

Mounting needs root (the tests run as root in CI); under ``CI`` a mount that fails is a test
failure, elsewhere a skip.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine.errors import StorageError

QUIET = {"durability": "full", "heartbeat_interval": 60.0, "crash_timeout": 600.0}


def _mount(where: Path, options: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = f"cannot mount a tmpfs at {where}: {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """An empty 16 MiB file system of its own, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    _mount(where, "size=16m,mode=0755")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system has no room left."""
    block = b"\0" * 65_536
    with open(path, "wb", buffering=0) as ballast:
        while True:
            try:
                ballast.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        while len(block) > 1:  # the last few kilobytes too
            block = block[: len(block) // 2]
            try:
                ballast.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise


async def _log(run: engine.Run, steps: range) -> None:
    for step in steps:
        run.log_metrics({"loss": step * 0.5, "acc": 1.0 / (step + 1)}, step=step)


async def test_a_full_disk_keeps_every_point_and_writes_them_once_there_is_room(
        disk: Path) -> None:
    url = str(disk / "runs.db")
    ballast = disk / "ballast"
    failures: list[StorageError] = []
    async with engine.connect(url, **QUIET) as tracker:
        async with tracker.start_run("r", config={"lr": 0.1}) as run:
            await _log(run, range(1_000))
            await run.flush()
            _fill(ballast)
            step = 1_000
            while len(failures) < 3:  # the disk is full: every flush says so
                await _log(run, range(step, step + 5_000))
                step += 5_000
                run.add_tags(f"during-{len(failures)}")
                try:
                    await run.flush()
                except StorageError as exc:
                    failures.append(exc)
                if step > 200_000:
                    raise AssertionError("the disk never filled up")
            ballast.unlink()
            await _log(run, range(step, step + 1_000))
            step += 1_000
            await run.flush()  # room again: everything kept is written now
        state = await tracker.get_run("r")
        assert state.status == "succeeded"
        assert state.metrics["loss"].count == step
        assert {"during-0", "during-1", "during-2"} <= state.tags
        series = await tracker.read_series("r", "loss")
        assert list(series.steps) == list(range(step))
        events = [e async for e in tracker.events()]
        assert len({e.id for e in events}) == len(events)
        store = tracker._store
        assert store is not None
        assert await store.verify_rebuild() == []
    for failure in failures:
        assert isinstance(failure.__cause__, sqlite3.Error)
        assert "full" in str(failure)
        assert "runs.db" in str(failure)
    async with engine.connect(url, **QUIET) as tracker:  # and it is all on disk
        series = await tracker.read_series("r", "loss")
        assert list(series.steps) == list(range(step))
    with sqlite3.connect(url) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def _open(url: str) -> None:
    async with engine.connect(url, **QUIET) as tracker, tracker.start_run("s"):
        pass


def _remount(where: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(where)], check=True,
                   capture_output=True)


@pytest.mark.parametrize("kind", ["directory", "missing directory", "not a database"])
async def test_a_database_that_cannot_be_opened_is_a_storage_error_naming_it(
        tmp_path: Path, kind: str) -> None:
    path = tmp_path / "runs.db"
    if kind == "directory":
        path.mkdir()
    elif kind == "missing directory":
        path = tmp_path / "nowhere" / "runs.db"
    else:
        path.write_text("these are not the pages of a database\n" * 1_000)
    with pytest.raises(StorageError, match=r"runs\.db"):
        await _open(str(path))


async def test_a_read_only_file_system_is_a_storage_error_naming_the_file(disk: Path) -> None:
    url = str(disk / "runs.db")
    async with engine.connect(url, **QUIET) as tracker, tracker.start_run("r") as run:
        run.log_metrics({"loss": 1.0}, step=0)
    _remount(disk, "ro")
    try:
        with pytest.raises(StorageError, match=r"runs\.db") as caught:
            await _open(url)
        assert isinstance(caught.value.__cause__, sqlite3.Error)
    finally:
        _remount(disk, "rw")


READ_ONLY_USER = textwrap.dedent("""
    import sys
    import engine
    from engine.errors import StorageError
    try:
        with engine.sync.connect(sys.argv[1]) as tracker, tracker.start_run("s") as run:
            run.log_metrics({"loss": 2.0}, step=0)
    except StorageError as exc:
        print("StorageError:", exc)
        sys.exit(3)
""")


def test_a_read_only_database_file_is_a_storage_error_naming_it(tmp_path: Path) -> None:
    """A database file its user may read but not write (the child runs without the
    capabilities by which root writes any file): opening it to log says so, names the file,
    and changes nothing; once it may be written, it is."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to drop its file capabilities in a child")
    url = str(tmp_path / "runs.db")
    with engine.sync.connect(url, durability="full") as tracker, tracker.start_run("r") as run:
        run.log_metrics({"loss": 1.0}, step=0)
    os.chmod(url, 0o444)
    before = Path(url).read_bytes()

    def child() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
             sys.executable, "-c", READ_ONLY_USER, url],
            capture_output=True, text=True, timeout=120, check=False)

    done = child()
    assert done.returncode == 3, done.stdout + done.stderr
    assert "runs.db" in done.stdout
    assert Path(url).read_bytes() == before
    for path in tmp_path.glob("runs.db*"):  # SQLite made its -wal and -shm as read-only
        os.chmod(path, 0o644)
    done = child()
    assert done.returncode == 0, done.stdout + done.stderr
    with engine.sync.connect(url) as tracker:
        assert tracker.get_run("s").metrics["loss"].last == 2.0
        assert tracker.get_run("r").metrics["loss"].last == 1.0
