"""The storage contract: one abstract interface, one implementation per backend.

A store owns the log and its projections on one database. Appends run one transaction per
group of requests: events are inserted, every projection is updated through the shared
``Projector``, checkpoints advance, and all of it commits together — so no read, in this process
or another, is ever behind the log, and a crash never splits the log from its projections.
Nothing above this module knows which backend it talks to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from engine._core.content import EntryRow
from engine._core.events import NewEvent, Record, Upcasters
from engine._core.model import Experiment, Lineage, RunState, Series
from engine._query.tree import Field, RunGroup, Selection

from .blobs.contract import BlobStore
from .session import Reader, Session

T = TypeVar("T")

__all__ = ["AppendRequest", "EventFilter", "JobRow", "Progress", "RunControl", "StaleRun",
           "Store", "TokenRow"]

Progress = Callable[[int, int], None]
"""Called with (events done, events in all) while a rebuild runs."""


@dataclass(slots=True)
class AppendRequest:
    """Events for one stream, appended together or not at all.

    Events whose ids are already in the log are skipped (a retry after an unknown outcome is
    safe); ``expected_version``, when given, must equal the stream's version beforehand.
    """

    project: str
    run_id: str
    events: list[NewEvent]
    expected_version: int | None = None


@dataclass(slots=True, frozen=True)
class EventFilter:
    """Which events a read returns; None means any."""

    project: str | None = None
    run_ids: frozenset[str] | None = None
    types: frozenset[str] | None = None


ANY = EventFilter()


@dataclass(slots=True)
class StaleRun:
    """A running run whose last sign of life is older than the reaper allows."""

    project: str
    run_id: str
    version: int
    last_seen: float
    crash_timeout: float  # the run's own promise, else the reaper's
    attempt: int | None = None  # a job's claims so far (None: not a job)
    max_attempts: int | None = None


@dataclass(slots=True)
class JobRow:
    """A job as the runs projection holds it (its status as recorded)."""

    run_id: str
    version: int
    status: str
    queue: str
    spec: dict[str, Any]  # command, env, cwd, max_attempts
    attempt: int
    max_attempts: int
    worker: str | None
    started_position: int
    created_at: float


@dataclass(slots=True)
class RunControl:
    """What a live handle needs of a run: when it was last (re)started, its latest abort
    request, its status, and the step every new point must pass."""

    started_position: int
    abort_position: int | None
    abort_reason: str | None
    status: str
    floor: int | float | None
    kinds: dict[str, list[Any]] = field(default_factory=dict)
    """Each non-metric key's kind and last step (``[kind, step]``)."""


@dataclass(slots=True, frozen=True)
class TokenRow:
    """An access token as the database keeps it: never the secret, only its SHA-256
    (``digest``, hex). Times are seconds since the epoch; ``expires_at`` None never
    expires, ``revoked_at`` None is not revoked."""

    id: str
    project: str
    role: str
    digest: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None


