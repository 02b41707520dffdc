"""Who may do what: the caller's access, taken from its bearer token.

Without ``--auth`` every caller has every role on every project (the server then listens on
loopback only). With it, each request's ``Authorization: Bearer <token>`` is looked up by
its hash on every request — so a revocation takes effect at once on every server sharing the
database — and the request may touch only the token's project, within its role: ``read``
reads and subscribes; ``write`` also logs, creates and aborts; ``admin`` also deletes and
manages the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from engine.errors import AuthError

__all__ = ["ROLES", "Access", "Forbidden", "access_of"]

ROLES = ("read", "write", "admin")


class Forbidden(AuthError):
    """A valid token used outside its project or role (answered 403, not 401)."""


@dataclass(frozen=True, slots=True)
class Access:
    """What one request may do: ``project`` None means every project."""

    project: str | None
    role: str

    def allow(self, project: str | None, role: str) -> None:
        """:raises Forbidden: when this access does not reach ``project`` with ``role``."""
        if ROLES.index(self.role) < ROLES.index(role):
            raise Forbidden(f"this token's role is {self.role!r}; this call needs {role!r}")
        if self.project is not None and project != self.project:
            raise Forbidden(f"this token is for project {self.project!r}, not {project!r}")

    def need(self, role: str) -> None:
        """:raises Forbidden: when this access's role is below ``role`` (for calls on the
        database as a whole, which no project owns)."""
        if ROLES.index(self.role) < ROLES.index(role):
            raise Forbidden(f"this token's role is {self.role!r}; this call needs {role!r}")

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


async def access_of(request: Request) -> Access:
    """The caller's access.

    :raises AuthError: when the server wants a token and the request has none that is valid.
    """
    tokens = request.app.state.tokens
    if tokens is None:
        return OPEN
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthError("this server needs a token: send 'Authorization: Bearer <token>' "
                        "(the client reads KITTIWAKE_TOKEN)")
    found: Access | None = await tokens.verify(secret.strip())
    if found is None:
        raise AuthError("the token is not valid: unknown, revoked or expired")
    return found
