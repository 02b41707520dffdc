"""The HTTP API's JSON, made exact: what the server and the remote client send each other.

Plain JSON cannot carry NaN, ±inf, datetimes or ints past 64 bits, and a metric batch written
as JSON numbers costs a float formatting per point. So values are *tagged* as in the payload
codec, as JSON this time: one-key objects ``{"$f": "nan"}`` (``"-nan"`` for a NaN with its
sign bit set), ``{"$t": iso}``, ``{"$i":
digits}``, and every ``array.array`` column as ``{"$a": [typecode, base64]}`` — its
little-endian bytes, so a batch of metrics is a few columns of base64 (the compact columnar
form), and comes back bit for bit. A column held in several places (the steps and
timestamps every metric of a batch shares) is written once, then referred to as ``{"$r":
n}``: the n-th column written, counting from 0. Keys that start with ``$`` get one more
``$``.

``dumps``/``loads`` wrap orjson around the tagging; ``loads`` raises ``WireError`` for any body
that is not well-formed, so a server can answer 400 instead of failing.
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
from array import array
from datetime import datetime
from typing import Any

import orjson

__all__ = ["WireError", "dumps", "from_wire", "loads", "to_wire"]

_ARRAY_CODES = frozenset("bBhHiIqQfd")
_FLOATS = {"nan": math.nan, "-nan": -math.nan, "inf": math.inf, "-inf": -math.inf}
_BIG_ENDIAN = sys.byteorder == "big"
_INT64 = (-(2**63), 2**63 - 1)


class WireError(ValueError):
    """A body that is not JSON, or holds a malformed tag."""


def to_wire(value: Any) -> Any:
    """``value`` with every special value tagged (see the module docstring).

    :raises TypeError: for a value of a type JSON cannot carry.
    """
    return _tag(value, {})


def _tag(value: Any, seen: dict[int, int]) -> Any:
    kind = type(value)
    if kind is dict:
        return {("$" + k if k[:1] == "$" else k) if type(k) is str else _refuse(k):
                _tag(v, seen) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_tag(v, seen) for v in value]
    if kind is float:
        if value - value == 0.0:
            return value
        if value != value:
            # A NaN's sign bit is kept: what goes in comes back bit for bit.
            return {"$f": "-nan" if math.copysign(1.0, value) < 0 else "nan"}
        return {"$f": "inf" if value > 0 else "-inf"}
    if kind is int:
        return value if _INT64[0] <= value <= _INT64[1] else {"$i": str(value)}
    if value is None or kind is str or kind is bool:
        return value
    if kind is datetime:
        return {"$t": value.isoformat()}
    if kind is array:
        index = seen.get(id(value))
        if index is not None:
            return {"$r": index}
        seen[id(value)] = len(seen)
        if value.typecode not in _ARRAY_CODES:
            _refuse(value)
        if _BIG_ENDIAN:  # pragma: no cover - the wire is little-endian
            value = array(value.typecode, value)
            value.byteswap()
        return {"$a": [value.typecode, base64.b64encode(value.tobytes()).decode("ascii")]}
    return _refuse(value)


def from_wire(value: Any, *, arrays: bool = True) -> Any:
    """The value ``to_wire`` tagged; arrays stay ``array.array`` unless ``arrays`` is False.

    :raises WireError: for a malformed tag.
    """
    return _untagged(value, arrays, [])


def _untagged(value: Any, arrays: bool, columns: list[Any]) -> Any:
    kind = type(value)
    if kind is dict:
        if len(value) == 1:
            key, inner = next(iter(value.items()))
            if key[:1] == "$" and key[:2] != "$$":
                return _untag(key, inner, arrays, columns)
        return {(k[1:] if k[:2] == "$$" else k): _untagged(v, arrays, columns)
                for k, v in value.items()}
    if kind is list:
        return [_untagged(v, arrays, columns) for v in value]
    return value


def _untag(key: str, inner: Any, arrays: bool, columns: list[Any]) -> Any:
    try:
        if key == "$r":
            if type(inner) is not int or not 0 <= inner < len(columns):
                raise WireError(f"$r refers to column {inner!r}, which was not sent before")
            return columns[inner]
        if key == "$f":
            return _FLOATS[inner]
        if key == "$t":
            return datetime.fromisoformat(inner)
        if key == "$i":
            if type(inner) is not str or not inner.lstrip("-").isdigit():
                raise WireError(f"$i needs a string of digits, not {inner!r}")
            return int(inner)
        if key == "$a":
            code, data = inner
            if code not in _ARRAY_CODES:
                raise WireError(f"unknown array typecode {code!r}")
            column = array(code)
            raw = base64.b64decode(data, validate=True)
            if len(raw) % column.itemsize:
                raise WireError(f"an array of {code!r} cannot be {len(raw)} bytes long")
            column.frombytes(raw)
            if _BIG_ENDIAN:  # pragma: no cover
                column.byteswap()
            made = column if arrays else column.tolist()
            columns.append(made)
            return made
    except WireError:
        raise
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise WireError(f"malformed {key} value {inner!r}") from exc
    raise WireError(f"unknown tag {key!r} (a key starting with '$' is written '$$…')")


def _refuse(value: object) -> Any:
    raise TypeError(f"cannot send a {type(value).__name__} over the wire")


def dumps(value: Any) -> bytes:
    """``value`` tagged and encoded as JSON bytes."""
    return orjson.dumps(to_wire(value))


def loads(body: bytes | str, *, arrays: bool = True) -> Any:
    """Decode a body ``dumps`` made.

    :raises WireError: for anything that is not well-formed.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"the body is not JSON: {exc}") from exc
    return from_wire(value, arrays=arrays)
