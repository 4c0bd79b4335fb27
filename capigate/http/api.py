"""The admin query API: ``GET /api/events`` and ``GET /api/requests``."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from capigate.checking import Report
from capigate.http.asgi import Request, Response, json_response
from capigate.http.journal import Outcome
from capigate.http.state import Gateway
from capigate.responses import ErrorBody, EventsPage, EventView, RequestsPage, RequestView
from capigate.store.base import EventQuery, RequestQuery

__all__ = ["get_events", "get_requests", "is_admin"]

MAX_LIMIT = 1000


def is_admin(request: Request, gateway: Gateway) -> bool:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    expected = gateway.config.server.admin_token.encode()
    return hmac.compare_digest(token.encode(), expected) and bool(token)


async def get_events(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    outcome.api = "admin"
    denied = _deny(request, gateway)
    if denied:
        return denied
    report = Report()
    q = request.query
    query = EventQuery(
        source=q.get("source") or None,
        name=q.get("name") or None,
        status=q.get("status") or None,
        test_tag=q.get("test_tag") or None,
        since_ms=_time(q, "since", report),
        until_ms=_time(q, "until", report),
        cursor=_cursor(q, report),
        limit=_limit(q, report),
    )
    if not report.ok:
        return _bad_query(report)
    rows, next_cursor = await gateway.store.query_events(query)
    events = [EventView(**{f: getattr(r, f) for f in EventView.__struct_fields__}) for r in rows]
    return json_response(200, EventsPage(events=events, next=_encode_cursor(next_cursor)))


async def get_requests(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    outcome.api = "admin"
    denied = _deny(request, gateway)
    if denied:
        return denied
    report = Report()
    q = request.query
    status = q.get("status")
    if status is not None and not status.isdigit():
        report.error("query.status", "wrong_type", "status is an HTTP status code such as 400")
    query = RequestQuery(
        source=q.get("source") or None,
        api=q.get("api") or None,
        status=int(status) if status and status.isdigit() else None,
        since_ms=_time(q, "since", report),
        until_ms=_time(q, "until", report),
        cursor=_cursor(q, report),
        limit=_limit(q, report),
    )
    if not report.ok:
        return _bad_query(report)
    rows, next_cursor = await gateway.store.query_requests(query)
    views = [RequestView(id=row_id, **{f: getattr(r, f) for f in r.__struct_fields__}) for row_id, r in rows]
    return json_response(200, RequestsPage(requests=views, next=_encode_cursor(next_cursor)))


def _deny(request: Request, gateway: Gateway) -> Response | None:
    if is_admin(request, gateway):
        return None
    body = ErrorBody(error="unauthorized", message="send Authorization: Bearer <admin_token>")
    return json_response(401, body, [(b"www-authenticate", b'Bearer realm="capigate admin"')])


def _bad_query(report: Report) -> Response:
    body = ErrorBody(error="invalid_query", message="the query parameters are invalid", problems=report.problems)
    return json_response(400, body)


def _limit(q: dict[str, str], report: Report) -> int:
    raw = q.get("limit")
    if raw is None:
        return 50
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        report.error("query.limit", "out_of_range", f"limit is an integer from 1 to {MAX_LIMIT}")
        return 50
    return int(raw)


def _cursor(q: dict[str, str], report: Report) -> int | None:
    raw = q.get("cursor")
    if not raw:
        return None
    try:
        return int(raw, 36)
    except ValueError:
        report.error("query.cursor", "invalid_format", "cursor is the `next` value of a previous page")
        return None


def _encode_cursor(cursor: int | None) -> str | None:
    if cursor is None:
        return None
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        cursor, rem = divmod(cursor, 36)
        out = digits[rem] + out
        if cursor == 0:
            return out


def _time(q: dict[str, str], key: str, report: Report) -> int | None:
    raw = q.get(key)
    if not raw:
        return None
    if raw.isdigit():
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        report.error(f"query.{key}", "invalid_format", f"{key} is epoch milliseconds or an ISO 8601 time")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
