"""The storage interface: what the gateway needs from a store, whatever the backend.

Times are Unix epoch milliseconds (``*_ms``). Payloads are stored as JSON bytes, already
normalised and hashed: a store never sees plain PII.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import msgspec

from capigate.events import NewEvent
from capigate.responses import AttemptView, EventView, OutboxView, RequestRecord, RequestView

__all__ = [
    "AttemptOutcome",
    "DeadLetterQuery",
    "Delivery",
    "DeliveryAttempt",
    "EventQuery",
    "IngestResult",
    "JournalRecord",
    "NewEvent",
    "OutboxDepth",
    "PruneResult",
    "QualityRow",
    "RequestQuery",
    "RequestRecord",
    "RequestView",
    "Retention",
    "SchemaStatus",
    "StatsBucket",
    "Store",
    "StoredEvent",
    "WriterStats",
]

_DAY_MS: Final = 86_400_000


# What the store reads back is exactly what the query API shows: one type, not a copy per layer.
StoredEvent = EventView
DeliveryAttempt = AttemptView
OutboxDepth = OutboxView


class IngestResult(msgspec.Struct, kw_only=True):
    stored: int
    duplicates: list[int]  # positions, in the batch, of events not stored because seen before


class JournalRecord(RequestRecord, kw_only=True):
    """A journal entry with what the inspector keeps beside it (never in the log line)."""

    # A refused request's body, PII treated as at ingest and capped (capigate/kept.py).
    body: bytes | None = None
    # What the request can be found by: ("name" | "dedupe_id" | "transaction_id", value) pairs.
    keys: list[tuple[str, str]] = msgspec.field(default_factory=list)


class EventQuery(msgspec.Struct, kw_only=True):
    source: str | None = None
    api: str | None = None  # axon or appsflyer: a pixel and an app may share an id
    name: str | None = None
    status: str | None = None
    test_tag: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    cursor: int | None = None  # return rows with id < cursor (newest first)
    limit: int = 50
    # The events of one request (with its received_at, which finds them through an index).
    request: tuple[str, int] | None = None


class RequestQuery(msgspec.Struct, kw_only=True):
    source: str | None = None
    api: str | None = None
    status: int | None = None  # exact
    status_class: int | None = None  # 2, 4, 5: any status in [200, 300) …
    client_ip: str | None = None
    test_tag: str | None = None
    # (kind, value) pairs of JournalRecord.keys, every one of which the request has.
    keys: list[tuple[str, str]] = []
    since_ms: int | None = None
    until_ms: int | None = None
    cursor: int | None = None
    limit: int = 50


class StatsBucket(msgspec.Struct, kw_only=True):
    """What one source did in one time bucket ``[start_ms, start_ms + bucket_ms)``, for the
    inspector's charts. ``start_ms`` is a multiple of ``bucket_ms`` (buckets stay put from
    one call to the next). Request counts come from the journal, by ``received_at``."""

    start_ms: int
    source: str | None  # None: requests that named no source (no pixel_id, unknown path)
    # The journal's api of the requests: a source's ("axon" or "appsflyer": a pixel and an app
    # may share an id), and with source None, "axon" or "appsflyer" for ingest calls that did
    # not say their pixel or app; others ("inspector", "unknown") are not calls to an API at
    # all (a login, an unknown path). None with a source: totals kept before schema version 8
    # (SQLite; 7, PostgreSQL) that the journal no longer held to tell their api.
    api: str | None = None
    requests: int = 0
    failed_requests: int = 0  # status >= 400
    events_received: int = 0
    events_accepted: int = 0  # stored
    events_duplicate: int = 0
    events_refused: int = 0  # received, but neither stored nor a duplicate
    warnings: int = 0  # warnings given, summed over the requests
    dead_letters: int = 0  # events received in the bucket whose delivery was given up (status "dead")


class QualityRow(msgspec.Struct, kw_only=True, array_like=True):
    """Accepted events of one source and name with the same match keys (capigate/matchkeys.py),
    summed over a window of whole hours: ``events`` stored, ``duplicates`` caught."""

    api: str
    source: str
    name: str
    match_keys: int
    events: int
    duplicates: int


class Retention(msgspec.Struct, kw_only=True):
    """How long ``prune`` keeps each kind of row, in days; ``math.inf`` keeps them for ever."""

    dedupe_days: float = 30.0
    journal_days: float = 7.0
    journal_max_rows: int = 1_000_000
    # Accepted events (with their outbox rows and attempts); an event still waiting in the
    # outbox (pending or dead) is kept whatever its age.
    event_days: float = 30.0


def cutoff_ms(now_ms: int, days: float) -> int:
    """The time before which a row is more than ``days`` old at ``now_ms``: 0, before every
    row, when ``days`` is ``inf`` or longer than the epoch."""
    before = now_ms - days * _DAY_MS
    return round(before) if math.isfinite(before) and before > 0 else 0


class PruneResult(msgspec.Struct, kw_only=True):
    dedupe_keys: int
    requests: int
    events: int  # the events deleted, with their outbox rows and their attempts


class Delivery(msgspec.Struct, kw_only=True):
    """One event claimed by a relay worker, under a lease, for one destination."""

    event_id: int
    destination: str
    api: str
    source: str
    name: str
    dedupe_id: str | None
    payload: bytes  # the stored (normalised, hashed) JSON
    attempts: int  # attempts made before this one
    queued_at_ms: int  # with max_age_hours, decides when retrying stops
    received_at_ms: int  # when capigate received the event (AppsFlyer's eventTime if it has none)


class AttemptOutcome(msgspec.Struct, kw_only=True):
    """What one attempt to deliver one event did, and what the outbox does next.

    ``result``: "delivered" and "dead" are final; "retry" makes the delivery due again at
    ``next_attempt_at_ms``; "split" (a batch refused as a whole, now being retried in halves
    by the same owner to find the event at fault) only records the attempt and extends the
    owner's lease to ``next_attempt_at_ms``: it does not count in ``Delivery.attempts``;
    "interrupted" (the relay stopped before the upstream answered) records the attempt and
    gives the lease back, the delivery due again at ``next_attempt_at_ms`` (None: at once),
    not counted in ``Delivery.attempts`` either: the stop was ours, not the upstream's failure.
    One upstream request carrying many events gives one outcome per event, all sharing the
    same ``response_headers`` and ``response_body`` objects (a store may keep them once).
    """

    event_id: int
    destination: str
    at_ms: int
    result: Literal["delivered", "retry", "dead", "split", "interrupted"]
    status: int | None = None  # upstream HTTP status; None for a network error or timeout
    latency_ms: float = 0.0
    error: str | None = None  # network error, timeout, or why it was given up
    response_headers: dict[str, str] = {}
    response_body: str = ""  # verbatim, cut at 64 KiB
    next_attempt_at_ms: int | None = None  # for "retry": when due again; for "split": the new lease expiry


class DeadLetterQuery(msgspec.Struct, kw_only=True):
    destination: str | None = None
    source: str | None = None
    status: int | None = None  # last upstream status
    since_ms: int | None = None  # on the event's received_at
    until_ms: int | None = None


class WriterStats(msgspec.Struct, kw_only=True):
    """Counters of a store's writer: ``jobs / groups`` is the mean group-commit size."""

    groups: int = 0
    jobs: int = 0


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a store's database schema is, for ``capigate migrate`` and ``serve``'s check."""

    store: str  # what to call it in messages (a PostgreSQL password is hidden)
    version: int  # 0: no schema yet
    latest: int  # the newest version this capigate knows
    pending: list[tuple[int, str]]  # (version, what it does)

    @property
    def too_new(self) -> bool:
        return self.version > self.latest

    def refusal(self) -> str:
        return (
            f"{self.store}: the database has schema version {self.version}; this capigate knows up to "
            f"{self.latest}: upgrade capigate before starting it on this database"
        )


class Store(Protocol):
    """One gateway node's access to its store. All methods are safe to call concurrently."""

    # True when a request is found by the dedupe id of an event it stored through the store's
    # own dedupe keys (SQLite's name the event), so that its journal entry need not index it.
    @property
    def finds_stored_dedupe_ids(self) -> bool: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def schema_status(self) -> SchemaStatus:
        """Where the database's schema is, read without changing it (no open store needed).
        StoreError if the database is unreachable."""
        ...

    async def migrate(self) -> None:
        """Apply the pending schema steps, as ``open()`` does first (no open store needed)."""
        ...

    async def ingest(self, events: Sequence[NewEvent], *, request_id: str, received_at_ms: int) -> IngestResult:
        """Write the events of one request in one transaction, first ``dedupe_id`` per source
        winning (within the batch too). Returns once committed durably."""
        ...

    async def record_requests(self, records: Sequence[RequestRecord]) -> None:
        """Append several entries to the journal in one write (the gateway buffers them)."""
        ...

    async def query_events(self, query: EventQuery) -> tuple[list[StoredEvent], int | None]:
        """Newest first; the second value is the cursor of the next page, if any."""
        ...

    async def query_requests(self, query: RequestQuery) -> tuple[list[RequestView], int | None]:
        """(row id, record) pairs, newest first, and the cursor of the next page."""
        ...

    async def query_request(self, request_id: str) -> tuple[RequestView, bytes | None, list[tuple[str, str]]] | None:
        """One journal entry, and what is kept beside it: the refused body, the keys."""
        ...

    async def query_quality(self, source: str | None, *, since_ms: int, until_ms: int) -> list[QualityRow]:
        """The match-key rollup of ``[since_ms, until_ms)`` (whole hours; whole days are read
        from the daily rollup), summed per (api, source, name, match_keys); test events are
        not counted."""
        ...

    async def query_stats(
        self, source: str | None, *, since_ms: int, until_ms: int, bucket_ms: int
    ) -> list[StatsBucket]:
        """Per (bucket, source) totals of the requests received in ``[since_ms, until_ms)``
        (all sources when ``source`` is None; those naming none per (bucket, api)), ordered by
        bucket, source, api; buckets with
        nothing in them are left out. Reads only that window, through the time indexes: the
        inspector calls it every few seconds on a journal of a million rows."""
        ...

    async def prune(self, now_ms: int, retention: Retention) -> PruneResult:
        """Delete the dedupe keys, journal entries and events older than ``retention`` keeps
        them. An event goes with its outbox row and the attempts no kept event refers to; an
        event the outbox still holds (pending, or dead and so replayable) stays whatever its
        age. Events are deleted a few thousand per transaction, so that a first prune of a
        large store never holds the writer for long."""
        ...

    async def check_writable(self) -> None:
        """Raise StoreError unless a write would succeed now."""
        ...

    # --- the inspector's login sessions (sqlite/sessions.py, postgres/sessions.py) -----------

    async def put_session(self, key: str, expires_at_ms: int, now_ms: int) -> None:
        """Record a session (``key`` is a digest, never the cookie), and forget the expired ones."""
        ...

    async def session_expires_at(self, key: str) -> int | None:
        """When the session ``key`` expires; None when there is no such session (or it ended)."""
        ...

    async def end_session(self, key: str) -> None: ...

    # --- relay outbox -------------------------------------------------------------------
    # An event with a destination gets an outbox row in ingest's transaction, state
    # "pending"; the status query_events reports for the event follows it: pending ->
    # delivered | dead (a store may keep it in the events row or read it from the outbox).

    async def claim(self, destination: str, *, owner: str, limit: int, now_ms: int, lease_ms: int) -> list[Delivery]:
        """Lease up to ``limit`` deliveries due at ``now_ms`` (pending with next attempt due,
        or leased by anyone whose lease expired), oldest event first."""
        ...

    async def settle(self, outcomes: Sequence[AttemptOutcome], *, owner: str) -> None:
        """Record each attempt and move its delivery on (delivered, retry at a time, dead),
        releasing the lease, in one transaction; a "split" outcome keeps the lease and moves
        its expiry to ``next_attempt_at_ms``. Outcomes for a lease ``owner`` no longer holds
        are recorded as attempts but do not change the delivery."""
        ...

    async def release(self, *, owner: str) -> int:
        """Give back every lease ``owner`` holds (graceful shutdown); returns how many."""
        ...

    async def query_attempts(self, event_id: int) -> list[DeliveryAttempt]:
        """Every attempt for one event, oldest first."""
        ...

    async def replay(self, query: DeadLetterQuery, *, now_ms: int) -> int:
        """Queue the matching dead deliveries again (attempts reset); returns how many."""
        ...

    async def replayed_since(self, destination: str, since_ms: int) -> bool:
        """Whether ``replay`` queued events of ``destination`` again at or after ``since_ms``
        (and none has been tried since): the relay lifts a pause on it."""
        ...

    async def outbox_depths(self) -> list[OutboxDepth]: ...
