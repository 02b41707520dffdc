"""``kittiwake serve`` stopped as any command is stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port


@pytest.mark.timeout(90)
@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_ends_serve_with_130(tmp_path: Path, workers: int) -> None:
    """uvicorn swallows the KeyboardInterrupt of a Ctrl+C it shut down for (and its
    supervisor of several workers never raises one): the command exited 0, as if it had
    finished its work, and a script waiting for it could not tell."""
    port = free_port()
    kittiwake = str(Path(sys.executable).with_name("kittiwake"))
    process = subprocess.Popen(
        [kittiwake, "--db", str(tmp_path / "runs.db"), "serve", "--port", str(port),
         "--workers", str(workers)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/api/v1/health",
                                 timeout=1).status_code == 200
                break
            except httpx.TransportError:
                assert process.poll() is None, "the server ended before it served"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(30)
        finally:
            process.kill()  # not left behind when it did not stop
            process.wait()
    assert code == 130  # stopped as Ctrl+C stops any command
