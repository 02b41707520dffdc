"""``kittiwake sync``: send a spool's waiting batches, and upload offline logs.

Every batch still in the spool for the server is sent, whoever's token spooled it, oldest
first, with its own event ids (a batch the server already has is not written twice). Then
each offline database beside the spool is uploaded from where the last sync stopped: its
events in log order, each commit in one request with its own commit time, with their ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import anyio

from engine._core.events import NewEvent, Record, default_upcasters
from engine._storage.contract import AppendRequest
from engine._storage.registry import open_store
from engine.errors import StorageError, ValidationError

from .spool import Spool, default_spool
from .store import REFUSALS, RemoteStore

__all__ = ["SyncReport", "sync"]

_PAGE = 2_000


@dataclass(slots=True)
class SyncReport:
    """What a sync did: spooled requests committed and refused, offline events uploaded
    (and refused), and requests still spooled (a server that refused the token)."""

    sent: int = 0
    refused: int = 0
    uploaded: int = 0
    upload_refused: int = 0
    pending: int = 0


async def sync(url: str, *, spool: str | None = None, token: str | None = None) -> SyncReport:
    """Send what ``spool`` (by default the server's spool under the cache directory) holds
    for the server at ``url``, then upload its offline logs.

    :raises ValidationError: when there is no such spool.
    :raises StorageError: when the server does not answer (what is left stays spooled).
    :raises AuthError: when the server refuses the token.
    """
    server = url.rstrip("/")
    path = spool if spool is not None else default_spool(server)
    if not await anyio.Path(path).exists():
        raise ValidationError(f"no spool at {path!r}: nothing was logged to {server} here",
                              key="spool")
    token = token or os.environ.get("KITTIWAKE_TOKEN") or None
    store = RemoteStore(server, upcasters=default_upcasters(), token=token,
                        spool=Spool(path, token), resend_on_open=False)
    report = SyncReport()
    await store.open()
    try:
        report.sent, report.refused = await store.resend(everyone=True)
        assert store.spool is not None
        for log, uploaded in await store.spool.offline_logs(server):
            if await anyio.Path(log).exists():
                done, refused = await _upload(store, log, uploaded)
                report.uploaded += done
                report.upload_refused += refused
        report.pending = await store.spool.count(server)
    finally:
        await store.close()
    return report


async def _upload(store: RemoteStore, log: str, after: int) -> tuple[int, int]:
    """Upload an offline database's events after position ``after``."""
    assert store.spool is not None
    local = open_store(log, durability="normal", upcasters=default_upcasters())
    await local.open()
    done = refused = 0
    try:
        while True:
            records, covered = await local.read(after, limit=_PAGE, arrays=True)
            if not records:
                return done, refused
            for commit in _commits(records):
                requests = _requests(commit)
                outcomes = await store.send(requests, now=commit[0].timestamp)
                for request, outcome in zip(requests, outcomes, strict=True):
                    if isinstance(outcome, REFUSALS):
                        refused += len(request.events)
                    elif isinstance(outcome, BaseException):
                        raise StorageError(f"uploading {log!r} stopped: {outcome}")
                    else:
                        done += len(request.events)
                await store.spool.uploaded(log, commit[-1].position)
            after = max(after, covered)
    finally:
        await local.close()


def _commits(records: list[Record]) -> list[list[Record]]:
    """Records cut where the commit time changes: each goes up with its own time."""
    cut: list[list[Record]] = []
    for record in records:
        if cut and cut[-1][-1].timestamp == record.timestamp:
            cut[-1].append(record)
        else:
            cut.append([record])
    return cut


def _requests(records: list[Record]) -> list[AppendRequest]:
    """Consecutive events of one run, one request each (in log order, so a fork's parent
    and a run's creation come first)."""
    requests: list[AppendRequest] = []
    for record in records:
        event = NewEvent(record.type, record.data, record.id)
        last = requests[-1] if requests else None
        if last is not None and (last.project, last.run_id) == (record.project,
                                                                 record.run_id):
            last.events.append(event)
        else:
            requests.append(AppendRequest(record.project, record.run_id, [event]))
    return requests
