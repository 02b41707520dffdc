"""Media types of logged files: named by the user, guessed from a file name, or sniffed from
the first bytes.

Guessing uses Python's built-in table only, never the machine's ``/etc/mime.types``: the
same file logged on two machines gets the same media type, and a dashboard that picks a
viewer by it shows the same thing for both.
"""

from __future__ import annotations

import mimetypes
import re
from functools import cache

from engine.errors import ValidationError

__all__ = ["HEAD_SIZE", "OCTET_STREAM", "check_media_type", "guess", "sniff"]

OCTET_STREAM = "application/octet-stream"
HEAD_SIZE = 16
"""How many leading bytes :func:`sniff` needs to recognise every format it knows."""

# RFC 6838 names: type "/" subtype, each a restricted token, parameters after ";".
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(?:\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|\"[^\"\x00-\x1f\x7f]*\"))*")
_MAX_MEDIA_TYPE = 255

# A compressed file's media type is its compression's, whatever it holds: "run.csv.gz" is
# gzip bytes, and a viewer that trusted "text/csv" would show garbage.
_ENCODINGS = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def sniff(head: bytes) -> str | None:
    """The media type the leading bytes announce (PNG, JPEG, GIF, WebP, PDF), or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


# Files a run commonly carries that Python's table does not know (the captured git diff
# among them), so they open as text rather than download as bytes.
_EXTRA = {
    ".yaml": "application/yaml", ".yml": "application/yaml", ".toml": "application/toml",
    ".diff": "text/x-diff", ".patch": "text/x-diff", ".log": "text/plain",
    ".md": "text/markdown", ".ipynb": "application/x-ipynb+json", ".jsonl": "application/jsonl",
}


@cache
def _table() -> mimetypes.MimeTypes:
    table = mimetypes.MimeTypes()  # built-in types only: the instance ignores system files
    for extension, kind in _EXTRA.items():
        table.add_type(kind, extension, strict=False)
    return table


def guess(name: str | None, head: bytes = b"") -> str:
    """The media type of a file called ``name`` that starts with ``head``: from the name's
    extension when it has a known one, else from the bytes, else
    ``application/octet-stream``."""
    if name:
        kind, encoding = _table().guess_type(name, strict=False)
        if encoding is not None:
            return _ENCODINGS.get(encoding, OCTET_STREAM)
        if kind is not None and kind != OCTET_STREAM:  # ".bin" says nothing: ask the bytes
            return kind
    return sniff(head) or OCTET_STREAM


def check_media_type(value: object, key: str | None = None) -> str:
    """A media type given by the user: ``type/subtype`` with optional parameters
    (``text/csv; charset=utf-8``), at most 255 characters."""
    if (type(value) is not str or len(value) > _MAX_MEDIA_TYPE
            or not _MEDIA_TYPE.fullmatch(value)):
        where = f"file {key!r}: " if key else ""
        raise ValidationError(
            f"{where}media type {value!r} is not allowed; use 'type/subtype' such as "
            "'text/csv' or 'application/octet-stream' (at most 255 characters)",
            key=key or "media_type")
    return value
