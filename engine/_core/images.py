"""Images: PNG or JPEG files a run logs, with a caption and their size in pixels.

Bytes and paths are taken as they are once their first bytes prove them PNG or JPEG (the
bytes decide the media type, never the file name), and their width and height are read from
the header; nothing is decoded, so this needs no imaging library. A NumPy array is encoded
to PNG with Pillow, the optional ``images`` extra: ``uint8`` values are kept, floats in
[0, 1] become ``round(value * 255)`` (halves to even).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import numpy as np
from numpy.typing import NDArray

from engine.errors import ValidationError

from .files import File, file_name, open_source, source_error

__all__ = ["MAX_CAPTION", "ArrayConvertible", "Image", "ImageSource"]

MAX_CAPTION = 1024
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_CHANNELS = {3: "RGB", 4: "RGBA"}
# JPEG markers that carry no length: the start and end of the image, restarts, TEM.
_BARE_MARKERS = frozenset({0x01, 0xD8, 0xD9, *range(0xD0, 0xD8)})
# Start-of-frame markers (they hold the size); C4, C8 and CC share the range but are not.
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_MAX_SEGMENTS = 1024  # a JPEG whose size is not in its first segments is refused, not searched



class ArrayConvertible(Protocol):
    """What ``numpy.asarray`` takes without copying element by element (a tensor, say)."""

    def __array__(self) -> NDArray[Any]:
        """The values as a NumPy array."""
        ...


ImageSource = (str | os.PathLike[str] | bytes | bytearray | memoryview | NDArray[Any]
               | ArrayConvertible)
"""What an image can be made from: a PNG or JPEG path or content, or an array."""


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Image(File):
    """An image to log: ``Image(source, caption=None)``.

    ``source`` is PNG or JPEG content (bytes-like) or a path to such a file, or a NumPy array
    (anything ``numpy.asarray`` takes, such as a tensor on the CPU) of shape HxW (grey),
    HxWx3 (RGB) or HxWx4 (RGBA) holding ``uint8`` values, or floats in [0, 1], which is
    encoded to PNG. An ``Image`` is a ``File`` whose ``media_type`` is ``image/png`` or
    ``image/jpeg``; it also keeps its ``caption`` and its ``width`` and ``height`` in pixels.

    :raises FileSourceError: for a path that cannot be read.
    :raises ValidationError: for content that is not PNG or JPEG, an array of another shape
        or dtype, floats that are NaN or outside [0, 1], or a bad caption.
    :raises ImportError: for an array when Pillow is not installed
        (``pip install 'kittiwake[images]'``).
    """

    caption: str | None
    """What the image shows, as the run displays it (at most 1024 characters), or None."""
    width: int
    """Width in pixels."""
    height: int
    """Height in pixels."""

    def __init__(self, source: ImageSource, caption: str | None = None) -> None:
        if caption is not None:
            caption = _check_caption(caption)
        name: str | None = None
        if isinstance(source, str | os.PathLike):
            path = os.fspath(source)
            if not isinstance(path, str) or not path or "\x00" in path:
                raise ValidationError(f"image path {path!r} is not allowed; give a non-empty "
                                      "str path", key="source")
            absolute = os.path.abspath(path)
            with open_source(absolute, None) as stream:
                try:
                    kind, width, height = _header(stream, repr(path))
                except OSError as exc:
                    raise source_error(absolute, exc, None) from exc
            kept: str | bytes = absolute
            name = file_name(absolute)
        elif isinstance(source, bytes | bytearray | memoryview):
            kept = bytes(source)
            kind, width, height = _header(io.BytesIO(kept), "the content")
        elif isinstance(source, np.ndarray) or hasattr(source, "__array__"):
            kept, width, height = _encode(source)
            kind = "image/png"
        else:
            raise ValidationError(
                f"Image takes PNG or JPEG bytes, a path to such a file, or a NumPy array; "
                f"not {type(source).__name__}", key="source")
        for field, value in (("source", kept), ("name", name), ("media_type", kind),
                             ("caption", caption), ("width", width), ("height", height)):
            object.__setattr__(self, field, value)

    def __repr__(self) -> str:
        shown = (f"<{len(self.source)} bytes>" if isinstance(self.source, bytes)
                 else repr(self.source))
        return (f"Image({shown}, caption={self.caption!r}, {self.media_type}, "
                f"{self.width}x{self.height})")


def _check_caption(value: object) -> str:
    """An image caption: a string of at most 1024 characters, without NUL."""
    if type(value) is not str:
        raise ValidationError(f"image caption {value!r} is not a string", key="caption")
    if len(value) > MAX_CAPTION:
        raise ValidationError(f"image caption {value[:40]!r}... has {len(value)} characters; "
                              f"at most {MAX_CAPTION} are allowed", key="caption")
    if "\x00" in value:
        raise ValidationError(f"image caption {value!r} contains NUL ('\\x00'), which the "
                              "log refuses", key="caption")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"image caption {value!r} is not valid Unicode text",
                              key="caption") from None
    return value


def _header(stream: BinaryIO, what: str) -> tuple[str, int, int]:
    """(media type, width, height) from a PNG or JPEG stream's header."""
    head = stream.read(len(_PNG))
    if head == _PNG:
        chunk = stream.read(16)
        if len(chunk) == 16 and chunk[4:8] == b"IHDR":
            width, height = int.from_bytes(chunk[8:12], "big"), int.from_bytes(chunk[12:], "big")
            if width and height:
                return "image/png", width, height
        raise _refused(f"{what} starts like a PNG image but has no valid IHDR header")
    if head.startswith(_JPEG):
        stream.seek(2)
        size = _jpeg_size(stream)
        if size is None:
            raise _refused(f"{what} starts like a JPEG image but no frame header gives its "
                           "size")
        return "image/jpeg", *size
    raise _refused(f"{what} is not a PNG or JPEG image (it starts with {head[:8]!r})")


