"""Access tokens: made, checked, revoked — and who may do what with one.

A token is ``kw_`` and 43 random URL-safe characters (256 bits). The database keeps only its
SHA-256; a request's token is hashed and looked up on every request, so a revocation takes
effect at once on every server sharing the database, and the stored digest is compared with
``hmac.compare_digest`` (constant time). Each token belongs to one project and has one role:
``read`` reads and subscribes; ``write`` also logs, creates and aborts; ``admin`` also
deletes and manages tokens and the database.

Nothing here needs the server's web framework: the command line makes tokens with it too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from engine._core.validate import check_project
from engine._storage.contract import Store, TokenRow
from engine.errors import AuthError, ValidationError

__all__ = ["OPEN", "ROLES", "Access", "Forbidden", "Tokens", "create", "digest_of",
           "parse_duration"]

ROLES = ("read", "write", "admin")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+)([smhdw])")


class Forbidden(AuthError):
    """A valid token used outside its project or role (answered 403, not 401)."""


@dataclass(frozen=True, slots=True)
class Access:
    """What one request may do: ``project`` None means every project (a server without
    auth)."""

    project: str | None
    role: str

    def need(self, role: str) -> None:
        """:raises Forbidden: when this access's role is below ``role``."""
        if ROLES.index(self.role) < ROLES.index(role):
            raise Forbidden(f"this token's role is {self.role!r}; this call needs {role!r}")

    def allow(self, project: str | None, role: str) -> None:
        """:raises Forbidden: when this access does not reach ``project`` with ``role``."""
        self.need(role)
        if self.project is not None and project != self.project:
            raise Forbidden(f"this token is for project {self.project!r}, not {project!r}")

    def scope(self, project: str | None) -> str | None:
        """The project a read across the log is limited to: the token's, when it has one.

        :raises Forbidden: when the read names another project.
        """
        if self.project is None:
            return project
        if project is not None and project != self.project:
            raise Forbidden(f"this token is for project {self.project!r}, not {project!r}")
        return self.project


OPEN = Access(None, "admin")


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``45m``, ``90s``, ``2w`` as seconds.

    :raises ValidationError: for anything else.
    """
    found = _DURATION.fullmatch(text.strip())
    if found is None or int(found.group(1)) == 0:
        raise ValidationError(f"a duration is a positive number and a unit (s, m, h, d, w), "
                              f"such as 30d; not {text!r}", key="expires")
    return int(found.group(1)) * _UNITS[found.group(2)]


async def create(store: Store, project: str, role: str, *, expires_in: float | None = None,
                 now: float | None = None) -> tuple[TokenRow, str]:
    """Make a token and store its hash; returns the row and the secret (shown once).

    :raises ValidationError: for a bad project, role or lifetime.
    """
    project = check_project(project)
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}, not {role!r}",
                              key="role")
    if expires_in is not None and not expires_in > 0:
        raise ValidationError("a token's lifetime must be positive", key="expires")
    now = time.time() if now is None else now
    secret = "kw_" + secrets.token_urlsafe(32)
    row = TokenRow(id="tok_" + secrets.token_hex(6), project=project, role=role,
                   digest=digest_of(secret), created_at=now,
                   expires_at=None if expires_in is None else now + expires_in,
                   revoked_at=None)
    await store.save_token(row)
    return row, secret


class Tokens:
    """Checks bearer tokens against the database, on every request."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def verify(self, secret: str) -> Access | None:
        """The access ``secret`` grants now; None for an unknown, revoked or expired one."""
        digest = digest_of(secret)
        row = await self.store.find_token(digest)
        if row is None or not hmac.compare_digest(row.digest, digest):
            return None
        now = time.time()
        if row.revoked_at is not None and row.revoked_at <= now:
            return None
        if row.expires_at is not None and row.expires_at <= now:
            return None
        return Access(row.project, row.role)
