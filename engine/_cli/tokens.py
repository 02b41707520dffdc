"""``kittiwake tokens create|list|revoke``: the server's access tokens, kept in the database.

Run against the database itself (``--db postgresql://…``), or against a server with an admin
token (``--db https://…`` and ``KITTIWAKE_TOKEN``). ``create`` prints the new token alone on
its last line, once: only its hash is stored.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from engine._runtime.serving import backing_store
from engine._server.tokens import ROLES, create, parse_duration

from .display import emit
from .errors import CliError
from .escape import safe_lines
from .tracker import open_tracker

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    tokens = commands.add_parser(
        "tokens", help="access tokens for a server with --auth").add_subparsers(
        dest="tokens_command", required=True, metavar="TOKENS_COMMAND")
    made = tokens.add_parser("create", help="make a token for one project and role; it is "
                             "printed once, on the last line")
    _where(made)
    made.add_argument("--role", required=True, choices=ROLES)
    made.add_argument("--expires", metavar="DURATION",
                      help="lifetime such as 30d, 12h, 2w (default: never)")
    made.set_defaults(handler=_create)
    listed = tokens.add_parser("list", help="one line per token: id, project, role, created, "
                               "expiry; never the secret")
    _where(listed)
    listed.add_argument("--all", action="store_true", help="every project's tokens")
    listed.set_defaults(handler=_list)
    revoke = tokens.add_parser("revoke", help="revoke a token, at once on every server")
    _where(revoke)
    revoke.add_argument("token_id", metavar="ID")
    revoke.set_defaults(handler=_revoke)


def _where(parser: argparse.ArgumentParser) -> None:
    # Also after the sub-command (``tokens create --db … --project …``), as users type it.
    parser.add_argument("--db", default=argparse.SUPPRESS, help="database or server URL")
    parser.add_argument("--project", default=argparse.SUPPRESS, help="the token's project")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _create(args: argparse.Namespace) -> int:
    expires = None if args.expires is None else parse_duration(args.expires)
    async with open_tracker(args) as tracker:
        row, secret = await create(backing_store(tracker), args.project, args.role,
                                   expires_in=expires)
    emit(safe_lines(f"token {row.id} for project {row.project!r}, role {row.role}, expires "
                    f"{_when(row.expires_at)}; it is shown this once:"))
    emit(secret)
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        rows = await backing_store(tracker).list_tokens(None if args.all else args.project)
    now = time.time()
    for row in rows:
        state = ""
        if row.revoked_at is not None:
            state = f"  revoked {_when(row.revoked_at)}"
        elif row.expires_at is not None and row.expires_at <= now:
            state = "  expired"
        emit(safe_lines(f"{row.id}  {row.project}  {row.role}  created "
                        f"{_when(row.created_at)}  expires {_when(row.expires_at)}{state}"))
    return 0


async def _revoke(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        row = await backing_store(tracker).revoke_token(args.token_id, time.time())
    if row is None:
        raise CliError(f"no token {args.token_id!r}")
    emit(f"revoked {row.id} (project {row.project!r}, role {row.role})")
    return 0
