"""Payload codec: orjson, made exact.

orjson alone writes NaN and ±inf as ``null``, turns datetimes into strings and refuses ints
past 64 bits, so a payload that holds any of those is written in a *tagged* form instead:

- ``\\x00`` + JSON — the common case, nothing special inside; decoding is one ``orjson.loads``.
- ``\\x01`` + u32 length + JSON + binary section — special values are replaced by one-key
  objects (``{"$f": "nan"}``, ``{"$t": iso}``, ``{"$i": digits}``) and ``array.array`` columns
  by ``{"$a": [typecode, offset, count]}`` pointing into the binary section (little-endian).
  Keys that start with ``$`` are escaped with one more ``$``, so user data is never mistaken
  for a tag.

Metric batches are built from arrays, so their values cost a memcpy each way and come back
bit for bit — NaN, ±inf and -0.0 included.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NoReturn

import orjson

__all__ = ["decode", "decode_arrays", "encode", "jsonable", "non_finite_name", "plain"]

_PLAIN = 0
_TAGGED = 1
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_ARRAY_CODES = frozenset("bBhHiIqQfd")
_FLOAT_TAGS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_BIG_ENDIAN = sys.byteorder == "big"


def _refuse(value: object) -> NoReturn:
    raise TypeError(type(value).__name__)


def encode(value: Any) -> bytes:
    """Encode plain values (dict with str keys, list, tuple, str, int, float, bool, None,
    datetime) and ``array.array`` columns to bytes.

    :raises TypeError: if the value holds anything else.
    """
    try:
        body = orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_DATETIME, default=_refuse)
    except (TypeError, orjson.JSONEncodeError):
        pass  # an int past 64 bits, a datetime, an array, or a type the tagged form will name
    else:
        # orjson refuses what the plain form cannot hold, except NaN and ±inf, which it
        # writes as null: JSON without a null held none (and this test is cheaper than a
        # walk through the value); JSON with one is walked to tell None from NaN.
        if b"null" not in body or not _needs_tags(value):
            return b"\x00" + body
    parts: list[bytes] = []
    try:
        body = orjson.dumps(_tag(value, parts, fast=True, seen={}))
    except orjson.JSONEncodeError:
        # A list that looked numeric held an int past 64 bits; tag it element by element.
        parts.clear()
        body = orjson.dumps(_tag(value, parts, fast=False, seen={}))
    return b"".join((b"\x01", len(body).to_bytes(4, "little"), body, *parts))


def decode(data: bytes | memoryview) -> Any:
    """Decode bytes made by :func:`encode`; arrays come back as lists."""
    return _decode(data, keep_arrays=False)


def decode_arrays(data: bytes | memoryview) -> Any:
    """Decode bytes made by :func:`encode`, keeping arrays as ``array.array`` (for projections)."""
    return _decode(data, keep_arrays=True)


def plain(value: Any) -> Any:
    """``value`` with every ``array.array`` held in its dicts turned into a list.

    Payloads keep arrays only as dict values, so lists are not searched. An array held in
    several places (the steps and timestamps every metric of a batch shares) becomes one
    list, held in the same places: converting it once per metric cost two thirds of the
    conversion of a batch.
    """
    return _plain(value, {})


def _plain(value: Any, lists: dict[int, list[Any]]) -> Any:
    if type(value) is dict:
        return {k: _plain(v, lists) for k, v in value.items()}
    if type(value) is array:
        made = lists.get(id(value))
        if made is None:
            made = lists[id(value)] = value.tolist()
        return made
    return value


def _decode(data: bytes | memoryview, *, keep_arrays: bool) -> Any:
    view = memoryview(data)
    if view[0] == _PLAIN:
        return orjson.loads(view[1:])
    if view[0] != _TAGGED:
        raise ValueError(f"unknown payload format byte {view[0]}")
    size = int.from_bytes(view[1:5], "little")
    return _untag(orjson.loads(view[5 : 5 + size]), view[5 + size :], keep_arrays)


def _needs_tags(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        number: float = value
        return number - number != 0.0  # true for NaN and ±inf only
    if kind is dict:
        return _any_needs_tags(value.values())
    if kind is list or kind is tuple:
        if not value or (type(value[0]) is not float and type(value[0]) is not int):
            return _any_needs_tags(value)
        try:
            total = sum(value)
        except TypeError:
            return _any_needs_tags(value)
        # A finite sum proves every element finite; an overflowed one is checked by hand.
        return type(total) is float and total - total != 0.0 and _any_needs_tags(value)
    return kind is datetime or kind is array


def _any_needs_tags(values: Iterable[Any]) -> bool:
    for value in values:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is float:
            if value - value != 0.0:
                return True
        elif _needs_tags(value):
            return True
    return False


def _tag(value: Any, parts: list[bytes], *, fast: bool, seen: dict[int, Any]) -> Any:
    kind = type(value)
    if kind is dict:
        return {_escape(k): _tag(v, parts, fast=fast, seen=seen)
                for k, v in value.items()}
    if kind is list or kind is tuple:
        if fast:
            try:
                total = sum(value)
            except TypeError:
                pass
            else:
                if type(total) is int or total - total == 0.0:
                    return value
        return [_tag(v, parts, fast=fast, seen=seen) for v in value]
    if kind is float:
        if value - value == 0.0:
            return value
        return {"$f": "nan" if value != value else ("inf" if value > 0 else "-inf")}
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else {"$i": str(value)}
    if kind is datetime:
        return {"$t": value.isoformat()}
    if kind is array:
        shared = seen.get(id(value))
        if shared is not None:  # one column used by several metrics is stored once
            return shared
        if value.typecode not in _ARRAY_CODES:
            raise TypeError(f"array typecode {value.typecode!r}")
        original = value
        if _BIG_ENDIAN:
            value = array(value.typecode, value)
            value.byteswap()
        offset = sum(map(len, parts))
        parts.append(value.tobytes())
        tag = seen[id(original)] = {"$a": [value.typecode, offset, len(value)]}
        return tag
    if value is None or kind is str or kind is bool:
        return value
    return _refuse(value)


def _escape(key: object) -> str:
    if type(key) is not str:
        _refuse(key)
    return "$" + key if key[:1] == "$" else key


def _untag(value: Any, blob: memoryview, keep_arrays: bool) -> Any:
    kind = type(value)
    if kind is dict:
        if len(value) == 1:
            key, inner = next(iter(value.items()))
            if key == "$f":
                return _FLOAT_TAGS[inner]
            if key == "$t":
                return datetime.fromisoformat(inner)
            if key == "$i":
                return int(inner)
            if key == "$a":
                code, offset, count = inner
                column = array(code)
                column.frombytes(blob[offset : offset + count * column.itemsize])
                if _BIG_ENDIAN:
                    column.byteswap()
                return column if keep_arrays else column.tolist()
        return {(k[1:] if k[:2] == "$$" else k): _untag(v, blob, keep_arrays)
                for k, v in value.items()}
    if kind is list:
        return [_untag(v, blob, keep_arrays) for v in value]
    return value


def non_finite_name(value: float) -> str | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a non-finite float (the names the tagged form
    writes, and every text output shows); None for a finite one."""
    if math.isfinite(value):
        return None
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def jsonable(value: Any) -> Any:
    """Plain JSON values: non-finite floats become the strings ``nan``, ``inf``, ``-inf``."""
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite_name(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    return value