class Store(ABC):
    """The log and its projections on one database.

    Every method may raise ``ClosedError`` when called before ``open`` or after ``close``.
    """

    upcasters: Upcasters

    @abstractmethod
    async def open(self) -> None:
        """Connect, create or migrate the schema, and check the projections' checkpoints."""

    @abstractmethod
    async def close(self) -> None:
        """Close every connection. Idempotent."""

    # The log -------------------------------------------------------------------------------

    @abstractmethod
    async def append(self, requests: Sequence[AppendRequest], *,
                     now: float) -> list[list[Record] | BaseException]:
        """Append each request in one shared transaction (group commit).

        Returns, per request, the records of its events — one per distinct event id, those it
        added and, for events already in the log (a retry after a lost reply), the records
        stored for them — or the error that refused it: ``ConcurrencyError`` for a version
        mismatch, ``RunExistsError``, ``RunNotFoundError`` or ``ValidationError`` from the
        projections. A refused request changes nothing; the others commit. Errors of the
        database itself are raised, and then nothing commits.
        """

    @abstractmethod
    async def head(self) -> int:
        """The highest position in the log (0 when empty)."""

    async def wait_for_head(self, beyond: int, within: float) -> int:
        """The head, once it passes ``beyond`` or ``within`` seconds have gone by.

        This default polls once per ``within``; a backend that can be told about commits
        (PostgreSQL's LISTEN) answers as soon as one happens, and may wait longer than
        ``within`` when nothing does.
        """
        del beyond
        await anyio.sleep(within)
        return await self.head()

    @abstractmethod
    async def read(self, after: int, *, limit: int, where: EventFilter = ANY,
                   arrays: bool = False) -> tuple[list[Record], int]:
        """Up to ``limit`` matching records after position ``after``, in order, and the
        position the read has covered (the last one returned, or the head when fewer than
        ``limit`` matched)."""

    @abstractmethod
    async def stream_records(self, project: str, run_ids: Sequence[str],
                             upto: int) -> list[Record]:
        """Every record of the given runs' streams at or below ``upto``, in log order."""

    # Projections ---------------------------------------------------------------------------

    @abstractmethod
    async def get_run(self, project: str, run_id: str, *,
                      now: float | None = None) -> RunState | None:
        """The run's state, or None; with ``now``, its status judged at that instant
        (``engine._core.heartbeat``), else as recorded."""

    @abstractmethod
    async def list_runs(self, project: str, *, include_deleted: bool,
                        selection: Selection | None = None) -> list[RunState]:
        """The runs of the project that ``selection`` picks, in its order (without one:
        every run, oldest first). Deleted runs only with ``include_deleted``.

        Compile the selection with ``engine._query.sql`` for the backend's dialect: every value is
        a bound parameter.
        """

    @abstractmethod
    async def group_runs(self, project: str, *, include_deleted: bool, selection: Selection,
                         by: Sequence[Field],
                         aggregates: Sequence[Field] | None) -> list[RunGroup]:
        """The selected runs grouped by the values of ``by``, with run counts and the count,
        mean, min and max of each metric aggregate (``None``: every metric's ``last``), in
        the order of the group keys."""

    @abstractmethod
    async def read_series(self, project: str, run_id: str, metric: str, *,
                          low: int | float | None, high: int | float | None,
                          max_points: int | None) -> Series | None:
        """The run's effective series (None when the run does not exist)."""

    @abstractmethod
    async def read_entries(self, project: str, run_id: str, key: str, *,
                           tail: int | None) -> tuple[str | None, list[EntryRow]] | None:
        """The run's effective entries under ``key`` (text, file, histogram or
        confusion-matrix series; a fork's inherited ones included, a rewind's cut ones not)
        as ``(step, timestamp, plain value)`` in step order, the last ``tail`` of them when
        given; with the kind the key holds (None: no non-metric kind). None when the run
        does not exist."""

    @abstractmethod
    async def get_experiment(self, project: str, name: str) -> Experiment:
        """The experiment's head and history (empty when it has no runs)."""

    @abstractmethod
    async def lineage(self, project: str, run_id: str) -> Lineage | None:
        """Ancestors and descendants of the run (None when it does not exist)."""

    @abstractmethod
    async def run_count(self, project: str) -> int:
        """How many runs were ever created in the project (deleted ones included)."""

    @abstractmethod
    async def projects(self) -> dict[str, int]:
        """Every project with runs, by name, and how many runs each ever created (deleted
        ones included)."""

    @abstractmethod
    async def ancestry(self, project: str, run_id: str) -> list[str] | None:
        """The run id and its ancestors' ids, the run first (None when it does not exist)."""

    @abstractmethod
    async def rebuild(self, progress: Progress | None = None) -> None:
        """Rebuild every projection from the log into fresh tables and swap them in."""

    @abstractmethod
    async def check(self, progress: Callable[[int], None] | None = None) -> list[str]:
        """Verify the database: the log (positions, versions, payloads), then every
        projection against a rebuild; one line per finding, naming where (empty: healthy).
        ``progress`` is called with the position the check has read up to."""

    @abstractmethod
    async def drop_retired(self) -> None:
        """Drop the tables a rebuild swapped out (reclaiming their space takes a while, so it
        is not part of the swap)."""

    @abstractmethod
    async def verify_rebuild(self) -> list[str]:
        """Rebuild every projection into scratch tables and compare them with the live ones,
        row for row; returns the names of the tables that differ (empty: they are equal)."""

    # File bytes ----------------------------------------------------------------------------

    @abstractmethod
    async def blob_transaction(self, work: Callable[[Session], Awaitable[T]], *,
                               streaming: bool = False) -> T:
        """``work(session)`` inside one short write transaction on the tables ``blobs`` and
        ``blob_chunks`` (the blob store in the run database, ``blobdb``). ``work`` may run
        again after a transient error, so it must be idempotent. ``streaming``: it writes a
        chunk of a large blob, which the backend keeps out of its caches as far as it can.

        :raises StorageError: the database failed.
        """

    @property
    @abstractmethod
    def blob_reader(self) -> Reader:
        """Where reads of the blob tables run."""

    @property
    def blob_writers(self) -> int:
        """How many ``blob_transaction`` calls of one put may run at once: 1 unless the
        backend writes them on connections of their own."""
        return 1

    def own_blobs(self) -> BlobStore | None:
        """The blob store that goes with this store when a tracker names none: None — the
        blob tables of this very database; a remote store answers with its server's."""
        return None

    # Liveness ------------------------------------------------------------------------------

    @abstractmethod
    async def beat(self, runs: Sequence[tuple[str, str]], at: float) -> None:
        """Record that these runs are alive at ``at``."""

    @abstractmethod
    async def stale_runs(self, now: float, crash_timeout: float) -> list[StaleRun]:
        """Running runs silent (no heartbeat, no event) for longer than their crash timeout
        at ``now``; ``crash_timeout`` for runs that promised none."""

    @abstractmethod
    async def jobs(self, project: str, *, queues: Sequence[str] | None,
                   statuses: Sequence[str] | None, run_ids: Sequence[str] | None = None,
                   limit: int | None = None, now: float | None = None) -> list[JobRow]:
        """The project's jobs in these queues and statuses (None: any), oldest first; with
        ``now``, their statuses judged at that instant (``engine._core.heartbeat``), else
        as recorded."""

    @abstractmethod
    async def controls(self, runs: Sequence[tuple[str, str]]) -> dict[tuple[str, str],
                                                                     RunControl]:
        """The control state of each of the given runs that exists."""

    # Tokens (the server's access control) ----------------------------------------------------

    @abstractmethod
    async def save_token(self, token: TokenRow) -> None:
        """Store a new token.

        :raises ValidationError: when its id or digest is taken.
        """

    @abstractmethod
    async def list_tokens(self, project: str | None) -> list[TokenRow]:
        """Every token (of ``project``, when given), oldest first, revoked ones included."""

    @abstractmethod
    async def find_token(self, digest: str) -> TokenRow | None:
        """The token with that digest, revoked or expired included (None when unknown)."""

    @abstractmethod
    async def revoke_token(self, token_id: str, at: float) -> TokenRow | None:
        """Revoke the token (from ``at`` on; a revoked one stays revoked as it was); the
        token as it now is, or None when there is no such token."""
