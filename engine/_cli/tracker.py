"""The tracker a command opens: the database named by ``--db`` (or ``$KITTIWAKE_DB``)."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

from engine._runtime.connect import connect
from engine._runtime.tracker import Tracker

from .errors import CliError

__all__ = ["invoked_as", "open_tracker"]


def open_tracker(args: argparse.Namespace, *, heartbeat_interval: float = 10.0,
                 crash_timeout: float = 120.0) -> Tracker:
    """The tracker for ``--db``; refuses to create a missing database unless the command
    creates one (a typo in ``--db`` should not leave an empty file behind)."""
    url: str = args.db
    if "://" not in url and url != ":memory:" and not getattr(args, "creates", False) \
            and not Path(url).exists():
        raise CliError(f"no database at {url!r}; run `kittiwake demo` or pass --db")
    return connect(url, project=args.project, heartbeat_interval=heartbeat_interval,
                   crash_timeout=crash_timeout)


def invoked_as(args: argparse.Namespace) -> str:
    """The ``kittiwake`` command as the user can type it again: the path it was run by when
    that is not the one on ``PATH`` (``.venv/bin/kittiwake`` before the venv is activated),
    and ``--db`` when the database is not the default one."""
    program = sys.argv[0] if sys.argv and sys.argv[0] else "kittiwake"
    name = os.path.basename(program)
    on_path = shutil.which(name)
    if (os.sep not in program or not name.startswith("kittiwake")
            or (on_path and os.path.samefile(on_path, program))):
        command = "kittiwake"  # run by name, or as `python -m …`
    else:
        command = os.path.relpath(program) if not program.startswith("..") else program
    if args.db != os.environ.get("KITTIWAKE_DB", "kittiwake.db"):
        command += f" --db {shlex.quote(args.db)}"
    return command