def _jpeg_size(stream: BinaryIO) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first frame header, which holds the size."""
    for _ in range(_MAX_SEGMENTS):
        byte = stream.read(1)
        if byte != b"\xff":
            return None
        marker = stream.read(1)
        while marker == b"\xff":  # fill bytes may pad a marker
            marker = stream.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _BARE_MARKERS:
            continue
        length = stream.read(2)
        if len(length) < 2 or int.from_bytes(length, "big") < 2:
            return None
        body = int.from_bytes(length, "big") - 2
        if code in _FRAME_MARKERS:
            frame = stream.read(5)
            if len(frame) < 5:
                return None
            height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
            return (width, height) if width and height else None
        if code == 0xDA:  # the scan starts: no frame header came before it
            return None
        stream.seek(body, io.SEEK_CUR)
    return None


def _encode(source: object) -> tuple[bytes, int, int]:
    """PNG bytes, width and height for an array, checked."""
    try:
        array = np.asarray(source)
    except Exception as exc:  # a tensor on a GPU, say: whatever it raised, say so
        raise _refused(f"the array cannot be read ({type(exc).__name__}: {exc}); move it to "
                       "the CPU or pass a NumPy array") from exc
    shape = array.shape
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in _CHANNELS)):
        raise _refused(f"an array of shape {shape} is not an image; use HxW (grey), HxWx3 "
                       "(RGB) or HxWx4 (RGBA)")
    if not shape[0] or not shape[1]:
        raise _refused(f"an array of shape {shape} has no pixels")
    if array.dtype.kind == "f":
        array = _from_floats(array)
    elif array.dtype != np.uint8:
        raise _refused(f"an array of dtype {array.dtype} is not allowed; use uint8 (0-255) "
                       "or floats in [0, 1]")
    try:
        from PIL import Image as Pillow
    except ImportError as exc:
        raise ImportError(
            "engine.Image needs Pillow to encode an array as PNG: "
            "pip install 'kittiwake[images]' (PNG or JPEG bytes and paths need nothing)",
            name="PIL") from exc
    out = io.BytesIO()
    Pillow.fromarray(np.ascontiguousarray(array)).save(out, format="PNG")
    return out.getvalue(), int(shape[1]), int(shape[0])


def _from_floats(array: NDArray[Any]) -> NDArray[np.uint8]:
    values = array.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.all():
        bad = values[~finite][0]
        raise _refused(f"the array holds {np.count_nonzero(~finite)} value(s) that are not "
                       f"finite (such as {bad}); float images hold values in [0, 1]")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise _refused(f"the array's values run from {low} to {high}; float images hold "
                       "values in [0, 1] (or pass uint8 values 0-255)")
    return np.rint(values * 255.0).astype(np.uint8)


def _refused(message: str) -> ValidationError:
    return ValidationError(f"image: {message}", key="source")
