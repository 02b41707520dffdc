"""Taking one logged row's values into its group: the core of ``log_metrics``' hot path.

``take_floats`` is the C function of ``engine._runtime._speedups`` when that extension was built (it
is optional: installing never fails for want of a compiler) and :func:`take_floats_py`
otherwise. The two behave the same; the tests hold the C one to the Python one.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

__all__ = ["COMPILED", "pack_floats", "take_floats", "take_floats_py"]


def pack_floats(values: list[float]) -> bytes:
    """Numbers (floats, or ints a float holds) as native doubles, the layout of ``Rows``."""
    return struct.pack(f"{len(values)}d", *values)


def take_floats_py(metrics: dict[str, Any], keys: tuple[str, ...], out: bytearray) -> bool:
    """When ``metrics`` has exactly ``keys``, in that order, and every value is exactly a
    float, append the values to ``out`` as native doubles and return True; otherwise return
    False and leave ``out`` alone (the caller then checks the call the slow way)."""
    if len(metrics) != len(keys):
        return False
    values = [*metrics.values()]
    for value in values:
        if type(value) is not float:
            return False
    if tuple(metrics) != keys:
        return False
    out += pack_floats(values)
    return True


take_floats: Callable[[dict[str, Any], tuple[str, ...], bytearray], bool]
try:
    from ._speedups import take_floats
except ImportError:  # built without a C compiler: the same, about 1 µs slower per call
    take_floats = take_floats_py

COMPILED = take_floats is not take_floats_py
"""Whether the hot path runs compiled (the test suite requires it under ``CI``)."""
