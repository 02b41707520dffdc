"""Files to log (``File``), the reference an event keeps to their bytes (``FileRef``), and
the check a logging call runs on each source.

A file source is a path, bytes, or a binary file object. Its bytes are read later, in
chunks and off the event loop, by the blob store's source reader; but a source that cannot
be read must be refused at the call that logs it, so checking a path here opens it, checks
that it is a regular file and reads its first bytes. That probe (and an image's header
read through it), bounded and synchronous, is the core's only file access; everything else
in the core is pure.

Checks name the key the file was logged under when they are given one (``check_file``), and
the argument otherwise (a ``File`` built on its own): a source that cannot be read raises
``FileSourceError``, any other refusal ``ValidationError``.
"""

from __future__ import annotations

import io
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO, Protocol

from engine.errors import FileSourceError, ValidationError

from .mediatypes import HEAD_SIZE, check_media_type, guess

__all__ = ["MAX_NAME", "File", "FileRef", "FileSource", "Readable", "check_file", "file_name",
           "open_source", "source_error", "stream_error"]

MAX_NAME = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BYTES_LIKE = (bytes, bytearray, memoryview)
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_NONBLOCK", 0))  # a FIFO must fail the regular-file test, not hang



class Readable(Protocol):
    """A binary file object, as far as logging needs one: ``read(size)`` gives bytes."""

    def read(self, size: int = ..., /) -> bytes | None:
        """Up to ``size`` bytes; empty at the end."""
        ...


FileSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Readable
"""What a file can be logged from: a path, bytes-like content, or a binary file object."""


@dataclass(frozen=True, slots=True, init=False, repr=False)
class File:
    """A file to log: ``File(source, name=None, media_type=None)``.

    ``source`` is a path (``str`` or ``os.PathLike``), bytes-like content, or a binary file
    object. A path is made absolute, so changing directory before its bytes are read does
    not change which file is logged; bytes-like content is copied into ``bytes``, so
    changing a buffer afterwards does not change what is logged. A file object is read from
    its current position to its end when the bytes are stored: keep it open until then.

    ``name`` defaults to the path's (or file object's) file name; content has none.
    ``media_type`` defaults to what the name's extension says, else what the first bytes
    say (PNG, JPEG, GIF, WebP, PDF), else ``application/octet-stream``.

    :raises FileSourceError: for a path that is missing, a directory, not a regular file or
        not readable, or a file object that is closed or cannot be read.
    :raises ValidationError: for any other source, a bad name or a bad media type.
    """

    source: str | bytes | Readable
    """The absolute path, the bytes, or the file object."""
    name: str | None
    """The file's name as the run shows it (not necessarily unique), or None."""
    media_type: str
    """What the bytes are, such as ``image/png`` or ``application/octet-stream``."""

    def __init__(self, source: FileSource, name: str | None = None,
                 media_type: str | None = None) -> None:
        _fill(self, *_resolve(source, name, media_type, None))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({_describe(self.source)}, name={self.name!r}, "
                f"media_type={self.media_type!r})")


@dataclass(frozen=True, slots=True)
class FileRef:
    """A logged file as the log keeps it: where its bytes are (``digest``) and what they are.

    ``step`` is None for a file attribute (an upload: one current file per key) and the step
    for an entry of a file series. ``timestamp`` is when it was logged (UTC). For an image,
    ``caption``, ``width`` and ``height`` say what it shows; they are None for other files.
    One digest may be referred to under many keys and names: the bytes are stored once.
    """

    key: str
    step: int | float | None
    name: str | None
    digest: str
    size: int
    media_type: str
    timestamp: datetime
    caption: str | None = None
    width: int | None = None
    height: int | None = None


def check_file(key: str, value: object) -> File:
    """The ``File`` to log under ``key`` for ``value``: a ``File`` (or ``Image``) as given,
    its path checked again, since it may have gone since the ``File`` was made; a path,
    bytes or a binary file object made into a ``File``.

    :raises FileSourceError: for a source that cannot be read, naming ``key``.
    :raises ValidationError: for a value that is no file source, naming ``key``.
    """
    if isinstance(value, File):
        if isinstance(value.source, str):
            open_source(value.source, key).close()
        elif not isinstance(value.source, bytes):
            _check_stream(value.source, key)
        return value
    file = File.__new__(File)
    _fill(file, *_resolve(value, None, None, key))
    return file


def _check_name(value: object, key: str | None) -> str:
    """A file's name: a non-empty string of at most 1024 characters without control
    characters (``/`` is allowed: a name may say where a file came from)."""
    if (type(value) is not str or not value or len(value) > MAX_NAME
            or _CONTROL.search(value)):
        raise ValidationError(
            f"{_where(key)}file name {value!r} is not allowed; use a non-empty string of at "
            f"most {MAX_NAME} characters without control characters", key=key or "name")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{_where(key)}file name {value!r} is not valid Unicode text",
                              key=key or "name") from None
    return value


