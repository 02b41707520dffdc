"""Reading server-sent events in tests: a small parser over httpx's streamed lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from engine._core import wire


@dataclass
class Frame:
    """One SSE message: an event (with ``id``), or only comments and a retry hint."""

    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    @property
    def payload(self) -> Any:
        return wire.loads("\n".join(self.data), arrays=False)


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    frame = Frame()
    async for line in response.aiter_lines():
        if line == "":
            if frame.data or frame.comments or frame.retry is not None:
                yield frame
            frame = Frame()
        elif line.startswith(":"):
            frame.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "id":
                frame.id = value
            elif name == "event":
                frame.event = value
            elif name == "data":
                frame.data.append(value)
            elif name == "retry":
                frame.retry = int(value)
    if frame.data or frame.comments or frame.retry is not None:
        yield frame


async def events(response: httpx.Response | AsyncIterator[Frame], count: int) -> list[Frame]:
    """The next ``count`` frames that carry an event (of a response, or of ``frames`` of
    one already begun)."""
    got: list[Frame] = []
    source = frames(response) if isinstance(response, httpx.Response) else response
    async for frame in source:
        if frame.id is not None:
            got.append(frame)
            if len(got) == count:
                break
    return got
