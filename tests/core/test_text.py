"""Text values: at most 1 MiB of UTF-8, no NUL; and the values text and other reads return."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from engine._core.entries import Entry
from engine._core.histograms import Histogram
from engine._core.text import MAX_TEXT, TextSeries, check_text
from engine.errors import ValidationError


def test_up_to_one_mib_of_utf8_is_taken_counting_bytes_not_characters() -> None:
    assert check_text("eval/sample", "a cat on a mat") == "a cat on a mat"
    assert len(check_text("k", "x" * MAX_TEXT)) == MAX_TEXT
    wide = "é" * (MAX_TEXT // 2)  # two bytes each: exactly 1 MiB
    assert check_text("k", wide) is not None
    for value in ["x" * (MAX_TEXT + 1), wide + "x", "€" * (MAX_TEXT // 3 + 1)]:
        with pytest.raises(ValidationError, match="at most 1,048,576") as caught:
            check_text("eval/sample", value)
        assert caught.value.key == "eval/sample"


@pytest.mark.parametrize(("value", "match"), [
    ("a\x00b", "NUL"), ("\ud800", "Unicode"), (b"bytes", "bytes is not a str"),
    (3, "int is not a str"), (None, "NoneType"),
])
def test_other_values_are_refused_naming_the_key(value: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as caught:
        check_text("logs/x", value)
    assert caught.value.key == "logs/x"


def test_str_subclasses_become_plain_str() -> None:
    value = check_text("k", np.str_("numpy"))
    assert type(value) is str
    assert value == "numpy"


def test_read_values() -> None:
    series = TextSeries([0, 1], ["a", "b"], [1.0, 2.0])
    assert len(series) == 2
    assert series.values == ["a", "b"]
    at = datetime(2025, 1, 1, tzinfo=UTC)
    entry: Entry[Histogram] = Entry(3, Histogram([0, 1], [2]), at)
    assert entry == Entry(3, Histogram([0.0, 1.0], [2]), at)
