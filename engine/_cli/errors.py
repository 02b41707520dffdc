"""The command line's own errors: each is reported as one line and an exit code."""

from __future__ import annotations

__all__ = ["CliError", "UsageError"]


class CliError(Exception):
    """A failure to report as one line."""


class UsageError(CliError):
    """The command line itself is wrong (exit status 2, as argparse uses)."""
