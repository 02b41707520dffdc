"""Tokens in the database, the SQL every backend shares: one table, ``tokens``, holding
hashes only (``TokenRow``). Reads run on the store's reader; writes go through the backend's
``write_rows``, so a revocation is one committed row that every server sharing the database
sees on its next request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .contract import TokenRow
from .session import Session

__all__ = ["INSERT", "REVOKE", "find", "listed", "values"]

_COLUMNS = "id, project, role, digest, created_at, expires_at, revoked_at"
INSERT = f"INSERT INTO tokens ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
REVOKE = "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"

TABLE = """CREATE TABLE tokens (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE, created_at {real} NOT NULL, expires_at {real},
    revoked_at {real})"""


def values(token: TokenRow) -> tuple[Any, ...]:
    return (token.id, token.project, token.role, token.digest, token.created_at,
            token.expires_at, token.revoked_at)


def _row(row: Sequence[Any]) -> TokenRow:
    return TokenRow(*row)


async def listed(session: Session, project: str | None) -> list[TokenRow]:
    if project is None:
        rows = await session.fetch(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at, id")
    else:
        rows = await session.fetch(f"SELECT {_COLUMNS} FROM tokens WHERE project = ? "
                                   "ORDER BY created_at, id", (project,))
    return [_row(r) for r in rows]


async def find(session: Session, column: str, value: str) -> TokenRow | None:
    assert column in ("id", "digest")
    rows = await session.fetch(f"SELECT {_COLUMNS} FROM tokens WHERE {column} = ?", (value,))
    return _row(rows[0]) if rows else None
