"""Cutting a stream of bytes written to a terminal into the lines it shows.

The rules, so that recorded output reads as the terminal showed it:

- ``\\n`` ends a line, and any ``\\r`` just before it belongs to the line end (``\\r\\n``).
- A line rewritten with carriage returns (a progress bar) is kept in its final form: the
  text after the last ``\\r``.
- Bytes are decoded as UTF-8; what does not decode becomes U+FFFD. NUL, which the log
  refuses, is written as the two characters ``\\0``. Colour escapes are kept as written.
- A line longer than ``MAX_LINE_BYTES`` (1 MiB of UTF-8, the limit of a text value) is cut
  into pieces of at most that size, never inside a character; each piece is a line of its
  own. Nothing is lost, and memory stays bounded however long a line grows: only the text
  after the last carriage return, and at most ``MAX_LINE_BYTES`` of it, is held.
- A last line without its ``\\n`` is handed over at the end (``finish``), unless it shows
  nothing.

The lines are the same however the stream was cut into chunks.
"""

from __future__ import annotations

from typing import Final

from engine._core.validate import escape_nul

__all__ = ["MAX_LINE_BYTES", "LineSplitter"]

MAX_LINE_BYTES: Final = 2**20
_CR = 0x0D


class LineSplitter:
    """Cuts one byte stream into lines as a terminal would show them (module docstring).

    Feed it chunks as they come; the lines returned are the same however the stream was
    chunked.
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[str]:
        """The lines that ``data`` completes (pieces of an over-long line included)."""
        pending = self._pending
        pending += data
        lines: list[str] = []
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            lines += _final_form(pending[start:end])
            start = end + 1
        del pending[:start]
        # Only the text after the last carriage return can still show; a trailing run of
        # them is kept, as it may be the start of a "\r\n".
        end = len(pending)
        while end and pending[end - 1] == _CR:
            end -= 1
        cr = pending.rfind(b"\r", 0, end)
        if cr >= 0:
            del pending[:cr + 1]
        while len(pending) > MAX_LINE_BYTES:
            cut = _boundary(pending, MAX_LINE_BYTES)
            lines += _final_form(pending[:cut])
            del pending[:cut]
        return lines

    def finish(self) -> list[str]:
        """The unfinished last line, if it shows anything; the splitter starts afresh."""
        lines = [text for text in _final_form(self._pending) if text]
        self._pending.clear()
        return lines


def _final_form(raw: bytes | bytearray) -> list[str]:
    end = len(raw)
    while end and raw[end - 1] == _CR:
        end -= 1
    start = raw.rfind(b"\r", 0, end) + 1
    text = escape_nul(bytes(raw[start:end]).decode("utf-8", "replace"))
    data = text.encode()
    pieces: list[str] = []
    while len(data) > MAX_LINE_BYTES:
        cut = _boundary(data, MAX_LINE_BYTES)
        pieces.append(data[:cut].decode())
        data = data[cut:]
    pieces.append(data.decode())
    return pieces


def _boundary(data: bytes | bytearray, limit: int) -> int:
    """``limit``, moved back to the start of a UTF-8 character if it falls inside one."""
    cut = limit
    while cut > limit - 3 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut
