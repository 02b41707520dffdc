"""What a run records about itself: its output (fd level, child processes included, progress
bars in their final form, the last lines before a crash), its environment (``env.<path>`` in
queries), its source, and system metrics — and the defaults of each API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import engine
from engine._runtime.output import SUPPORTED

needs_capture = pytest.mark.skipif(not SUPPORTED, reason="fd capture is POSIX only")


@pytest.fixture
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A training script, ``train.py`` in the test's directory, as the process that runs."""
    path = tmp_path / "train.py"
    path.write_text("print('training')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(path)])
    return path


@needs_capture
async def test_output_is_captured_line_by_line_and_passed_through(tmp_path: Path) -> None:
    async with engine.connect(str(tmp_path / "runs.db")) as tracker:
        async with tracker.start_run("r", capture_output=True, capture_env=False,
                                     capture_source=False):
            os.write(1, b"from python\n")  # pytest's sys.stdout is not fd 1
            await anyio.to_thread.run_sync(lambda: subprocess.run(
                [sys.executable, "-c", "import sys; print('from a child'); "
                 "sys.stderr.write('child error\\n')"], check=True))
            os.write(1, b"step 1\rstep 2\rstep 3\n")
        out = await tracker.read_text("r", "logs/stdout")
        assert out.values == ["from python", "from a child", "step 3"]
        assert out.steps == [0, 1, 2]
        assert (await tracker.read_text("r", "logs/stderr")).values == ["child error"]
        assert (await tracker.read_text("r", "logs/stdout", tail=1)).values == ["step 3"]


@needs_capture
async def test_a_crash_keeps_the_last_lines_before_it_and_a_resume_numbers_on(
        tmp_path: Path) -> None:
    before = os.fstat(1)
    async with engine.connect(str(tmp_path / "runs.db")) as tracker:
        async def crash() -> None:
            async with tracker.start_run("r", capture_output=True):
                os.write(1, b"last words\n")
                raise RuntimeError("diverged")

        with pytest.raises(RuntimeError):
            await crash()
        state = await tracker.get_run("r")
        assert state.status == "failed"
        assert (await tracker.read_text("r", "logs/stdout")).values == ["last words"]
        async with tracker.start_run("r", resume=True, capture_output=True):
            os.write(1, b"again\n")
        out = await tracker.read_text("r", "logs/stdout")
        assert list(zip(out.steps, out.values, strict=True)) == [(0, "last words"), (1, "again")]
    after = os.fstat(1)  # the descriptor is back where it pointed
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


async def test_the_environment_is_recorded_and_queryable(tmp_path: Path) -> None:
    async with engine.connect(str(tmp_path / "runs.db")) as tracker:
        async with tracker.start_run("r", capture_env=True, capture_source=False):
            pass
        async with tracker.start_run("quiet", capture_env=False, capture_source=False):
            pass
        env = (await tracker.get_run("r")).env
        assert env["pid"] == os.getpid()
        assert env["python/version"].startswith(f"{sys.version_info[0]}.")
        assert {"host/name", "os/platform", "python/executable", "command/argv"} <= set(env)
        assert (await tracker.get_run("quiet")).env == {}
        found = await tracker.list_runs(where=f"env.pid = {os.getpid()}")
        assert [r.run_id for r in found] == ["r"]
        found = await tracker.list_runs(where="env.python/version exists")
        assert [r.run_id for r in found] == ["r"]


async def test_source_is_uploaded_with_the_globs_asked_for(tmp_path: Path,
                                                          script: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text("class Model: ...\n")
    (tmp_path / "src" / "notes.txt").write_text("not code\n")
    async with engine.connect(str(tmp_path / "runs.db")) as tracker:
        async with tracker.start_run("r", capture_env=False,
                                     capture_source=["src/**/*.py"]):
            pass
        files = (await tracker.get_run("r")).files
        assert set(files) >= {"source/train.py", "source/src/model.py"}
        assert "source/src/notes.txt" not in files
        assert await tracker.read_file(files["source/train.py"]) == b"print('training')\n"


async def test_system_metrics_are_sampled_without_moving_the_runs_step(tmp_path: Path) -> None:
    async with engine.connect(str(tmp_path / "runs.db")) as tracker:
        async with tracker.start_run("r", system_metrics=True, system_metrics_interval=1,
                                     capture_env=False, capture_source=False) as run:
            await anyio.sleep(1.3)
            await run.flush()
            run.log_metrics({"loss": 1.0})  # the run's own first step is still 0
        state = await tracker.get_run("r")
        assert state.metrics["loss"].last_step == 0
        assert {"system/cpu/percent", "system/memory/process_rss_mib",
                "system/memory/percent"} <= set(state.metrics)
        assert state.metrics["system/cpu/percent"].last_step >= 1
        gpus = await anyio.Path("/proc/driver/nvidia").exists()
        assert gpus or not any(m.startswith("system/gpu/") for m in state.metrics)


@needs_capture
def test_the_blocking_api_captures_output_and_system_metrics_by_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITTIWAKE_CAPTURE", "on")
    with engine.sync.connect(str(tmp_path / "runs.db")) as tracker:
        with tracker.start_run("r", capture_source=False, system_metrics_interval=1):
            os.write(1, b"blocking hello\n")
        state = tracker.get_run("r")
        assert tracker.read_text("r", "logs/stdout").values == ["blocking hello"]
        assert "host/name" in state.env
    monkeypatch.setenv("KITTIWAKE_CAPTURE", "off")
    with engine.sync.connect(str(tmp_path / "runs.db")) as tracker:
        with tracker.start_run("quiet"):
            os.write(1, b"not recorded\n")
        assert len(tracker.read_text("quiet", "logs/stdout")) == 0
        assert tracker.get_run("quiet").env == {}


async def test_capture_options_are_checked(tmp_path: Path) -> None:
    async with engine.connect(str(tmp_path / "runs.db")) as tracker:
        for options, key in (({"capture_output": "yes"}, "capture_output"),
                             ({"capture_source": "src/*.py"}, "capture_source"),
                             ({"capture_source": ["/etc/*"]}, "capture_source"),
                             ({"capture_source": ["../up/*.py"]}, "capture_source"),
                             ({"system_metrics_interval": 0.1}, "system_metrics_interval"),
                             ({"notes": 3}, "notes")):
            with pytest.raises(engine.errors.ValidationError) as caught:
                tracker.start_run("r", **options)  # type: ignore[arg-type]
            assert caught.value.key == key
        assert await tracker.list_runs() == []


@needs_capture
def test_a_tracker_closed_under_a_capturing_run_still_gives_the_descriptors_back(
        tmp_path: Path) -> None:
    before = os.fstat(1)
    tracker = engine.sync.connect(str(tmp_path / "runs.db"))
    tracker.__enter__()
    context = tracker.start_run("r", capture_output=True)
    context.__enter__()
    os.write(1, b"written before the close\n")
    tracker.close()  # the run's block is still open
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    with pytest.raises(engine.errors.ClosedError):
        context.__exit__(None, None, None)
    with engine.sync.connect(str(tmp_path / "runs.db")) as again:
        assert again.get_run("r").status == "running"  # until a reaper marks it crashed
        assert again.read_text("r", "logs/stdout").values == ["written before the close"]


async def test_a_run_is_committed_with_its_environment_and_source(
        tmp_path: Path, script: Path) -> None:
    ticks = iter(range(1_000_000))
    # Each commit reads the clock: events that share a timestamp were committed together.
    async with engine.connect(str(tmp_path / "runs.db"),
                              clock=lambda: 1.7e9 + next(ticks)) as tracker:
        for run_id in ("first", "second"):
            async with tracker.start_run(run_id, capture_env=True, capture_source=True):
                pass
        async with tracker.start_run(None, capture_env=True, capture_source=True) as run:
            run.log_metrics({"loss": 0.5})
        third = run.run_id
        events = [e async for e in tracker.events()]
        for run_id in ("second", third):
            # Everything a run records about itself at its start commits with its creation
            # (a run with a given id is created first, by a commit of its own).
            mine = [e for e in events if e.run_id == run_id]
            types = [e.type for e in mine]
            assert {"EnvCaptured", "FilesUploaded"} <= set(types)
            created = next(e for e in mine if e.type == "RunCreated")
            first_log = mine[types.index("EnvCaptured")]
            together = [e.type for e in mine if e.timestamp == first_log.timestamp]
            assert {"EnvCaptured", "FilesUploaded"} <= set(together)
            if run_id == third:
                assert together == types  # created, captured, logged and ended at once
            else:
                assert created.timestamp != first_log.timestamp
        refs = {e.run_id: e.data["files"]["source/train.py"]["digest"] for e in events
                if e.type == "FilesUploaded"}
        assert len(refs) == 3
        assert len(set(refs.values())) == 1


async def test_the_source_is_the_one_the_process_first_read_in_every_database(
        tmp_path: Path, script: Path) -> None:
    async with engine.connect(str(tmp_path / "a.db")) as tracker:
        async with tracker.start_run("r1", capture_env=False, capture_source=True):
            pass
        await anyio.Path(script).write_text("print('edited while the process ran')\n")
        async with tracker.start_run("r2", capture_env=False, capture_source=True):
            pass
        for run_id in ("r1", "r2"):
            ref = (await tracker.get_run(run_id)).files["source/train.py"]
            assert await tracker.read_file(ref) == b"print('training')\n"
        # Named by events, the bytes stay however young they are.
        assert (await tracker.gc(grace=0)).removed == 0
    # A database the process opens later gets the same bytes stored in it too.
    async with engine.connect(str(tmp_path / "b.db"), blobs=tmp_path / "blobs") as tracker:
        async with tracker.start_run("r3", capture_env=False, capture_source=True):
            pass
        ref = (await tracker.get_run("r3")).files["source/train.py"]
        assert await tracker.read_file(ref) == b"print('training')\n"


async def test_a_source_capture_that_fails_warns_and_leaves_the_run_alone(
        tmp_path: Path, script: Path) -> None:
    async with engine.connect(str(tmp_path / "runs.db")) as tracker:
        for run_id in ("before", "after"):
            async with tracker.start_run(run_id, capture_env=False,
                                         capture_source=False) as run:
                run.log_files({"source/train.py": b"a file series, not an attribute"}, step=0)
        # Recorded from the background (the process reads its source for the first time)...
        with pytest.warns(UserWarning, match="run 'before': a capture failed.*holds a file"):
            async with tracker.start_run("before", resume=True, capture_env=False,
                                         capture_source=True) as run:
                run.log_metrics({"loss": 1.0})
        async with tracker.start_run("known", capture_env=False, capture_source=True):
            pass  # the source is read and stored now: the next run records it at its start
        # ...and at the start, once the source is known.
        with pytest.warns(UserWarning, match="run 'after': a capture failed.*holds a file"):
            async with tracker.start_run("after", resume=True, capture_env=False,
                                         capture_source=True) as run:
                run.log_metrics({"loss": 1.0})
        for run_id in ("before", "after"):
            state = await tracker.get_run(run_id)
            assert state.status == "succeeded"
            assert state.files == {}
            assert "loss" in state.metrics
        assert "source/train.py" in (await tracker.get_run("known")).files
