"""What logging accepts (docs/logging.md), and the errors that name what it refused.

Every check here runs before anything is buffered, so a rejected call changes nothing.

No text that goes into the log may hold NUL (``"\\x00"``): PostgreSQL's ``text`` cannot store
it, and a log must read the same on every backend (and move between them). Keys, names and
ids refuse every control character; tags, config strings and abort reasons refuse NUL; a
failure reason made from an exception's message, which nobody chose, has each NUL written
as the two characters ``\\0`` instead (:func:`escape_nul`). See docs/decisions.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from engine.errors import ValidationError

__all__ = [
    "MAX_CONFIG_TEXT",
    "MAX_KEY",
    "MAX_STEP",
    "MAX_TAG",
    "check_key",
    "check_metric_value",
    "check_name",
    "check_position",
    "check_project",
    "check_run_id",
    "check_run_labels",
    "check_step",
    "check_reason",
    "check_tags",
    "escape_nul",
    "flatten",
    "normalize_config",
    "scalar",
]

MAX_KEY = 1024  # characters, and bytes of UTF-8: see _over_key_limit
MAX_TAG = 256
# A config string, or a config list's text, at most: what both backends store and index alike
# (docs/logging.md). PostgreSQL indexes a prefix of it, so the limit is the log's, not btree's.
MAX_CONFIG_TEXT = 2**20
MAX_STEP = 2**53  # every int step up to here is exact as a double, as block summaries hold it
_INT64 = 2**63
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_key(key: object, what: str = "key") -> str:
    """Return ``key`` if it is a valid metric name or config path, else raise."""
    if type(key) is not str:
        raise ValidationError(f"{what} {key!r} is not a string", key=repr(key))
    if not key:
        raise ValidationError(f"{what} is empty", key=key)
    if _over_key_limit(key):
        raise ValidationError(
            f"{what} {key[:40]!r}... has {len(key)} characters ({_utf8_size(key)} bytes in "
            f"UTF-8); at most {MAX_KEY} bytes are allowed",
            key=key,
        )
    if _CONTROL.search(key):
        raise ValidationError(f"{what} {key!r} contains a control character", key=key)
    _check_utf8(key, what)
    if "" in key.split("/"):
        raise ValidationError(
            f"{what} {key!r} has an empty segment; '/' separates non-empty names", key=key
        )
    return key


def flatten(mapping: Mapping[str, Any], what: str = "key") -> dict[str, Any]:
    """Flatten nested dicts with ``/``: ``{"a": {"b": 1}}`` becomes ``{"a/b": 1}``.

    A dict that contains itself (at any depth) is refused, naming the key where it does;
    depth is otherwise bounded by the key length (a flattened key has at most ``MAX_KEY``
    characters), so no input reaches Python's recursion limit.
    """
    if not isinstance(mapping, Mapping):
        raise ValidationError(f"expected a dict of {what}s, got {type(mapping).__name__}")
    out: dict[str, Any] = {}
    # Depth first and in the order keys were written, without recursion: a stack of
    # (prefix, the items still to visit, the ids of the dicts on the path).
    stack: list[tuple[str, Iterator[tuple[Any, Any]], frozenset[int]]] = [
        ("", iter(mapping.items()), frozenset({id(mapping)}))]
    while stack:
        prefix, items, path = stack[-1]
        entry = next(items, None)
        if entry is None:
            stack.pop()
            continue
        raw, value = entry
        if type(raw) is not str:
            raise ValidationError(f"{what} {raw!r} is not a string", key=repr(raw))
        check_key(raw, what)  # a nested part is itself a key: no empty segment inside it
        key = prefix + raw
        if isinstance(value, Mapping):
            if id(value) in path:
                raise ValidationError(f"{what} {key!r} holds a dict that contains itself",
                                      key=key)
            check_key(key, what)  # too long a path ends the descent here
            stack.append((key + "/", iter(value.items()), path | {id(value)}))
            continue
        if key in out:
            raise ValidationError(f"{what} {key!r} is given twice after flattening", key=key)
        out[check_key(key, what)] = value
    return out


def scalar(value: object) -> object:
    """The plain Python value an array library's scalar stands for, or ``value`` itself.

    NumPy scalars of every width (``np.float32``, ``np.int64``, ``np.bool_``), 0-d arrays
    and one-element tensors all have ``item()``, which gives the plain ``int``, ``float`` or
    ``bool``; a ``float`` or ``int`` subclass (``np.float64``) becomes the plain type. Anything
    else — including an array of several elements, whose ``item()`` refuses — is returned
    as it is, for the caller's check to name.
    """
    kind = type(value)
    if kind is float or kind is int or kind is bool or kind is str:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    item = getattr(kind, "item", None)
    if item is None or isinstance(value, (str, bytes)):
        return value
    try:
        plain = item(value)
    except (TypeError, ValueError):  # several elements, or not a numeric scalar
        return value
    return plain if type(plain) in (int, float, bool) else value


def check_metric_value(key: str, value: object) -> float:
    """A metric value as a float: ints and floats (NaN and ±inf too), NumPy scalars and
    one-element arrays or tensors of them; never a bool (``np.bool_`` included)."""
    if type(value) is float:
        return value
    plain = value if type(value) is int else scalar(value)
    if type(plain) is float:
        return plain
    if type(plain) is not int:
        raise ValidationError(
            f"metric {key!r}: value {value!r} of type {type(value).__name__} is not an int or "
            "float", key=key)
    try:
        return float(plain)
    except OverflowError:
        raise ValidationError(
            f"metric {key!r}: {plain} is too large for a 64-bit float", key=key
        ) from None


def check_step(step: object, key: str | None = None) -> int | float:
    """A step: an int in [0, 2**53] or a finite float >= 0 (never bool); NumPy scalars and
    one-element arrays or tensors count as the int or float they hold."""
    plain = step
    if type(step) is float:
        if step >= 0 and math.isfinite(step):
            return step
    elif type(step) is int:
        if 0 <= step <= MAX_STEP:
            return step
    elif not isinstance(step, bool):
        plain = scalar(step)
        if type(plain) is int or type(plain) is float:
            return check_step(plain, key)
    where = f"metric {key!r}: " if key else ""
    if type(plain) is int or type(plain) is float:
        raise ValidationError(
            f"{where}step {plain!r} is not allowed; steps are finite numbers >= 0 (ints up "
            "to 2**53)", key=key or "step")
    raise ValidationError(
        f"{where}step {plain!r} of type {type(step).__name__} is not an int or float",
        key=key or "step")


def normalize_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a config dict and check every value.

    Values become the plain types they stand for, so what is stored reads back as plain
    values: subclasses (``numpy.float64``, ``pandas.Timestamp``, ``str`` enums) the type
    they extend, NumPy scalars (and one-element arrays) their ``int``, ``float`` or ``bool``,
    and tuples lists.
    """
    flat = flatten(config, "config key")
    for key, value in flat.items():
        flat[key] = _config_value(key, value)
    return flat


