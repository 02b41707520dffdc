"""Group commits on SQLite: the one place where events enter the log.

A group of requests is one ``BEGIN IMMEDIATE`` transaction (SQLite's one writer: the rowid is
the position, and commit order is position order). ``engine._storage.commit`` assigns positions
and versions and folds each event through the projector; here events and projection rows are
written, checkpoints advance, and it all commits together. A request the projections refuse
rolls the transaction back and the group is replayed without it.

(Committing a large flush as a pipeline of smaller transactions, folding one while the next
commits, was measured and lost: aiosqlite sends each statement to its thread separately, and
every hand-off waits for the GIL while the fold holds it. See docs/performance.md.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio

from engine._core.events import Record, Upcasters
from engine._projections.stored import EVENT_COLUMNS
from engine._storage.commit import GroupCommit
from engine._storage.contract import AppendRequest
from engine._storage.io import TableIO, advance

from .session import SqliteSession

__all__ = ["Committer"]

_ID_BATCH = 500  # ids per "already in the log?" query (SQLite binds at most 32766 values)
_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"


class Committer(GroupCommit):
    """Appends requests on the writer connection; owns the live projector and its cache."""

    def __init__(self, session: SqliteSession, lock: anyio.Lock, upcasters: Upcasters, *,
                 committed: Callable[[], None] | None = None) -> None:
        self.session = session
        self._after_commit = committed
        super().__init__(TableIO(session), upcasters, lock)

    async def transaction(self, requests: Sequence[AppendRequest], pending: list[int],
                          now: float) -> dict[int, list[Record]]:
        session = self.session
        try:
            async with session.transaction():
                ((head,),) = await session.fetch("SELECT coalesce(max(position), 0) FROM events")
                self.trust(head)
                known = await self._stored_events(
                    [e.id for i in pending for e in requests[i].events])
                added, rows, position = await self.fold_group(requests, pending, known, head,
                                                              now)
                if rows:
                    await session.execute_many(_INSERT, rows)
                    await self.projector.save()
                    await advance(session, "", head, position)
        except BaseException:
            self.forget()
            raise
        self.committed(position)
        if self._after_commit is not None:
            self._after_commit()
        return added

    async def _stored_events(self, ids: list[bytes]) -> dict[bytes, Record]:
        """The records of those of ``ids`` already in the log."""
        found: list[Any] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _ID_BATCH):
            batch = unique[start : start + _ID_BATCH]
            found.extend(await self.session.fetch(
                f"SELECT {EVENT_COLUMNS} FROM events "
                f"WHERE event_id IN ({','.join('?' * len(batch))})", batch))
        return self.stored(found)
