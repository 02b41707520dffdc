"""Text series: strings a run logs at steps, such as samples, and its captured output.

A text value is at most 1 MiB of UTF-8 and holds no NUL: PostgreSQL's ``text`` cannot store
NUL, and a log must read the same on every backend. Output captured from a process, which
nobody chose, has each NUL escaped instead (``validate.escape_nul``) rather than refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import ValidationError

__all__ = ["MAX_TEXT", "TextSeries", "check_text"]

MAX_TEXT = 2**20
"""The most UTF-8 bytes one text value may hold."""


@dataclass(frozen=True, slots=True)
class TextSeries:
    """A text series in step order: ``steps``, ``values`` and ``timestamps`` (seconds since
    the epoch, as in ``Series``) are lists of equal length."""

    steps: list[int | float]
    values: list[str]
    timestamps: list[float]

    def __len__(self) -> int:
        return len(self.steps)


def check_text(key: str, value: object) -> str:
    """A text value to log under ``key``: a ``str`` (a subclass, such as NumPy's ``str_``,
    becomes a plain ``str``) of at most 1 MiB in UTF-8, without NUL."""
    if not isinstance(value, str):
        raise ValidationError(f"text {key!r}: value of type {type(value).__name__} is not a "
                              "str", key=key)
    text = str(value)
    if len(text) > MAX_TEXT or (not text.isascii() and _utf8_size(key, text) > MAX_TEXT):
        raise ValidationError(f"text {key!r}: {_utf8_size(key, text):,} bytes of UTF-8; a "
                              f"text value holds at most {MAX_TEXT:,} (1 MiB)", key=key)
    if "\x00" in text:
        raise ValidationError(f"text {key!r}: the value contains NUL ('\\x00'), which the log "
                              "refuses (PostgreSQL's text cannot hold it)", key=key)
    return text


def _utf8_size(key: str, text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValidationError(f"text {key!r}: the value is not valid Unicode text "
                              f"({exc.reason} at character {exc.start})", key=key) from None
