"""The tracker a command opens: the database named by ``--db`` (or ``$KITTIWAKE_DB``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine._runtime.tracker import Tracker, connect

from .errors import CliError

__all__ = ["open_tracker"]


def open_tracker(args: argparse.Namespace, **settings: Any) -> Tracker:
    """The tracker for ``--db``; refuses to create a missing database unless the command
    creates one (a typo in ``--db`` should not leave an empty file behind)."""
    url: str = args.db
    if "://" not in url and url != ":memory:" and not getattr(args, "creates", False) \
            and not Path(url).exists():
        raise CliError(f"no database at {url!r}; run `kittiwake demo` or pass --db")
    return connect(url, project=args.project, **settings)
