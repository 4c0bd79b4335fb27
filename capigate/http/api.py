"""The admin query API: ``GET /api/events``, ``GET /api/events/{id}`` (with its relay
attempts), ``GET /api/requests``, and the relay's ``GET /api/outbox`` and ``POST /api/replay``."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import time
from typing import Any, Final

import msgspec

from capigate.axon.rules import stored_dedupe_id
from capigate.checking import Report
from capigate.duplicates import repeated_keys
from capigate.errors import Problem
from capigate.http.asgi import Request, Response, json_response
from capigate.http.journal import may_wait_elsewhere
from capigate.http.outcome import Outcome
from capigate.http.params import (
    Query,
    encode_cursor,
    parse_id,
    query_choice,
    query_cursor,
    query_limit,
    query_text,
    query_time,
)
from capigate.http.session import has_session, lacks_csrf_header
from capigate.http.state import Gateway
from capigate.personal import shown_id
from capigate.relay.destinations import relayed, replay_refusal
from capigate.responses import (
    EVENT_APIS,
    REQUEST_APIS,
    ErrorBody,
    EventDetail,
    EventsPage,
    OutboxPage,
    ReplayRequest,
    ReplayResult,
    RequestDetail,
    RequestsPage,
)
from capigate.store.base import DeadLetterQuery, EventQuery, RequestQuery, RequestView
from capigate.unreadable import field_problem, parse_error_first, unreadable

__all__ = [
    "EVENT_APIS",
    "EVENT_PREFIX",
    "REQUEST_PREFIX",
    "admin_refusal",
    "get_event",
    "get_events",
    "get_outbox",
    "get_request",
    "get_requests",
    "post_replay",
    "refused_admin_get",
]

MAX_LIMIT = 1000
EVENT_PREFIX = "/api/events/"
REQUEST_PREFIX = "/api/requests/"
MAX_REQUEST_EVENTS = 100
_STATUS = re.compile(r"[1-5](?:[0-9]{2}|xx)")
_REQUEST_ID = re.compile(r"[0-9a-f]{1,64}")
_KEY_FILTERS = ("name", "dedupe_id", "transaction_id")
# An event's ids are found through the journal (a trial asked /api/events for a dedupe_id).
_FOUND_BY_THEIR_REQUESTS: Final = {
    key: f"/api/requests?{key}=… finds the request that sent it, with its events" for key in _KEY_FILTERS[1:]
} | {"client_ip": "an event keeps no address; /api/requests?client_ip=… finds the requests from it, with their events"}
_decode_body = msgspec.json.Decoder().decode
MAX_REPLAY_BODY = 4096
EVENT_STATUSES: Final = ("stored", "pending", "delivered", "dead")  # stored: not relayed
_decode_replay = msgspec.json.Decoder(ReplayRequest).decode
log = logging.getLogger("capigate.admin")
# One journal entry as the store reads it: the entry, its kept body, its keys.
JournalEntry = tuple[RequestView, bytes | None, list[tuple[str, str]]]


_BEARER: Final = "send Authorization: Bearer <admin_token>"


async def admin_refusal(request: Request, gateway: Gateway, outcome: Outcome, hint: str = _BEARER) -> Response | None:
    """None when the request is the admin's: the admin token as a bearer token, or a live
    inspector session. A wrong bearer token counts against its client in the throttle of
    /login (one counter: alternating the two doors gains nothing); past it a bearer token,
    the right one too, gets 429 with Retry-After. Refused tokens are journaled and logged,
    never the token itself."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    admin_token = gateway.config.server.admin_token
    client = request.client_ip
    if token is not None:
        wait_s = gateway.logins.retry_after_s(client)
        if wait_s:
            return _throttled(client, wait_s, outcome)
        if token and hmac.compare_digest(token.encode(), admin_token.encode()):
            gateway.logins.succeeded(client)
            return None
    # The inspector page's session cookie (capigate/http/session.py).
    if await has_session(request.method, request.headers, gateway.store, admin_token):
        return None
    if token is not None:
        gateway.logins.failed(client)
        outcome.problems = [Problem("authorization", "wrong_admin_token", "the admin token is wrong")]
        outcome.journaled = True
        log.warning("admin token from %s refused: wrong admin token", client)
    elif await lacks_csrf_header(request.method, request.headers, gateway.store, admin_token):
        # Authenticated, and refused: 403, no challenge. A 401 says "log in again", which the
        # page does on one (inspector.js); the page always sends the header, so never meets this.
        return json_response(403, ErrorBody(error="forbidden", message=_CSRF_HINT))
    body = ErrorBody(error="unauthorized", message=hint)
    return json_response(401, body, [("www-authenticate", 'Bearer realm="capigate admin"')])


