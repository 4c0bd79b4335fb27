"""Response bodies of capigate's own API, shared by the server and the SDK."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from capigate.errors import Problem

__all__ = [
    "DROPPED_SILENTLY",
    "EVENT_APIS",
    "REQUEST_APIS",
    "Accepted",
    "AttemptView",
    "ErrorBody",
    "EventDetail",
    "EventView",
    "EventsPage",
    "KeyCoverage",
    "OutboxPage",
    "OutboxView",
    "QualityGroup",
    "QualityReport",
    "Reason",
    "ReplayRequest",
    "ReplayResult",
    "RequestDetail",
    "RequestView",
    "RequestsPage",
    "StoreFailure",
]

# A 503 whose write was sent to the store and not answered (StoreError.maybe_stored): the
# events may be stored, and a client that repeats them may store them twice.
MAYBE_STORED_HEADER: Final = "x-capigate-maybe-stored"


class Accepted(msgspec.Struct, kw_only=True):
    """200 from POST /v1/event (and /inappevent with Accept: application/json)."""

    status: str = "ok"
    received: int
    stored: int
    duplicates: int
    duplicate_events: list[int] = []
    warnings: list[Problem] = []
    test_tag: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every 4xx/5xx JSON body: a machine code, a sentence, and the problems with their paths."""

    status: str = "error"
    error: str
    message: str
    problems: list[Problem] = []
    warnings: list[Problem] = []


# The ``api`` of an event, and of a journal entry: an ingest API's, the admin API's, the
# inspector's (a /login attempt, its pages), capigate's own (a journal note), or "unknown" (a
# path no route knows). The API's ``?api=`` filters and the CLI's ``--api`` take these (the CLI
# had a list of its own, without "inspector": login attempts could not be listed, a trial).
EVENT_APIS: Final = ("axon", "appsflyer")
REQUEST_APIS: Final = (*EVENT_APIS, "admin", "inspector", "capigate", "unknown")

# The warning code of AppsFlyer's silent failure (an iOS app id sent without its ``id``:
# answered 200 OK, the event dropped), by which the inspector and ``capigate events`` show it.
DROPPED_SILENTLY: Final = "ios_app_id_without_prefix"


class EventView(msgspec.Struct, kw_only=True):
    id: int
    api: str
    source: str
    name: str
    event_time: int
    received_at: int
    dedupe_id: str | None
    status: str
    test_tag: str | None
    request_id: str
    payload: Any


class EventsPage(msgspec.Struct, kw_only=True):
    events: list[EventView]
    next: str | None


class AttemptView(msgspec.Struct, kw_only=True):
    """One relay attempt of an event: what the upstream answered, verbatim (the store's
    ``DeliveryAttempt``: one type)."""

    id: int
    event_id: int
    destination: str
    at: int  # epoch ms
    result: str  # delivered | retry | dead | split | interrupted
    status: int | None  # None: network error or timeout (see error)
    latency_ms: float
    error: str | None
    response_headers: dict[str, str]
    response_body: str


class EventDetail(EventView, kw_only=True):
    """GET /api/events/{id}: the event and every relay attempt, oldest first."""

    attempts: list[AttemptView]


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """POST /api/replay: which dead-lettered events to queue again (all of them if empty)."""

    destination: str | None = None  # axon:<pixel_id> | appsflyer:<app_id>
    source: str | None = None
    status: int | None = None  # the last upstream status
    since: int | str | None = None  # received at or after: epoch ms or ISO 8601
    until: int | str | None = None  # received before


class ReplayResult(msgspec.Struct, kw_only=True):
    requeued: int


class OutboxView(msgspec.Struct, kw_only=True):
    """One destination's relay queue (the store's ``OutboxDepth``: one type)."""

    destination: str
    pending: int  # waiting or leased
    dead: int
    delivered: int
    oldest_pending_at: int | None  # epoch ms: received_at of the oldest undelivered event


class OutboxPage(msgspec.Struct, kw_only=True):
    """GET /api/outbox: the relay queue of each destination."""

    destinations: list[OutboxView]


class RequestRecord(msgspec.Struct, kw_only=True):
    """One request as the journal keeps it, written after the answer."""

    request_id: str
    received_at: int  # epoch ms
    api: str
    source: str | None
    method: str
    path: str
    status: int
    client_ip: str | None
    user_agent: str | None
    latency_ms: float
    events_received: int = 0
    events_stored: int = 0
    events_duplicate: int = 0
    problems: list[Problem] = []
    warnings: list[Problem] = []
    test_tag: str | None = None


class RequestView(RequestRecord, kw_only=True):
    """A journal entry read back: the record and its row id, which pages the journal."""

    id: int


class RequestDetail(RequestView, kw_only=True):
    """GET /api/requests/{request_id}: the journal entry, the body of a refused request (PII
    treated as at ingest; None when accepted or never read), and the events it stored."""

    body: Any
    keys: list[tuple[str, str]]
    events: list[EventView]


class KeyCoverage(msgspec.Struct, kw_only=True):
    """One match key over a group's stored events: how many carried it, and how it arrived."""

    key: str  # aleid … ; "ip_ua" is client_ip_address + client_user_agent together
    share: float  # of the group's stored events carrying it, 0..1
    sent: int  # as sent (an identifier that is never hashed)
    hashed_here: int  # sent plain, hashed by capigate
    already_hashed: int  # sent as a SHA-256 hex digest
    missing: int


class Reason(msgspec.Struct, kw_only=True):
    rule: str  # the rule's name in docs/quality.md
    level: str  # "poor" | "fair" | "note"
    text: str


class QualityGroup(msgspec.Struct, kw_only=True):
    """The events of one source and name in the window: will they match?"""

    api: str
    source: str
    name: str
    events: int  # stored
    duplicates: int  # received again and not stored (caught by dedupe_id)
    with_dedupe_id: float  # share of the stored events, 0..1
    coverage: list[KeyCoverage]
    verdict: str  # "good" | "fair" | "poor"
    reasons: list[Reason]


class QualityReport(msgspec.Struct, kw_only=True):
    """GET /api/quality: per source and event name, over whole hours ``[since, until)``."""

    since: int
    until: int
    groups: list[QualityGroup]


class RequestsPage(msgspec.Struct, kw_only=True):
    requests: list[RequestView]
    next: str | None


class StoreFailure(msgspec.Struct, kw_only=True):
    """A store's last failure, as /readyz gives it (capigate/health.py)."""

    at: int  # epoch ms
    error: str
    hung: bool = False  # no answer in time, rather than a refusal: a probe's write may end it
