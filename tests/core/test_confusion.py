"""Confusion matrices: every rule, and the plain form through the payload codec."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine._core.codec import decode, decode_arrays, encode
from engine._core.confusion import MAX_LABEL, MAX_LABELS, ConfusionMatrix, check_confusion_matrix
from engine.errors import ValidationError

labels = st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                          max_size=12), min_size=1, max_size=12, unique=True)


@st.composite
def matrices(draw: st.DrawFn) -> ConfusionMatrix:
    names = draw(labels)
    size = len(names)
    cells = draw(st.lists(st.integers(0, 2**63 - 1), min_size=size * size,
                          max_size=size * size))
    return ConfusionMatrix(names, [cells[i * size:(i + 1) * size] for i in range(size)])


@given(matrices())
def test_the_plain_form_round_trips_exactly_through_the_codec(matrix: ConfusionMatrix) -> None:
    raw = encode({"cm": matrix.to_plain()})
    assert ConfusionMatrix.from_plain(decode(raw)["cm"]) == matrix
    assert ConfusionMatrix.from_plain(decode_arrays(raw)["cm"]) == matrix


def test_rows_are_true_labels_and_numpy_ints_are_taken() -> None:
    matrix = ConfusionMatrix(np.array(["cat", "dog"]), np.array([[50, 2], [5, 43]], np.uint16))
    assert matrix.labels == ("cat", "dog")
    assert type(matrix.labels[0]) is str
    assert matrix.matrix == ((50, 2), (5, 43))
    assert type(matrix.matrix[0][0]) is int
    assert matrix == ConfusionMatrix(["cat", "dog"], [[np.int64(50), 2], [5, 43]])  # type: ignore[arg-type]
    assert list(matrix.to_plain()["matrix"]) == [50, 2, 5, 43]


@pytest.mark.parametrize(("labels", "matrix", "key", "match"), [
    (["a", "b"], [[1, 2, 3], [4, 5, 6]], "matrix", "shape \\(2, 3\\) for 2 labels"),
    (["a", "b"], [[1]], "matrix", "square, 2x2"),
    (["a"], [1], "matrix", "square"),
    (["a", "b"], [[1, 2], [3]], "matrix", "rows of equal length"),
    (["a", "b"], [[1, -2], [3, 4]], "matrix", "-2 \\(row 'a', column 'b'\\)"),
    (["a", "b"], [[1, 2.0], [3, 4]], "matrix", "integers"),
    (["a", "b"], [[1, 2], [3, 4.5]], "matrix", "integers"),
    (["a", "b"], [[True, 2], [3, 4]], "matrix", "bools"),
    (["a", "b"], np.array([[True, False], [False, True]]), "matrix", "integers"),
    (["a", "b"], [["1", "2"], ["3", "4"]], "matrix", "integers"),
    (["a"], [[2**64]], "matrix", "integers"),
    (["a"], np.array([[2**63]], np.uint64), "matrix", "64 bits"),
    (["a"], "1", "matrix", "rows of counts"),
    (["a", "a"], [[1, 2], [3, 4]], "labels", "'a' is given twice"),
    ([], [], "labels", "0 labels"),
    (["a", ""], [[1, 2], [3, 4]], "labels", "label '' is not allowed"),
    (["a", "b\n"], [[1, 2], [3, 4]], "labels", "not allowed"),
    (["a", 1], [[1, 2], [3, 4]], "labels", "label 1"),
    (["x" * (MAX_LABEL + 1)], [[1]], "labels", "not allowed"),
    (["\ud800"], [[1]], "labels", "Unicode"),
    ("ab", [[1, 2], [3, 4]], "labels", "sequence of strings, not str"),
    (3, [[1]], "labels", "sequence of strings, not int"),
    ([f"c{i}" for i in range(MAX_LABELS + 1)], [[0]], "labels", f"1 to {MAX_LABELS}"),
])
def test_every_rule_is_checked_naming_the_key(labels: Any, matrix: Any, key: str,
                                              match: str) -> None:
    with pytest.raises(ValidationError, match=match) as caught:
        ConfusionMatrix(labels, matrix)
    assert caught.value.key == key
    with pytest.raises(ValidationError, match=match) as caught:
        check_confusion_matrix("eval/cm", {"labels": labels, "matrix": matrix})
    assert caught.value.key == "eval/cm"
    assert "'eval/cm'" in str(caught.value)


def test_check_takes_a_matrix_or_its_nested_form() -> None:
    matrix = ConfusionMatrix(["a", "b"], [[1, 0], [0, 1]])
    assert check_confusion_matrix("cm", matrix) is matrix
    assert check_confusion_matrix("cm", {"labels": ["a", "b"], "matrix": [[1, 0], [0, 1]]}) \
        == matrix
    for value in [[[1]], {"labels": ["a"]}, None]:
        with pytest.raises(ValidationError, match="is not a confusion matrix") as caught:
            check_confusion_matrix("cm", value)
        assert caught.value.key == "cm"


def test_a_plain_form_with_the_wrong_number_of_counts_is_refused() -> None:
    with pytest.raises(ValidationError, match="3 counts for 2 labels"):
        ConfusionMatrix.from_plain({"labels": ["a", "b"], "matrix": [1, 2, 3]})