_CSRF_HINT: Final = (
    "the session cookie is valid, but a write with it must also carry the header X-Capigate-Inspector: 1 "
    "(a guard against cross-site requests, CSRF, which a page of another site cannot add); "
    "or send Authorization: Bearer <admin_token>"
)


def _throttled(client: str | None, wait_s: int, outcome: Outcome) -> Response:
    message = f"too many wrong tokens; retry in {wait_s} s"
    outcome.problems = [Problem("authorization", "too_many_wrong_tokens", message)]
    outcome.journaled = True
    log.warning("admin token from %s refused: too many wrong tokens, retry in %d s", client, wait_s)
    body = ErrorBody(error="too_many_wrong_tokens", message=message)
    return json_response(429, body, [("retry-after", str(wait_s))])


async def refused_admin_get(
    request: Request, gateway: Gateway, outcome: Outcome, *, takes_query: bool = False, hint: str = _BEARER
) -> Response | None:
    """What every admin GET asks first: None when it is to be answered; else the answer that
    refuses it. Its api is the admin API's (a refused token is journaled); the admin's token
    or session (``admin_refusal``, ``hint`` its 401's message); and, for an endpoint that takes
    no query parameter (not ``takes_query``: one that does refuses those it does not read
    itself), none given."""
    outcome.api = "admin"
    denied = await admin_refusal(request, gateway, outcome, hint)
    if denied is not None or takes_query:
        return denied
    return _unknown_parameters(request)


def _unknown_parameters(request: Request) -> Response | None:
    """The 400 of an endpoint that takes no query parameter, given one: /api/outbox?x=1 was
    answered 200, where /api/events and /api/requests refuse a parameter they do not take
    (a misspelt filter is never a silently unfiltered answer)."""
    if not request.query:
        return None
    report = Report()
    Query(request.query, request.repeated).refuse_unread(report)
    return _bad_query(report)


