"""Identifiers: time-ordered event ids, generated run ids and ``adjective-bird-N`` names."""

from __future__ import annotations

import os
import secrets
import time
import uuid

__all__ = ["event_id", "event_id_str", "run_id", "run_name"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

_ADJECTIVES = (
    "agile", "amber", "ancient", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp",
    "daring", "dawn", "deft", "eager", "early", "fancy", "fearless", "fierce", "gentle", "gilded",
    "glad", "golden", "grand", "happy", "hardy", "hazy", "honest", "icy", "jolly", "keen",
    "kind", "lively", "lucky", "lunar", "merry", "misty", "noble", "polar", "proud", "quick",
    "quiet", "rapid", "royal", "rustic", "silent", "silver", "sleek", "snowy", "solar", "stellar",
    "stormy", "sturdy", "sunny", "swift", "tidal", "vivid", "wandering", "wild", "windy", "wise",
)
_BIRDS = (
    "albatross", "auk", "avocet", "bittern", "bunting", "curlew", "cormorant", "dipper",
    "dunlin", "egret", "eider", "falcon", "fulmar", "gannet", "godwit", "grebe", "guillemot",
    "gull", "harrier", "heron", "ibis", "jay", "kestrel", "kingfisher", "kite", "kittiwake",
    "lapwing", "lark", "linnet", "loon", "magpie", "merlin", "nightjar", "osprey", "owl",
    "petrel", "pipit", "plover", "puffin", "razorbill", "redshank", "robin", "sanderling",
    "shearwater", "skua", "skylark", "snipe", "sparrow", "starling", "stint", "swallow", "swift",
    "teal", "tern", "thrush", "turnstone", "warbler", "wagtail", "wren",
)


def event_id() -> bytes:
    """A UUIDv7 (RFC 9562) as 16 bytes: 48 bits of Unix milliseconds, then randomness.

    Time-ordered ids keep the unique index append-mostly; the random tail keeps them unique
    across processes without coordination.
    """
    millis = time.time_ns() // 1_000_000
    tail = int.from_bytes(os.urandom(10), "big")
    value = (millis & 0xFFFF_FFFF_FFFF) << 80 | tail
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return value.to_bytes(16, "big")


def event_id_str(raw: bytes) -> str:
    """The canonical text form of a 16-byte event id."""
    return str(uuid.UUID(bytes=raw))


_ID_LENGTH = 10
_ID_SPACE = len(_ALPHABET) ** _ID_LENGTH
_ID_DRAW_LIMIT = (2**64 // _ID_SPACE) * _ID_SPACE  # below it, every id is equally likely


def run_id() -> str:
    """A fresh 10-character run id (lowercase letters and digits, about 51 bits)."""
    # One read of the system's randomness, not one per character (ten cost 60 µs).
    while (drawn := int.from_bytes(os.urandom(8), "big")) >= _ID_DRAW_LIMIT:
        pass
    drawn %= _ID_SPACE
    chars = []
    for _ in range(_ID_LENGTH):
        drawn, index = divmod(drawn, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


def run_name(number: int) -> str:
    """A human-readable name such as ``swift-kittiwake-12``; ``number`` is the run's ordinal."""
    return f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_BIRDS)}-{number}"
