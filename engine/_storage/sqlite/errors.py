"""SQLite's errors, translated in one place: what the database failed to do, in Kittiwake's terms.

Every statement the store runs goes through a session (``session``) that hands a driver
error to :func:`failure`, and raises what it returns chained to the driver's error:

- a value the database cannot take (an int past 64 bits, a type it cannot bind, a string or
  blob too big) is a ``ValidationError``: a refusal, nothing of it is written;
- a damaged file (``SQLITE_CORRUPT``: a page or b-tree that no longer makes sense) is an
  ``IntegrityError`` naming the file: what the store holds cannot be trusted until
  ``kittiwake check`` says what is damaged;
- anything else the database reports — a full disk, an I/O error, a read-only or locked
  file, a file that is not a database or is damaged (text that is not UTF-8 included) — is a
  ``StorageError``: the store failed, and what was being written stays with the writer, to
  be sent again.
"""

from __future__ import annotations

import sqlite3

from engine.errors import EngineError, IntegrityError, StorageError, ValidationError

__all__ = ["DRIVER_ERRORS", "failure"]

DRIVER_ERRORS = (sqlite3.Error, OverflowError, UnicodeError)
"""What SQLite raises, and its module while it binds parameters or decodes text."""

_VALUES = {sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_RANGE, sqlite3.SQLITE_MISMATCH}
_CORRUPT = sqlite3.SQLITE_CORRUPT


def failure(exc: BaseException, doing: str, path: str) -> EngineError:
    """The error to raise, chained to ``exc``, for a driver error met while ``doing`` (e.g.
    ``"writing to"``) the database at ``path``."""
    if _bad_value(exc):
        return ValidationError(f"SQLite cannot store this value while {doing} {path!r}: {exc}")
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF == _CORRUPT:
        return IntegrityError(f"the SQLite database {path!r} is damaged ({exc}) — found while "
                              f"{doing} it; `kittiwake check` says what is damaged", where=path)
    return StorageError(f"SQLite failed while {doing} {path!r}: {exc}")


def _bad_value(exc: BaseException) -> bool:
    if isinstance(exc, (OverflowError, sqlite3.InterfaceError, UnicodeEncodeError)):
        return True  # an int past 64 bits; a parameter the driver cannot bind (older Pythons)
    if isinstance(exc, sqlite3.ProgrammingError):
        return "binding parameter" in str(exc)  # a type the driver cannot bind
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _VALUES