async def get_events(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    refused = await refused_admin_get(request, gateway, outcome, takes_query=True)
    if refused:
        return refused
    report = Report()
    q = Query(request.query, request.repeated)
    query = EventQuery(
        source=_kept_id(q, "source", report),
        api=query_choice(q, "api", report, EVENT_APIS),
        name=query_text(q, "name", report),
        status=query_choice(q, "status", report, EVENT_STATUSES),
        test_tag=_kept_id(q, "test_tag", report),
        since_ms=query_time(q, "since", report),
        until_ms=query_time(q, "until", report),
        cursor=query_cursor(q, report, "events"),
        limit=query_limit(q, report, maximum=MAX_LIMIT),
    )
    q.refuse_unread(report, _FOUND_BY_THEIR_REQUESTS)
    if not report.ok:
        return _bad_query(report)
    rows, next_cursor = await gateway.store.query_events(query)
    return json_response(200, EventsPage(events=rows, next=encode_cursor("events", next_cursor)))


def _kept_id(q: Query, name: str, report: Report) -> str | None:
    """A source or test tag filter as the store keeps one: a tag holding an email address is
    kept as ``<email address …>`` (personal.shown_id), and a filter for the tag as sent found
    nothing (a trial)."""
    value = query_text(q, name, report)
    return None if value is None else shown_id(value)


def _kept_key(key: str, value: str) -> str:
    """A key filter as the journal keeps the key: a dedupe_id that is an email address is kept
    hashed (rules.stored_dedupe_id), and a filter for the id as sent found nothing (a trial)."""
    return stored_dedupe_id(value) if key == "dedupe_id" else value


async def get_requests(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    refused = await refused_admin_get(request, gateway, outcome, takes_query=True)
    if refused:
        return refused
    report = Report()
    q = Query(request.query, request.repeated)
    status, status_class = _status(q, report)
    query = RequestQuery(
        source=_kept_id(q, "source", report),
        api=query_choice(q, "api", report, REQUEST_APIS),
        status=status,
        status_class=status_class,
        client_ip=_client_ip(q, report),
        test_tag=_kept_id(q, "test_tag", report),
        keys=[(key, _kept_key(key, v.strip())) for key in _KEY_FILTERS if (v := query_text(q, key, report))],
        since_ms=query_time(q, "since", report),
        until_ms=query_time(q, "until", report),
        cursor=query_cursor(q, report, "requests"),
        limit=query_limit(q, report, maximum=MAX_LIMIT),
    )
    q.refuse_unread(report)
    if not report.ok:
        return _bad_query(report)
    if gateway.journal is not None:  # the requests this process answered are listed
        await gateway.journal.caught_up()
    rows, next_cursor = await gateway.store.query_requests(query)
    return json_response(200, RequestsPage(requests=rows, next=encode_cursor("requests", next_cursor)))


def _client_ip(q: Query, report: Report) -> str | None:
    """``client_ip``: an IPv4 or IPv6 address, as the journal keeps it; anything else is a 400
    (a trial's ``client_ip=notanip`` was answered an empty page, as if no request had come)."""
    raw = query_text(q, "client_ip", report)
    if raw is None:
        return None
    try:
        ipaddress.ip_address(raw)
    except ValueError:
        report.error(
            "query.client_ip",
            "invalid_format",
            f"client_ip is an IPv4 or IPv6 address; {raw[:40]!r} is not an IP address",
        )
        return None
    return raw


def _status(q: dict[str, str], report: Report) -> tuple[int | None, int | None]:
    """``status``: an exact code (``401``) or a class (``4xx``): (code, None) or (None, class)."""
    raw = (query_text(q, "status", report) or "").strip().lower()
    if not raw:
        return None, None
    if _STATUS.fullmatch(raw) is None:
        report.error("query.status", "invalid_format", "status is an HTTP status code (401) or a class (2xx, 4xx, 5xx)")
        return None, None
    return (None, int(raw[0])) if raw.endswith("xx") else (int(raw), None)


async def get_request(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """``GET /api/requests/{request_id}``: the journal entry with its kept body and its events."""
    refused = await refused_admin_get(request, gateway, outcome)
    if refused:
        return refused
    raw = request.path[len(REQUEST_PREFIX) :]
    found = await _journal_entry(gateway, raw) if _REQUEST_ID.fullmatch(raw) else None
    if found is None:
        return json_response(404, ErrorBody(error="not_found", message=f"no request with id {raw[:80]!r}"))
    view, body, keys = found
    events, _ = await gateway.store.query_events(
        EventQuery(request=(view.request_id, view.received_at), limit=MAX_REQUEST_EVENTS)
    )
    fields = {f: getattr(view, f) for f in view.__struct_fields__}
    detail = RequestDetail(**fields, body=_kept_body(body), keys=keys, events=list(reversed(events)))
    return json_response(200, detail)


# Another process's entry is written within its flush interval (50 ms) and one write.
ELSEWHERE_WAIT_S = 0.5
ELSEWHERE_POLL_S = 0.02


async def _journal_entry(gateway: Gateway, request_id: str) -> JournalEntry | None:
    """The entry of ``request_id``, as soon as its answer went out (the X-Capigate-Request-Id
    a client read): on a miss, this process's buffer is written and the store read again; an
    id another process made lately is awaited for ELSEWHERE_WAIT_S at most (a sibling worker's
    or another node's buffer is written every 50 ms). Costs nothing on a hit."""
    store = gateway.store
    found = await store.query_request(request_id)
    if found is not None or gateway.journal is None:
        return found
    await gateway.journal.caught_up()
    found = await store.query_request(request_id)
    if found is not None or not may_wait_elsewhere(request_id, time.time_ns()):
        return found
    deadline = time.monotonic() + ELSEWHERE_WAIT_S
    while found is None and time.monotonic() < deadline:
        await asyncio.sleep(ELSEWHERE_POLL_S)
        found = await store.query_request(request_id)
    return found


def _kept_body(body: bytes | None) -> Any:
    """The kept body as JSON, or as text when it was cut (capigate/kept.py)."""
    if body is None:
        return None
    try:
        return _decode_body(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace")


async def get_event(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """``GET /api/events/{id}``: the event, with every relay attempt and its upstream answer."""
    refused = await refused_admin_get(request, gateway, outcome)
    if refused:
        return refused
    raw = request.path[len(EVENT_PREFIX) :]
    event_id = parse_id(raw)
    if event_id is None:
        problem = Problem("id", "invalid_format", "the event id is a positive integer, as in /api/events/42")
        body = ErrorBody(error="invalid_path", message=f"{raw!r} is not an event id", problems=[problem])
        return json_response(400, body)
    rows = (await gateway.store.query_events(EventQuery(cursor=event_id + 1, limit=1)))[0]
    if not rows or rows[0].id != event_id:
        return json_response(404, ErrorBody(error="not_found", message=f"no event with id {raw!r}"))
    attempts = await gateway.store.query_attempts(rows[0].id)
    return json_response(200, EventDetail(**msgspec.structs.asdict(rows[0]), attempts=attempts))


async def get_outbox(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """``GET /api/outbox``: pending, dead and delivered events per relay destination."""
    refused = await refused_admin_get(request, gateway, outcome)
    if refused:
        return refused
    return json_response(200, OutboxPage(destinations=await gateway.store.outbox_depths()))


def _refuse_repeated_keys(body: bytes, report: Report) -> None:
    """A write that names a filter twice is refused: ``{"source": "a", "source": "b"}``
    replayed one of them, silently (a trial), where ingest only warns, keeping the last as the
    real APIs do."""
    given = Report()
    repeated_keys(body, "", given)
    for warning in given.warnings:
        report.error(warning.path, "repeated_key", f"{warning.path} is given more than once: give it once")


async def post_replay(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """``POST /api/replay``: queue dead-lettered events again, once their cause is fixed."""
    outcome.api = "admin"
    denied = await admin_refusal(request, gateway, outcome)
    if denied:
        return denied
    report = Report()
    body = await request.body(MAX_REPLAY_BODY)
    try:
        wanted = _decode_replay(body) if body.strip() else ReplayRequest()
    except msgspec.DecodeError as exc:
        report.problems.append(_body_problem(body, exc))
        return _bad_replay(report)
    _refuse_repeated_keys(body, report)
    refusal = replay_refusal(gateway.config, wanted.destination, wanted.source)
    if refusal is not None:
        report.error(refusal[0], "not_relayed", refusal[1])
    times = {k: str(v) for k, v in (("since", wanted.since), ("until", wanted.until)) if v is not None}
    if wanted.status is not None and not 100 <= wanted.status <= 599:
        report.error("status", "out_of_range", "status is an HTTP status code such as 400")
    query = DeadLetterQuery(
        destination=wanted.destination,
        source=wanted.source,
        status=wanted.status,
        since_ms=query_time(times, "since", report, path="since"),
        until_ms=query_time(times, "until", report, path="until"),
    )
    if not report.ok:
        return _bad_replay(report)
    requeued = await gateway.store.replay(query, now_ms=time.time_ns() // 1_000_000)
    if requeued and gateway.relay_wake is not None:
        for destination in _relayed(gateway):
            gateway.relay_wake(destination)
    return json_response(200, ReplayResult(requeued=requeued))


def _relayed(gateway: Gateway) -> list[str]:
    return relayed(gateway.config)


_REPLAY_FIELDS: Final = ", ".join(ReplayRequest.__struct_fields__)


def _body_problem(body: bytes, error: msgspec.DecodeError) -> Problem:
    """A replay body msgspec refused, as a problem at its path; one that is not JSON says so."""
    error = parse_error_first(body, error)
    if isinstance(error, msgspec.ValidationError):
        return field_problem(error, unknown=lambda field: f"`{field}` is not a replay filter; use {_REPLAY_FIELDS}")
    said = unreadable(body, error)
    return Problem(said.path, said.code, f"{said.message}; the body is a JSON object of filters ({_REPLAY_FIELDS})")


def _bad_replay(report: Report) -> Response:
    body = ErrorBody(error="invalid_replay", message="the replay filters are invalid", problems=report.problems)
    return json_response(400, body)


def _bad_query(report: Report) -> Response:
    body = ErrorBody(error="invalid_query", message="the query parameters are invalid", problems=report.problems)
    return json_response(400, body)
