"""What ``kittiwake check`` verifies of a database, and what it reports.

First the database's own files, where it can tell (SQLite's ``integrity_check``: pages,
b-trees, indexes). Then the log is read back row by row, raw, in pages: positions must run
1, 2, 3, … without a gap or a repeat; each stream's versions 1, 2, 3, … in position order;
every payload must match its checksum, decode, and read at a schema version this release
knows. Then every projection is rebuilt into scratch tables and compared with the live ones,
row for row (``Store.verify_rebuild``). Each finding names where the damage is — the file, a
position, a run, a table — so that a script can stop on a non-zero exit and a person knows
what to restore or rebuild.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine._core.events import Upcasters
from engine._projections.stored import EVENT_COLUMNS, record_of
from engine.errors import EngineError

from .contract import Store
from .session import Reader, Session

__all__ = ["Finding", "check_log", "check_store"]

_PAGE = 2_000


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing found wrong: ``where`` it is (``position 17``, ``run p/r``, ``table runs``)
    and ``what``."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


async def check_log(reader: Reader, upcasters: Upcasters,
                    progress: Callable[[int], None] | None = None) -> list[Finding]:
    """Every finding of the log itself (positions, versions, payloads)."""
    findings: list[Finding] = []
    versions: dict[tuple[str, str], int] = {}
    expected = 1
    after = 0
    while True:
        async def page(session: Session, after: int = after) -> list[tuple[object, ...]]:
            rows = await session.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position "
                "LIMIT ?", (after, _PAGE))
            return [tuple(row) for row in rows]

        rows = await reader.read(page)
        for row in rows:
            position, _, project, run_id, version, *_ = row
            assert isinstance(position, int) and isinstance(version, int)
            if position != expected:
                findings.append(Finding(
                    f"position {expected}",
                    f"the log jumps from position {expected - 1} to {position}"))
            expected = position + 1
            stream = (str(project), str(run_id))
            last = versions.get(stream, 0)
            if version != last + 1:
                findings.append(Finding(
                    f"position {position}",
                    f"run {project}/{run_id} is at version {version} after {last}"))
            versions[stream] = version
            try:
                record_of(row, True, upcasters)
            except EngineError as exc:
                findings.append(Finding(f"position {position}", str(exc)))
        if rows:
            after = int(rows[-1][0])  # type: ignore[call-overload]
            if progress is not None:
                progress(after)
        if len(rows) < _PAGE:
            return findings


async def check_store(store: Store, reader: Reader,
                      progress: Callable[[int], None] | None = None,
                      check_file: Callable[[], Awaitable[list[str]]] | None = None,
                      ) -> list[Finding]:
    """Every finding of the database's own files, of the log, then of the projections against
    a rebuild of them."""
    findings = [Finding("database", line)
                for line in (await check_file() if check_file is not None else [])]
    try:
        findings += await check_log(reader, store.upcasters, progress)
    except EngineError as exc:  # damage the scan cannot read past
        findings.append(Finding("log", str(exc)))
    if findings:
        return findings  # a rebuild would read the same damage: fix the log first
    for table in await store.verify_rebuild():
        findings.append(Finding(f"table {table}",
                                "differs from a rebuild from the log (`kittiwake rebuild` "
                                "makes it anew)"))
    return findings