def _config_value(key: str, value: object) -> Any:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        items = [_config_item(key, v) for v in value]
        _config_text_limit(key, sum(len(v) for v in items if isinstance(v, str)))
        return items
    if isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, value.hour, value.minute,
                        value.second, value.microsecond, value.tzinfo, fold=value.fold)
    plain = scalar(value)
    if type(plain) in (bool, float):
        return plain
    if type(plain) is int:
        return _int64(key, plain)
    if isinstance(plain, str):
        _config_text_limit(key, len(plain))
        return _check_text(str(plain), f"config {key!r} value", key)
    raise ValidationError(
        f"config {key!r}: value {value!r} of type {type(value).__name__} is not allowed; "
        "use str, int, float, bool, datetime, None, or a list of str, numbers and bools",
        key=key,
    )


def _config_item(key: str, value: object) -> str | int | float | bool:
    """One element of a config list: a str, a finite number or a bool."""
    plain = scalar(value)
    if isinstance(plain, str):
        return _check_text(str(plain), f"config {key!r} value", key)
    if type(plain) is bool:
        return plain
    if type(plain) is int:
        return _int64(key, plain)
    if type(plain) is float and math.isfinite(plain):
        return plain
    raise ValidationError(
        f"config {key!r}: list element {value!r} is not allowed; a config list holds "
        "strings, finite numbers and bools", key=key)


def _config_text_limit(key: str, size: int) -> None:
    if size > MAX_CONFIG_TEXT:
        raise ValidationError(
            f"config {key!r}: {size} characters of text; a config value holds at most "
            f"{MAX_CONFIG_TEXT} (1 MiB), and a list's strings together as much", key=key)


