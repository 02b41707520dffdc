"""Who may do what: the caller's access, taken from its bearer token.

Without ``--auth`` every caller has every role on every project (the server then listens on
loopback only). With it, each request's ``Authorization: Bearer <token>`` is checked by
``tokens`` on every request, and the request may touch only the token's project, within its
role. The dashboard sends the same token in a cookie its sign-in sets (``dashboard``).
"""

from __future__ import annotations

from starlette.requests import Request

from engine.errors import AuthError

from .tokens import OPEN, Access

__all__ = ["SESSION_COOKIE", "access_of"]

SESSION_COOKIE = "kittiwake_token"
"""The cookie the dashboard's sign-in sets: the browser's EventSource cannot send headers.
It is HttpOnly (scripts cannot read it) and SameSite=Strict (no other site's page can make
the browser send it), so it is as good as the header for the pages' requests."""

async def access_of(request: Request) -> Access:
    """The caller's access.

    :raises AuthError: when the server wants a token and the request has none that is valid.
    """
    tokens = request.app.state.tokens
    if tokens is None:
        return OPEN
    header = request.headers.get("authorization", "")
    if not header and SESSION_COOKIE in request.cookies:  # the dashboard, signed in
        header = "Bearer " + request.cookies[SESSION_COOKIE]
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthError("this server needs a token: send 'Authorization: Bearer <token>' "
                        "(the client reads KITTIWAKE_TOKEN)")
    found: Access | None = await tokens.verify(secret.strip())
    if found is None:
        raise AuthError("the token is not valid: unknown, revoked or expired")
    return found
