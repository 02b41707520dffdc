"""One job's process: started in a process group of its own, its output kept line by line,
stopped with SIGTERM then SIGKILL.

Output lines go to the run's text series ``logs/stdout`` and ``logs/stderr`` (step = line
number from 0), as the run's own output capture records them; a line rewritten with carriage
returns (a progress bar) is kept in its final form.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process

__all__ = ["Lines", "describe_exit", "job_environment", "kill_group", "pump", "start",
           "stop_group"]

Lines = Callable[[str, int, str], None]
"""Takes (series key, line number, line) for each line of output."""


async def start(command: list[str], env: Mapping[str, str], cwd: str | None) -> Process:
    """Start ``command`` in a new session (its own process group), output piped.

    :raises OSError: when it cannot be started (no such program, a bad ``cwd``).
    """
    return await anyio.open_process(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=dict(env), cwd=cwd,
                                    start_new_session=True)


async def pump(stream: ByteReceiveStream | None, key: str, lines: Lines) -> None:
    """Read ``stream`` to its end, handing each complete line (and a last unterminated one)
    to ``lines``."""
    if stream is None:
        return
    pending = b""
    number = 0
    async for chunk in stream:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            lines(key, number, _final(raw))
            number += 1
    if pending:
        lines(key, number, _final(pending))


def _final(raw: bytes) -> str:
    """A line as the terminal last showed it: the text after its last carriage return."""
    text = raw.rstrip(b"\r").rsplit(b"\r", 1)[-1]
    return text.decode("utf-8", errors="replace")


def kill_group(process: Process, sig: signal.Signals) -> None:
    """Send ``sig`` to the process's group (it leads one); nothing if it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def stop_group(process: Process, grace: float) -> None:
    """SIGTERM to the group, then SIGKILL if the process has not exited within ``grace``
    seconds."""
    kill_group(process, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
        return
    kill_group(process, signal.SIGKILL)


def describe_exit(code: int) -> str:
    """``exit code N``, or ``killed by SIGKILL`` for a process ended by a signal."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def job_environment(base: Mapping[str, str], extra: Mapping[str, str],
                    attach: Mapping[str, str]) -> dict[str, Any]:
    """The job's environment: the worker's, the job's own variables, then the ones that
    attach the script to its run (which win)."""
    return {**base, **extra, **attach}

