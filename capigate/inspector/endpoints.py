"""The inspector's own admin API (JSON, admin token or session cookie).

``GET /api/sources``: the configured sources, with the spec's examples (never a key).
``GET /api/stats``: per-source totals over time (``Store.query_stats``) and the outbox depths.
``POST /api/test-event``: ``{"source": id, "body": json text}`` (and ``"api"``, axon or appsflyer,
when a pixel and an app share the id), sent through the gateway itself.
``GET /api/quality``: will the events match? Coverage, dedupe health and a verdict (quality.py).
"""

from __future__ import annotations

import heapq
import time
from typing import Final

import msgspec

from capigate.checking import Report
from capigate.epoch import MAX_EPOCH_MILLIS
from capigate.errors import Problem
from capigate.http.api import EVENT_APIS, admin_refusal, refused_admin_get
from capigate.http.asgi import BodyError, Request, Response, json_response
from capigate.http.outcome import Outcome
from capigate.http.params import Query, query_choice, query_integer, query_text, query_time
from capigate.http.state import Gateway
from capigate.inspector.quality import quality_report, report_window
from capigate.inspector.samples import Loopback, SourceInfo, send_to_self, sources, target_api
from capigate.personal import shown_id
from capigate.responses import ErrorBody
from capigate.store.base import OutboxDepth, StatsBucket
from capigate.unreadable import field_problem, parse_error_first, unreadable

__all__ = ["get_quality", "get_sources", "get_stats", "post_test_event"]

MAX_BUCKETS = 500
TOP_UNKNOWN = 5
MIN_BUCKET_MS = 1000
MAX_TEST_BODY_BYTES = 1_048_576
DEFAULT_QUALITY_WINDOW_MS = 86_400_000
INGEST_APIS = frozenset({"axon", "appsflyer"})  # the journal's api of the ingest endpoints


class SourcesPage(msgspec.Struct, kw_only=True):
    sources: list[SourceInfo]
    dedupe_retention_days: float
    now: int


class UnknownSource(msgspec.Struct, kw_only=True):
    id: str
    requests: int


class UnknownSources(msgspec.Struct, kw_only=True):
    """The requests that named a pixel or app no configuration has, as one row: a scan of
    random ids must not become one card each."""

    requests: int = 0
    ids: int = 0  # distinct ids
    top: list[UnknownSource] = []  # the busiest, at most TOP_UNKNOWN


class OtherRequests(msgspec.Struct, kw_only=True):
    """The journaled requests that called no ingest API (a login, an unknown path), as one
    row: they come from no source, so they get no source's card."""

    requests: int = 0
    failed: int = 0


class StatsPage(msgspec.Struct, kw_only=True):
    since: int
    until: int
    bucket_ms: int
    # The configured sources', and (source None, api axon or appsflyer) the ingest calls that
    # did not say their pixel or app.
    buckets: list[StatsBucket]
    unknown: UnknownSources
    other: OtherRequests
    relay: list[OutboxDepth] | None  # None: the store cannot say now
    now: int


