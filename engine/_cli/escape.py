"""What the command line prints of user text cannot drive the terminal.

Names, tags, config values, reasons, captured output — anything a run recorded — may hold
control characters (ESC starts a terminal command: ``"evil\\x1b[2J"`` would clear a
colleague's screen; CR and LF fake lines) and Unicode's bidirectional overrides and other
invisible format characters (U+202E makes ``txt.exe`` read as ``exe.txt``). Every value the
command line prints goes through :func:`safe`, which writes each such character as a visible
escape (``\\x1b``, ``\\u202e``); JSON lines and CSV are made safe as a whole (their own
separators kept). The API returns values untouched: escaping is for terminals, not for data.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["safe", "safe_lines"]

# C0 and C1 controls, DEL, and the invisible format characters that reorder or hide text
# (bidirectional embeddings, overrides and isolates; marks; zero-width joiners).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069"
                     "\ufeff\ufff9-\ufffb]")
_LAYOUT = re.compile("[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f"
                     "\u202a-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]")


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def safe(text: str) -> str:
    """``text`` with every control and invisible format character written as an escape."""
    if text.isprintable() and not any(unicodedata.category(c) == "Cf" for c in text):
        return text
    return _UNSAFE.sub(_escaped, text)


def safe_lines(text: str) -> str:
    """``text`` escaped as :func:`safe` does, except its line breaks and tabs (for output
    whose layout is ours, or made by a serializer: JSON lines, CSV, a query and its caret)."""
    return _LAYOUT.sub(_escaped, text.replace("\r\n", "\n").replace("\r", "\\r"))
