"""``kittiwake ui``: a local database with the dashboard, on a free loopback port."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

import engine
from engine._cli.main import main


def test_a_missing_database_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    assert main(["ui", str(tmp_path / "nothing.db"), "--no-browser"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no database at" in err
    assert not (tmp_path / "nothing.db").exists()


@pytest.mark.timeout(60)
def test_ui_serves_the_dashboard_and_the_api_on_loopback(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.db")

    async def seed() -> None:
        async with engine.connect(db, project="team/x") as tracker, \
                tracker.start_run("r1") as run:
            run.log_metrics({"loss": 0.5}, step=0)

    anyio.run(seed)
    kittiwake = str(Path(sys.executable).with_name("kittiwake"))
    process = subprocess.Popen([kittiwake, "ui", db, "--no-browser"], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert found, line
        assert int(found.group(1)) > 0
        with httpx.Client(base_url=found.group(0), timeout=10) as client:
            page = client.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert '<script type="module" src="js/main.js">' in page.text
            uplot = client.get("/vendor/uplot/uPlot.esm.js")
            assert uplot.status_code == 200
            assert "javascript" in uplot.headers["content-type"]
            assert client.get("/vendor/uplot/LICENSE").status_code == 200
            assert client.get("/api/v1/projects").json() == {"projects": {"team/x": 1}}
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        if process.stdout is not None:  # closed even when the test failed: no fd left over
            process.stdout.close()
    assert code == 130  # stopped as Ctrl+C stops any command