def open_source(path: str, key: str | None) -> BinaryIO:
    """``path`` opened for reading, as a regular file; use it as ``with``. Map an
    ``OSError`` while reading it with :func:`source_error`.

    :raises FileSourceError: when it is missing, a directory, not a regular file, or cannot
        be opened.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise source_error(path, exc, key) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise FileSourceError(f"{_where(key)}cannot read {path!r}: it is {what}",
                                  key=key or "source")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def source_error(path: str, exc: OSError, key: str | None) -> FileSourceError:
    """The ``FileSourceError`` for an ``OSError`` met opening or reading ``path``."""
    if isinstance(exc, FileNotFoundError):
        reason = "no such file"
    elif isinstance(exc, IsADirectoryError) or os.path.isdir(path):
        reason = "it is a directory"
    elif isinstance(exc, PermissionError):
        reason = "permission denied"
    else:
        reason = exc.strerror or str(exc)
    return FileSourceError(f"{_where(key)}cannot read {path!r}: {reason}", key=key or "source")


def stream_error(stream: object, exc: Exception, key: str | None) -> FileSourceError:
    """The ``FileSourceError`` for an error met reading a file object."""
    return FileSourceError(f"{_where(key)}cannot read the file object {_label(stream)}: "
                           f"{exc}", key=key or "source")


def _resolve(source: object, name: object, media_type: object,
             key: str | None) -> tuple[str | bytes | Readable, str | None, str]:
    """(source, name, media type) for a ``File``, checked and defaulted."""
    head = b""
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        if not isinstance(path, str) or not path or "\x00" in path:
            raise ValidationError(f"{_where(key)}path {path!r} is not allowed; give a "
                                  "non-empty str path", key=key or "source")
        absolute = os.path.abspath(path)
        with open_source(absolute, key) as stream:
            try:
                head = stream.read(HEAD_SIZE) if media_type is None else b""
            except OSError as exc:
                raise source_error(absolute, exc, key) from exc
        kept: str | bytes | Readable = absolute
        default_name: str | None = file_name(absolute)
    elif isinstance(source, _BYTES_LIKE):
        kept = bytes(source)
        head, default_name = kept[:HEAD_SIZE], None
    elif callable(getattr(source, "read", None)):
        kept = _check_stream(source, key)
        label = getattr(source, "name", None)
        default_name = file_name(label) if isinstance(label, str) and label else None
        if media_type is None:
            head = _peek(kept, key)
    else:
        raise ValidationError(
            f"{_where(key)}{type(source).__name__} is not a file source; give a path, bytes, "
            "a binary file object, engine.File or engine.Image", key=key or "source")
    name = default_name if name is None else _check_name(name, key)
    kind = guess(name, head) if media_type is None else check_media_type(media_type, key)
    return kept, name, kind


def _fill(file: File, source: str | bytes | Readable, name: str | None, kind: str) -> None:
    object.__setattr__(file, "source", source)
    object.__setattr__(file, "name", name)
    object.__setattr__(file, "media_type", kind)


def _check_stream(source: object, key: str | None) -> Readable:
    """A binary file object that is open, or a refusal."""
    if isinstance(source, io.TextIOBase):
        raise ValidationError(
            f"{_where(key)}the file object {_label(source)} is open in text mode; open it "
            "in binary mode ('rb')", key=key or "source")
    if getattr(source, "closed", False):
        raise FileSourceError(f"{_where(key)}cannot read the file object {_label(source)}: "
                              "it is closed", key=key or "source")
    return source  # type: ignore[return-value]


def _peek(stream: Readable, key: str | None) -> bytes:
    """The first bytes from the stream's position, leaving the position where it was; empty
    for a stream that cannot seek (its media type then comes from its name alone)."""
    seekable, tell, seek = (getattr(stream, name, None) for name in ("seekable", "tell", "seek"))
    try:
        if seekable is None or tell is None or seek is None or not seekable():
            return b""
        where = tell()
        head = stream.read(HEAD_SIZE)
        seek(where)
    except (OSError, ValueError) as exc:
        raise stream_error(stream, exc, key) from exc
    if not isinstance(head, bytes):
        raise ValidationError(
            f"{_where(key)}the file object {_label(stream)} gave {type(head).__name__}, not "
            "bytes; open it in binary mode ('rb')", key=key or "source")
    return head


def file_name(path: str) -> str | None:
    """A path's last part as storable text: bytes that are not UTF-8 in a file name become
    U+FFFD, so an odd file name never stops a file from being logged."""
    base = os.path.basename(path.rstrip("/\\")) or None
    if base is None:
        return None
    text = base.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _CONTROL.sub("\ufffd", text)[:MAX_NAME]


def _where(key: str | None) -> str:
    return f"file {key!r}: " if key else ""


def _label(stream: object) -> str:
    name = getattr(stream, "name", None)
    return repr(name) if isinstance(name, str) else f"<{type(stream).__name__}>"


def _describe(source: object) -> str:
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return repr(source) if isinstance(source, str) else _label(source)