def _int64(key: str, value: int) -> int:
    if not -_INT64 <= value < _INT64:
        raise ValidationError(f"config {key!r}: {value} does not fit in 64 bits", key=key)
    return value


def _check_utf8(text: str, what: str) -> str:
    """Refuse strings that cannot be stored (lone surrogates, say, from a file name)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{what} {text!r} is not valid Unicode text ({exc.reason})",
                              key=text) from None
    return text


def _check_text(text: str, what: str, key: str) -> str:
    """Free text that goes into the log: valid Unicode, without NUL (``key`` is named)."""
    if "\x00" in text:
        raise ValidationError(f"{what} {text!r} contains NUL ('\\x00'), which the log "
                              "refuses (PostgreSQL's text cannot hold it)", key=key)
    return _check_utf8(text, what)


def escape_nul(text: str) -> str:
    """``text`` with each NUL written as the two characters ``\\0`` (for text made from an
    exception's message, which cannot be refused)."""
    return text.replace("\x00", "\\0")


def check_reason(reason: object) -> str | None:
    """An abort reason: None or a string without NUL."""
    if reason is None:
        return None
    if type(reason) is not str:
        raise ValidationError(f"reason {reason!r} is not a string", key="reason")
    return _check_text(reason, "reason", "reason")


def check_tags(tags: Iterable[str] | str) -> list[str]:
    """Tags as a de-duplicated list in first-seen order: non-empty strings of <= 256
    characters, without NUL."""
    if isinstance(tags, str):
        tags = (tags,)
    elif not isinstance(tags, Iterable) or isinstance(tags, Mapping):
        raise ValidationError(f"tags must be a string or a collection of strings, not "
                              f"{tags!r}", key="tags")
    out: dict[str, None] = {}
    for tag in tags:
        if type(tag) is not str:
            raise ValidationError(f"tag {tag!r} is not a string", key=repr(tag))
        if not tag:
            raise ValidationError("tag is empty", key=tag)
        if len(tag) > MAX_TAG:
            raise ValidationError(
                f"tag {tag[:40]!r}... has {len(tag)} characters; at most {MAX_TAG} are allowed",
                key=tag,
            )
        out[_check_text(tag, "tag", tag)] = None
    return list(out)


def check_position(value: object, what: str) -> int:
    """A log position passed in (``from_position``, ``as_of``, ``offset``): an int in
    [0, 2**63) — positions are 64-bit integers in every store."""
    if type(value) is not int or not 0 <= value < _INT64:
        raise ValidationError(f"{what} must be a log position (an int from 0 to 2**63-1), "
                              f"not {value!r}", key=what)
    return value


def check_run_id(run_id: object) -> str:
    """A run id: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``."""
    if type(run_id) is not str or not _RUN_ID.fullmatch(run_id):
        raise ValidationError(
            f"run_id {run_id!r} is not allowed; use 1-128 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit",
            key="run_id",
        )
    return run_id


def _utf8_size(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return len(text.encode("utf-8", "surrogatepass"))


def _over_key_limit(text: str) -> bool:
    """More than ``MAX_KEY`` bytes of UTF-8. Keys and names sit in PostgreSQL's btree indexes,
    whose entries hold at most 2,704 bytes (a project and an experiment share one), so the
    limit is in bytes: 1,024 ASCII characters, fewer of other scripts' (a 4-byte character
    counts four). Both backends then take the same keys."""
    return len(text) > MAX_KEY or (not text.isascii() and _utf8_size(text) > MAX_KEY)


def check_name(value: object, what: str) -> str:
    """A free-text label (run name, experiment, project): non-empty, at most 1,024 bytes of
    UTF-8, no control characters."""
    if (type(value) is not str or not value or _over_key_limit(value)
            or _CONTROL.search(value)):
        raise ValidationError(
            f"{what} {value!r} is not allowed; use a non-empty string of at most {MAX_KEY} "
            "bytes of UTF-8 (1,024 ASCII characters) without control characters",
            key=what,
        )
    return _check_utf8(value, what)


def check_run_labels(run_id: object, name: object, experiment: object) -> None:
    """A new run's id, name and experiment, each when given (``None``: not given)."""
    if run_id is not None:
        check_run_id(run_id)
    if name is not None:
        check_name(name, "name")
    if experiment is not None:
        check_name(experiment, "experiment")


def check_project(value: object) -> str:
    """A project name such as ``team-alpha/project-x``."""
    return check_name(value, "project")
