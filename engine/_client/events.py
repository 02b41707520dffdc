"""A doorbell on a server's event stream: a call for each new event of some types.

A worker attached to a server learns of new jobs from the project's server-sent events
(``GET /api/v1/projects/{project}/events?from=live``), pushed by the server as they commit,
rather than by asking for the queue over and over. The stream only says *that* something
happened; the caller looks for itself, so an event missed while the connection was down costs
nothing: each (re)connection rings once, after the server began streaming, and whatever was
enqueued before that is found by the look it triggers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from urllib.parse import quote

import anyio
import httpx
import orjson
from httpx_sse import aconnect_sse

from engine.errors import EngineError

from . import protocol as p

__all__ = ["ring_on_events"]

_RECONNECT = 1.0  # seconds before a new connection after the stream ended (the server's hint)
# Read timeout: an idle stream carries a keep-alive comment every 15 s; past this, the
# connection is taken for dead and made again.
_TIMEOUT = httpx.Timeout(10.0, read=60.0)


async def ring_on_events(url: str, project: str, *, token: str | None, types: Sequence[str],
                         ring: Callable[[], None]) -> None:
    """Call ``ring()`` once each time the stream (re)connects and once for each event of
    ``types`` in ``project`` that the server at ``url`` commits; until cancelled. A server
    that is down or restarting is connected to again.

    :raises AuthError: when the token (``token``, else ``$KITTIWAKE_TOKEN``) may not read the
        project; another typed error for a refusal that connecting again cannot change.
    """
    token = token or os.environ.get("KITTIWAKE_TOKEN") or None
    headers = {"authorization": f"Bearer {token}"} if token else {}
    path = f"{url.rstrip('/')}/api/v1/projects/{quote(project, safe='')}/events"
    params = [("from", "live"), *(("types", t) for t in types)]
    async with httpx.AsyncClient(headers=headers, timeout=_TIMEOUT) as client:
        while True:
            try:
                async with aconnect_sse(client, "GET", path, params=params) as source:
                    response = source.response
                    if response.status_code < 400:
                        ring()  # streaming from here: what came before is found by looking
                        async for _ in source.aiter_sse():
                            ring()
                    elif response.status_code < 500:  # a refusal: asking again won't help
                        await response.aread()
                        raise _refusal(response)
            except httpx.TransportError:
                pass  # down or restarting: connect again
            await anyio.sleep(_RECONNECT)


def _refusal(response: httpx.Response) -> EngineError:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    return p.error_from(body, response.status_code)
