"""Runs-table commands: ``runs list`` and ``diff`` (the query language's side of the CLI)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def add_commands(commands: Any, runs: Any) -> None:
    """Register the runs-table commands on the top-level and ``runs`` sub-parsers."""
    del commands, runs  # registered by the query-language work (issue 4)


def _unused(args: argparse.Namespace) -> None:  # pragma: no cover
    del args
