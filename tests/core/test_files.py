"""Files to log: every kind of source, the names and media types they get, and every
refusal, typed and naming the key."""

from __future__ import annotations

import io
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine._core.files import MAX_NAME, File, FileRef, check_file
from engine._core.mediatypes import check_media_type, guess, sniff
from engine.errors import FileSourceError, ValidationError

PNG = b"\x89PNG\r\n\x1a\n" + bytes(8)
HEADS = {
    "image/png": PNG,
    "image/jpeg": b"\xff\xd8\xff\xe0" + bytes(12),
    "image/gif": b"GIF89a" + bytes(10),
    "image/webp": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
    "application/pdf": b"%PDF-1.7\n",
}


# Sources -------------------------------------------------------------------------------------

def test_a_path_is_made_absolute_and_named_after_its_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "metrics.csv").write_text("a,b\n")
    monkeypatch.chdir(tmp_path)
    file = File("metrics.csv")
    assert file.source == str(tmp_path / "metrics.csv")
    assert (file.name, file.media_type) == ("metrics.csv", "text/csv")
    assert File(tmp_path / "metrics.csv") == file  # os.PathLike too


@pytest.mark.parametrize(("kind", "head"), HEADS.items())
def test_a_file_without_a_known_extension_is_typed_by_its_first_bytes(
        tmp_path: Path, kind: str, head: bytes) -> None:
    (tmp_path / "blob").write_bytes(head)
    assert File(tmp_path / "blob").media_type == kind
    assert File(head).media_type == kind
    assert File(io.BytesIO(head)).media_type == kind


def test_unknown_content_is_an_octet_stream_and_the_extension_wins_over_the_bytes() -> None:
    assert File(b"\x00\x01").media_type == "application/octet-stream"
    assert File(PNG, name="notes.txt").media_type == "text/plain"
    assert File(PNG, name="run.csv.gz").media_type == "application/gzip"
    assert File(b"x", media_type="text/csv; charset=utf-8").media_type == \
        "text/csv; charset=utf-8"


def test_bytes_like_content_is_copied_so_later_changes_do_not_change_what_is_logged() -> None:
    buffer = bytearray(b"abc")
    file = File(buffer)
    buffer[0] = ord("z")
    assert file.source == b"abc"
    assert File(memoryview(b"abc")).source == b"abc"
    assert file.name is None
    assert "abc" not in repr(File(b"abc" * 1000))  # a repr never dumps the content


def test_a_file_object_is_peeked_without_moving_it(tmp_path: Path) -> None:
    path = tmp_path / "pic.bin"
    path.write_bytes(b"junk" + PNG)
    with path.open("rb") as stream:
        stream.seek(4)
        file = File(stream)
        assert stream.tell() == 4
        assert (file.name, file.media_type, file.source) == ("pic.bin", "image/png", stream)


def test_a_stream_that_cannot_seek_is_typed_by_its_name_alone() -> None:
    class Pipe(io.RawIOBase):
        name = "out.json"

        def readable(self) -> bool:
            return True

    assert File(Pipe()).media_type == "application/json"


def test_names_and_media_types_are_checked() -> None:
    assert File(b"x", name="a/b.txt").name == "a/b.txt"
    for name in ["", "a\nb", "\x00", "x" * (MAX_NAME + 1), 7]:
        with pytest.raises(ValidationError) as caught:
            File(b"x", name=name)  # type: ignore[arg-type]
        assert caught.value.key == "name"
    for kind in ["", "text", "text/", "/csv", "text/csv;", "a b/c", 3, "x/" + "y" * 300]:
        with pytest.raises(ValidationError) as caught:
            File(b"x", media_type=kind)  # type: ignore[arg-type]
        assert caught.value.key == "media_type"


def test_an_odd_file_name_still_gets_a_storable_name(tmp_path: Path) -> None:
    if sys.platform != "linux":
        pytest.skip("only Linux keeps file names that are not UTF-8")
    raw = os.path.join(os.fsencode(tmp_path), b"bad-\xff.txt")
    with open(raw, "wb") as out:
        out.write(b"x")
    assert File(os.fsdecode(raw)).name == "bad-\ufffd.txt"