class TestEvent(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    source: str
    body: str
    api: str | None = None  # axon or appsflyer: which of a pixel and an app of one id (default: the pixel)


_decode_test_event = msgspec.json.Decoder(TestEvent).decode
_decode_json = msgspec.json.Decoder().decode


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_LOG_IN = "log in to the inspector, or send Authorization: Bearer <admin_token>"


def _invalid(problems: list[Problem]) -> Response:
    return json_response(400, ErrorBody(error="invalid_query", message="the request is invalid", problems=problems))


async def get_sources(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    refused = await refused_admin_get(request, gateway, outcome, hint=_LOG_IN)
    if refused:
        return refused
    now = _now_ms()
    page = SourcesPage(
        sources=sources(gateway.config, now),
        dedupe_retention_days=gateway.config.store.dedupe_retention_days,
        now=now,
    )
    return json_response(200, page, [("cache-control", "no-store")])


async def get_stats(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """``since``, ``until`` (epoch ms or ISO 8601; default the last hour) and ``bucket`` (ms; default a
    sixtieth of the window), ``source`` (default all)."""
    refused = await refused_admin_get(request, gateway, outcome, takes_query=True, hint=_LOG_IN)
    if refused:
        return refused
    report = Report()
    now = _now_ms()
    q = Query(request.query, request.repeated)
    until = _time(q, "until", now, report)
    since = _time(q, "since", until - 3_600_000, report)
    window = until - since if report.ok else None  # None: since or until refused already
    if window is not None and window <= 0:
        report.error("query.since", "out_of_range", "since must be before until")
        window = None
    bucket = _bucket(q, window, report)
    source = query_text(q, "source", report)
    q.refuse_unread(report)
    if not report.ok:
        return _invalid(report.problems)
    if bucket is None:
        bucket = max(MIN_BUCKET_MS, (until - since) // 60)
    buckets = await gateway.store.query_stats(source, since_ms=since, until_ms=until, bucket_ms=bucket)
    ingest, other = _split_other(buckets)
    known, unknown = _split_unknown(ingest, _configured(gateway))
    relay = await gateway.outbox_depths()
    page = StatsPage(
        since=since, until=until, bucket_ms=bucket, buckets=known, unknown=unknown, other=other, relay=relay, now=now
    )
    return json_response(200, page, [("cache-control", "no-store")])


async def get_quality(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """``source``, ``api`` and ``name`` (default all), ``since`` and ``until`` (epoch ms or
    ISO 8601; default the last 24 hours), widened to whole hours, or days (quality.py)."""
    refused = await refused_admin_get(request, gateway, outcome, takes_query=True, hint=_LOG_IN)
    if refused:
        return refused
    report = Report()
    q = Query(request.query, request.repeated)
    until = query_time(q, "until", report)
    since = query_time(q, "since", report)
    source, name = query_text(q, "source", report), query_text(q, "name", report)
    api = query_choice(q, "api", report, EVENT_APIS)
    q.refuse_unread(report)
    until = _now_ms() if until is None else until
    since = until - DEFAULT_QUALITY_WINDOW_MS if since is None else since
    if report.ok and since >= until:
        report.error("query.since", "out_of_range", "since is before until")
    if not report.ok:
        return _invalid(report.problems)
    since, until = report_window(since, until)
    rows = await gateway.store.query_quality(source, since_ms=since, until_ms=until)
    wanted = [r for r in rows if (name is None or r.name == name) and (api is None or r.api == api)]
    dedupe_keys = {a.app_id: a.dedupe_key for a in gateway.config.appsflyer.apps if a.dedupe_key}
    answer = quality_report(wanted, since, until, dedupe_keys)
    return json_response(200, answer, [("cache-control", "no-store")])


def _configured(gateway: Gateway) -> set[tuple[str | None, str]]:
    """The configured sources as (api, id), and as (None, id): the totals of a source kept
    before their api was (StatsBucket.api), which belong to the source configured with that id."""
    config = gateway.config
    pairs = {("axon", p.pixel_id) for p in config.axon.pixels}
    pairs |= {("appsflyer", a.app_id) for a in config.appsflyer.apps}
    return pairs | {(None, source_id) for _, source_id in pairs}


def _split_other(buckets: list[StatsBucket]) -> tuple[list[StatsBucket], OtherRequests]:
    """The buckets of the ingest APIs' requests, and the sum of the others."""
    ingest, other = [], OtherRequests()
    for b in buckets:
        if b.source is None and b.api not in INGEST_APIS:
            other.requests += b.requests
            other.failed += b.failed_requests
        else:
            ingest.append(b)
    return ingest, other


def _split_unknown(
    buckets: list[StatsBucket], configured: set[tuple[str | None, str]]
) -> tuple[list[StatsBucket], UnknownSources]:
    """The buckets of the configured sources (an Axon pixel's by its api: an AppsFlyer app of
    the same id is another source) and of the calls naming none, and the unknown ids' sum."""
    known: list[StatsBucket] = []
    counts: dict[str, int] = {}
    for b in buckets:
        if b.source is None or (b.api, b.source) in configured:
            known.append(b)
        else:
            counts[b.source] = counts.get(b.source, 0) + b.requests
    busiest = heapq.nlargest(TOP_UNKNOWN, counts.items(), key=lambda item: item[1])
    unknown = UnknownSources(
        requests=sum(counts.values()),
        ids=len(counts),
        top=[UnknownSource(id=source_id, requests=n) for source_id, n in busiest],
    )
    return known, unknown


def _bucket(query: Query, window: int | None, report: Report) -> int | None:
    """The ``bucket`` parameter (None when absent, or refused with a problem): one range, said
    once, with what sets each end. Its least is MIN_BUCKET_MS, or more when ``window`` (when
    since and until were read) would otherwise hold over MAX_BUCKETS of them; its most is the
    window (a wider bucket means nothing), or any window's without one."""
    if window is None:
        said = f"bucket is a number of milliseconds, an integer of at least {MIN_BUCKET_MS} (the shortest bucket)"
        low, high, wider = MIN_BUCKET_MS, MAX_EPOCH_MILLIS, "wider than any window"
    else:
        low = max(MIN_BUCKET_MS, window // (MAX_BUCKETS + 1) + 1)
        why = "the shortest bucket" if low == MIN_BUCKET_MS else f"at most {MAX_BUCKETS} buckets of the window"
        high = max(window, MIN_BUCKET_MS)  # a window shorter than a bucket is one bucket
        said = (
            f"bucket is a number of milliseconds, an integer from {low} ({why}) to {high} (the window, since to until)"
        )
        wider = "wider than the window"
    value = query_integer(query, "bucket", report, said)
    if value is None:
        return None
    if value < low:
        report.error("query.bucket", "out_of_range", f"{said}; {value} is below {low}")
    elif value > high:
        report.error("query.bucket", "out_of_range", f"{said}; {value} is {wider}")
    else:
        return value
    return None


def _time(query: Query, key: str, default: int, report: Report) -> int:
    value = query_time(query, key, report)
    return default if value is None else value


async def post_test_event(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    outcome.api = "admin"
    denied = await admin_refusal(request, gateway, outcome, _LOG_IN)
    if denied:
        return denied
    try:
        raw = await request.body(MAX_TEST_BODY_BYTES + 4096)
    except BodyError as exc:
        return json_response(exc.status, ErrorBody(error=exc.code, message=exc.message))
    try:
        ask = _decode_test_event(raw)
    except msgspec.DecodeError as exc:
        return _bad_test_event(_test_event_problem(raw, parse_error_first(raw, exc)))
    if ask.api is not None and ask.api not in EVENT_APIS:
        said = f"api is one of {', '.join(EVENT_APIS)} (or left out: the pixel, else the app), not {ask.api[:40]!r}"
        return _bad_test_event(Problem("api", "invalid_value", said))
    target = target_api(gateway.config, ask.source, ask.api)
    if target is not None and (other := _other_apis_body(gateway, ask.source, ask.body, target)) is not None:
        return _bad_test_event(other)
    if gateway.loopback is None:
        return json_response(503, ErrorBody(error="starting", message="the gateway is starting"))
    answer: Loopback | None = await send_to_self(
        gateway.loopback, gateway.config, ask.source, ask.body.encode(), request.client_ip, api=ask.api
    )
    if answer is None:
        return _bad_test_event(_unknown_source(gateway, ask.source, ask.api))
    return json_response(200, answer, [("cache-control", "no-store")])


def _unknown_source(gateway: Gateway, source: str, api: str | None) -> Problem:
    """No source of ``api`` has the id: an id of the other API's is named as such. An AppsFlyer
    app sent with api axon was told "no pixel or app 'com.example.demo' is configured" (a trial)."""
    if api == "axon" and gateway.config.app(source) is not None:
        said = f'{source!r} is an AppsFlyer app, not an Axon pixel: send "api": "appsflyer" (or leave api out)'
        return Problem("api", "wrong_api", said)
    if api == "appsflyer" and gateway.config.pixel(source) is not None:
        said = f'{source!r} is an Axon pixel, not an AppsFlyer app: send "api": "axon" (or leave api out)'
        return Problem("api", "wrong_api", said)
    return Problem("source", "unknown_source", f"no pixel or app {shown_id(source)!r} is configured")


# What only one API's body has: an Axon batch's list of events; an AppsFlyer event's own fields.
_AXON_KEYS: Final = ("events",)
_APPSFLYER_KEYS: Final = ("appsflyer_id", "eventName", "eventValue")
# The API a test event goes to: what a body of the other API's looks like, what the source is,
# what it takes, and the other API with its kind of source.
_MIXED_UP: Final = {
    "axon": ("an AppsFlyer in-app event", "an Axon pixel", '{"events": [...]}', "appsflyer", "AppsFlyer app"),
    "appsflyer": (
        "an Axon batch",
        "an AppsFlyer app",
        "one event (appsflyer_id, eventName, ...)",
        "axon",
        "Axon pixel",
    ),
}


def _other_apis_body(gateway: Gateway, source: str, body: str, target: str) -> Problem | None:
    """The problem of a body that looks like the other API's: an AppsFlyer event sent to an
    Axon pixel, or an Axon batch to an AppsFlyer app, was answered only the target's own
    refusals (`events` missing; `appsflyer_id` and `eventName` missing), with no hint of the
    mix-up. None when the body is not a JSON object, or has keys of both APIs or of neither:
    the gateway's answer says what is wrong then."""
    try:
        decoded = _decode_json(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    if not isinstance(decoded, dict):
        return None
    axon = [key for key in _AXON_KEYS if key in decoded]
    appsflyer = [key for key in _APPSFLYER_KEYS if key in decoded]
    if bool(axon) == bool(appsflyer) or bool(axon) == (target == "axon"):
        return None
    looks, kind, takes, other_api, other_kind = _MIXED_UP[target]
    config = gateway.config
    apps, pixels = [a.app_id for a in config.appsflyer.apps], [p.pixel_id for p in config.axon.pixels]
    others = apps if other_api == "appsflyer" else pixels
    has = ", ".join(axon or appsflyer)
    said = f"the body looks like {looks} (it has {has}), and {source!r} is {kind}, which takes {takes}"
    if source in others:
        said += f': send "api": "{other_api}" to send it to the {other_kind} of this id'
    elif others:
        named = ", ".join(repr(o) for o in others[:3]) + (", ..." if len(others) > 3 else "")
        said += f": send it to an {other_kind} ({named})"
    else:
        said += f": no {other_kind} is configured"
    return Problem("body", "wrong_api", said)


_TEST_EVENT_SHAPE = 'send {"source": "<pixel or app id>", "body": "<the event\'s JSON, as a string>"}'


def _test_event_problem(raw: bytes, error: msgspec.DecodeError) -> Problem:
    """A test-event body msgspec refused, at the field it names (as /api/replay's)."""
    if not isinstance(error, msgspec.ValidationError):
        return unreadable(raw, error)
    return field_problem(
        error,
        unknown=lambda field: f"`{field}` is not a field of a test event: {_TEST_EVENT_SHAPE}",
        after=f": {_TEST_EVENT_SHAPE}",
    )


def _bad_test_event(problem: Problem) -> Response:
    body = ErrorBody(error="invalid_test_event", message="the test event request is invalid", problems=[problem])
    return json_response(400, body)
