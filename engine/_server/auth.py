"""Who may do what: the caller's access, taken from its bearer token.

Without ``--auth`` every caller has every role on every project (the server then listens on
loopback only). With it, each request's ``Authorization: Bearer <token>`` is checked by
``tokens`` on every request, and the request may touch only the token's project, within its
role.
"""

from __future__ import annotations

from starlette.requests import Request

from engine.errors import AuthError

from .tokens import OPEN, Access

__all__ = ["access_of"]

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