# Refusals ------------------------------------------------------------------------------------

def test_a_missing_path_a_directory_and_a_device_cannot_be_read(tmp_path: Path) -> None:
    cases = {str(tmp_path / "gone.bin"): "no such file", str(tmp_path): "is a directory"}
    if os.path.exists("/dev/null"):
        cases["/dev/null"] = "not a regular file"
    for path, reason in cases.items():
        with pytest.raises(FileSourceError, match=reason) as caught:
            check_file("model/weights", path)
        assert caught.value.key == "model/weights"
        assert "model/weights" in str(caught.value)
        with pytest.raises(FileSourceError) as caught:
            File(path)
        assert caught.value.key == "source"


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(FileSourceError, match="not a regular file"):
        check_file("k", tmp_path / "pipe")


def test_a_file_that_cannot_be_read_is_refused() -> None:
    # Permissions do not stop root; /proc/self/mem opens, then fails every read at offset 0.
    if not os.path.exists("/proc/self/mem"):
        pytest.skip("needs Linux's /proc")
    with pytest.raises(FileSourceError, match="cannot read") as caught:
        check_file("k", "/proc/self/mem")
    assert caught.value.key == "k"


def test_a_file_is_checked_again_when_it_is_logged(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"weights")
    file = File(path)
    assert check_file("model", file) is file
    path.unlink()
    with pytest.raises(FileSourceError, match=r"'model'.*no such file"):
        check_file("model", file)


def test_file_objects_must_be_binary_and_open(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("text")
    with path.open() as text, pytest.raises(ValidationError, match="binary mode") as caught:
        check_file("notes", text)
    assert caught.value.key == "notes"
    assert not isinstance(caught.value, FileSourceError)
    stream = path.open("rb")
    file = File(stream)
    stream.close()
    with pytest.raises(FileSourceError, match="closed"):
        check_file("notes", file)
    with pytest.raises(FileSourceError, match="closed"):
        File(stream)


@pytest.mark.parametrize("value", [3, 2.5, None, {"a": 1}, ["a.txt"], "", "a\x00b", b"x".hex])
def test_anything_else_is_not_a_file_source(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        check_file("eval/pred", value)
    assert caught.value.key == "eval/pred"
    assert not isinstance(caught.value, FileSourceError)


# Sources made into Files, and references -------------------------------------------------------

def test_check_file_makes_a_file_of_any_source(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    assert check_file("k", str(tmp_path / "x.json")) == File(tmp_path / "x.json")
    assert check_file("k", b"abc") == File(b"abc")
    image = File(PNG)
    assert check_file("k", image) is image


def test_a_file_ref_names_bytes_by_digest() -> None:
    at = datetime(2025, 1, 1, tzinfo=UTC)
    ref = FileRef("eval/pred", 3, "pred.png", "sha256:" + "0" * 64, 10, "image/png", at)
    assert (ref.caption, ref.width, ref.height) == (None, None, None)
    assert ref == FileRef("eval/pred", 3, "pred.png", "sha256:" + "0" * 64, 10, "image/png", at)
    upload = FileRef("model", None, None, "sha256:" + "1" * 64, 0, "application/octet-stream", at)
    assert upload.step is None


# Media types -----------------------------------------------------------------------------------

def test_media_types_are_the_same_on_every_machine() -> None:
    assert guess("pred.png") == "image/png"
    assert guess("git.diff") == "text/x-diff"
    assert guess("config.yaml") == "application/yaml"
    assert guess("weights.pt") == "application/octet-stream"
    assert guess("README", PNG) == "image/png"
    assert guess(None) == "application/octet-stream"
    assert sniff(b"") is None
    assert check_media_type("application/vnd.api+json") == "application/vnd.api+json"
    with pytest.raises(ValidationError, match="'eval/x'") as caught:
        check_media_type("nope", "eval/x")
    assert caught.value.key == "eval/x"
