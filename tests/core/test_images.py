"""Images: arrays of every shape and dtype come back from their PNG as they went in; bytes
and paths are taken once their header proves them PNG or JPEG; everything else is refused."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image as Pillow

from engine._core.files import File, check_file
from engine._core.images import MAX_CAPTION, Image
from engine.errors import FileSourceError, ValidationError

SHAPES = [(5, 7), (5, 7, 3), (5, 7, 4)]
MODES = {2: "L", 3: "RGB", 4: "RGBA"}


def decoded(image: Image) -> np.ndarray[Any, Any]:
    assert isinstance(image.source, bytes)
    with Pillow.open(io.BytesIO(image.source)) as opened:
        opened.load()
        array = np.asarray(opened)
    assert opened.format == "PNG"
    assert opened.mode == MODES[array.shape[2] if array.ndim == 3 else 2]
    return array


def encoded(fmt: str, size: tuple[int, int] = (9, 4), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Pillow.new(mode, size, "red").save(out, format=fmt)
    return out.getvalue()


# Arrays ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_uint8_arrays_come_back_from_their_png_unchanged(shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    image = Image(array, caption="epoch 3")
    assert (image.media_type, image.width, image.height) == ("image/png", 7, 5)
    assert image.caption == "epoch 3"
    assert image.name is None
    np.testing.assert_array_equal(decoded(image), array)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_float_arrays_in_0_1_come_back_as_their_rounded_uint8(
        shape: tuple[int, ...], dtype: type[np.floating[Any]]) -> None:
    array = np.random.default_rng(2).random(shape).astype(dtype)
    array.flat[0], array.flat[1] = 0.0, 1.0  # both ends of the range are allowed
    back = decoded(Image(array))
    np.testing.assert_array_equal(back, np.rint(array.astype(np.float64) * 255))
    assert back.flat[0] == 0
    assert back.flat[1] == 255


@settings(max_examples=60)
@given(hnp.arrays(np.uint8, st.sampled_from(SHAPES).flatmap(
    lambda s: st.tuples(*(st.integers(1, 12) for _ in s[:2]), *(st.just(c) for c in s[2:])))))
def test_any_uint8_array_round_trips(array: np.ndarray[Any, Any]) -> None:
    image = Image(array)
    assert (image.height, image.width) == array.shape[:2]
    np.testing.assert_array_equal(decoded(image), array)


def test_strided_arrays_and_array_likes_are_taken() -> None:
    base = np.arange(60, dtype=np.uint8).reshape(6, 10)
    np.testing.assert_array_equal(decoded(Image(base[:, ::2])), base[:, ::2])

    class Tensor:
        def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray[Any, Any]:
            return base

    np.testing.assert_array_equal(decoded(Image(Tensor())), base)


def test_the_same_array_gives_the_same_bytes() -> None:
    array = np.full((4, 4, 3), 7, np.uint8)
    assert Image(array) == Image(array.copy())
    assert Image(array) != Image(array, caption="other")


@pytest.mark.parametrize(("array", "match"), [
    (np.zeros((4, 4, 2), np.uint8), "shape"),
    (np.zeros((4,), np.uint8), "shape"),
    (np.zeros((1, 4, 4, 3), np.uint8), "shape"),
    (np.zeros((0, 4), np.uint8), "no pixels"),
    (np.zeros((4, 4), np.int64), "dtype int64"),
    (np.zeros((4, 4), np.uint16), "dtype uint16"),
    (np.zeros((4, 4), bool), "dtype bool"),
    (np.full((4, 4), np.nan), "not finite"),
    (np.full((4, 4), np.inf, np.float32), "not finite"),
    (np.full((4, 4), 1.0001), "from 1.0001 to 1.0001"),
    (np.full((4, 4), -0.5), "0, 1"),
])
def test_arrays_that_are_not_images_are_refused(array: np.ndarray[Any, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match) as caught:
        Image(array)
    assert caught.value.key == "source"


def test_an_array_without_pillow_says_which_extra_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    png = encoded("PNG")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install 'kittiwake\[images\]'"):
        Image(np.zeros((2, 2), np.uint8))
    assert Image(png).width == 9  # bytes need no Pillow


# Bytes and paths -------------------------------------------------------------------------------

@pytest.mark.parametrize(("fmt", "kind"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_png_and_jpeg_bytes_are_kept_as_they_are(fmt: str, kind: str) -> None:
    data = encoded(fmt, (9, 4))
    image = Image(bytearray(data))
    assert (image.source, image.media_type, image.width, image.height) == (data, kind, 9, 4)


def test_a_jpeg_with_metadata_before_its_frame_is_measured() -> None:
    out = io.BytesIO()
    Pillow.new("RGB", (31, 17)).save(out, format="JPEG", exif=b"Exif\x00\x00" + bytes(5000),
                                     icc_profile=bytes(3000), progressive=True)
    image = Image(out.getvalue())
    assert (image.width, image.height) == (31, 17)


def test_a_path_is_measured_and_typed_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    path = tmp_path / "pred.jpg"
    path.write_bytes(encoded("PNG", (3, 2), "RGBA"))
    image = Image(path, caption="mislabelled")
    assert (image.source, image.name) == (str(path), "pred.jpg")
    assert (image.media_type, image.width, image.height) == ("image/png", 3, 2)
    assert isinstance(image, File)
    assert check_file("eval/img", image) is image


@pytest.mark.parametrize("data", [
    b"", b"hello", b"GIF89a" + bytes(20), encoded("GIF"), encoded("BMP"),
    b"\x89PNG\r\n\x1a\n" + bytes(4),  # cut short before its header
    b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + bytes(8),  # 0 x 0
    b"\xff\xd8\xff\xd9",  # a JPEG that ends before any frame
    b"\xff\xd8\xff\xe0\x00\x10" + bytes(14) + b"\xff\xda\x00\x02",  # scan before frame
    b"\xff\xd8\xff\xe0\x00\x01",  # a segment length below its own size
])
def test_content_that_is_not_png_or_jpeg_is_refused(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"PNG|JPEG") as caught:
        Image(data)
    assert caught.value.key == "source"
    (tmp_path / "x.png").write_bytes(data)
    with pytest.raises(ValidationError, match=r"x\.png"):
        Image(tmp_path / "x.png")


def test_a_path_that_cannot_be_read_is_a_file_source_error(tmp_path: Path) -> None:
    with pytest.raises(FileSourceError, match="no such file"):
        Image(tmp_path / "gone.png")
    with pytest.raises(FileSourceError, match="directory"):
        Image(tmp_path)


@pytest.mark.parametrize("source", [None, 3, [[0, 1]], "", io.BytesIO(b"x")])
def test_other_sources_are_refused(source: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        Image(source)
    assert caught.value.key == "source"


# Captions --------------------------------------------------------------------------------------

def test_captions_are_short_text_without_nul() -> None:
    png = encoded("PNG")
    assert Image(png, caption="x" * MAX_CAPTION).caption == "x" * MAX_CAPTION
    assert Image(png, caption="two\nlines").caption == "two\nlines"
    for caption in ["x" * (MAX_CAPTION + 1), "a\x00b", 3, b"bytes", "\ud800"]:
        with pytest.raises(ValidationError) as caught:
            Image(png, caption=caption)  # type: ignore[arg-type]
        assert caught.value.key == "caption"
