"""``POST /v1/event?pixel_id=...``: the AppLovin Axon Conversions API."""

from __future__ import annotations

import hmac
import time
from typing import Final

import msgspec

from capigate.axon.profiles import PROFILES
from capigate.axon.typed import check_body
from capigate.checking import listed
from capigate.config import AxonPixel
from capigate.errors import Problem, StoreError
from capigate.http.accept import accept, not_stored
from capigate.http.asgi import BodyError, Request, Response, json_response
from capigate.http.outcome import KEY_TWICE, Outcome
from capigate.http.state import Gateway
from capigate.responses import Accepted, ErrorBody
from capigate.store.base import IngestResult
from capigate.unreadable import TOO_DEEP, sent_as_form, unreadable

__all__ = ["post_event"]

_DUMMY_KEY = b"capigate-dummy-key-for-constant-time"
_encode = msgspec.json.Encoder().encode


async def post_event(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    outcome.api = "axon"
    pixel_id = request.query.get("pixel_id")
    if "pixel_id" in request.repeated:
        problem = Problem("pixel_id", "repeated_parameter", "give the query parameter pixel_id once")
        return _error(400, "repeated_pixel_id", "pixel_id is given more than once", outcome, [problem])
    if not pixel_id:
        problem = Problem("pixel_id", "missing_field", "the query parameter pixel_id is required")
        return _error(400, "missing_pixel_id", "pixel_id query parameter is missing", outcome, [problem])
    outcome.identify(request, pixel_id, "pixel_id")
    if request.sent_twice("authorization"):  # before any key is checked: neither is taken
        problem = Problem("authorization", "repeated_header", KEY_TWICE.format(header="Authorization"))
        return _error(
            400, "repeated_authorization", "the Authorization header is given more than once", outcome, [problem]
        )
    pixel = gateway.config.pixel(pixel_id)
    given = _given_key(request.headers.get("authorization"))
    if not _authorised(given, pixel) or pixel is None:
        return _unauthorised(request, given, outcome, UNKNOWN_PIXEL if pixel is None else WRONG_KEY)
    if outcome.refused_tag is not None:
        return _error(400, "invalid_test_tag", outcome.refused_tag.message, outcome, [outcome.refused_tag])
    try:
        body = await request.body(gateway.config.server.max_body_bytes)
    except BodyError as unread:
        return _error(unread.status, unread.code, unread.message, outcome, [Problem("", unread.code, unread.message)])
    outcome.body = body
    try:
        check = check_body(
            body,
            PROFILES[pixel.profile],
            source=outcome.source or pixel_id,
            now_ms=time.time_ns() // 1_000_000,
            test_tag=outcome.test_tag,
        )
    except msgspec.DecodeError as undecoded:
        problem = sent_as_form(unreadable(body, undecoded), request.headers.get("content-type"), body)
        return _error(400, problem.code, "the body could not be read", outcome, [problem])
    except RecursionError:
        return _error(400, TOO_DEEP.code, "the body nests too deep", outcome, [TOO_DEEP])
    outcome.warnings = listed([*outcome.warnings, *check.report.warnings])
    outcome.events_received = check.received
    if not check.report.ok:
        refused = listed(check.report.problems, "problems")
        return _error(400, "invalid_batch", "the batch was refused; nothing was stored", outcome, refused)
    try:
        result = await accept(request, gateway, outcome, check.events, pixel.relay)
    except StoreError as lost:
        code, headers = not_stored(lost)
        answer = _error(503, code, f"the store did not confirm the events: {lost}", outcome)
        answer.headers += headers
        return answer
    return _accepted(len(check.events), result, outcome)


_PLAIN_ACCEPTED: dict[int, bytes] = {}  # received -> body; at most one per batch size (1 to 100)


def _accepted(received: int, result: IngestResult, outcome: Outcome) -> Response:
    """The 200 answer. The common one (every event stored, no warning, no test tag) depends
    only on the count of events: encoded once per count."""
    if result.stored == received and not result.duplicates and not outcome.warnings and outcome.test_tag is None:
        body = _PLAIN_ACCEPTED.get(received)
        if body is None:
            body = _PLAIN_ACCEPTED[received] = _encode(Accepted(received=received, stored=received, duplicates=0))
        return Response(200, body, "application/json")
    accepted = Accepted(
        received=received,
        stored=result.stored,
        duplicates=len(result.duplicates),
        duplicate_events=result.duplicates,
        warnings=outcome.warnings,
        test_tag=outcome.test_tag,
    )
    return json_response(200, accepted)


def _given_key(header: str | None) -> str:
    """The key an Authorization header holds, with or without ``Bearer``; "" for none."""
    given = (header or "").strip()
    if given.lower() == "bearer":
        return ""
    return given[7:].strip() if given[:7].lower() == "bearer " else given


def _authorised(given: str, pixel: AxonPixel | None) -> bool:
    expected = pixel.api_key.encode() if pixel is not None else _DUMMY_KEY
    # Compared even for an unknown pixel, so timing does not tell which pixel ids exist.
    return hmac.compare_digest(given.encode(), expected) and bool(given)


# One answer for an unknown pixel_id, a wrong key (another pixel's too) and no key, as AppLovin
# gives: it does not tell which pixel ids are configured. Which it was is said in the journal
# only (the operator's), as the AppsFlyer endpoint says it of an unknown app and a wrong key.
UNKNOWN_PIXEL: Final = "no pixel with this id is configured"
WRONG_KEY: Final = "the pixel is configured; the key is not its key"
KNOWN_PIXEL: Final = "the pixel is configured"  # and no key came: WRONG_KEY would say one did


def _unauthorised(request: Request, given: str, outcome: Outcome, which: str) -> Response:
    """The 401 of an unknown pixel_id or a missing or wrong key: the same answer for each. The
    journal's problem says ``which`` too; the answer's never does."""
    message = "unknown pixel_id or wrong Authorization key" if given else "no key in the Authorization header"
    if which == WRONG_KEY and not given:
        which = KNOWN_PIXEL
    if not given and "authentication" in request.headers:
        message += ": Axon reads the key from the 'Authorization' header; it came in 'authentication' (AppsFlyer's)"
    answer = _error(401, "unauthorized", message, outcome, [Problem("authorization", "unauthorized", message)])
    outcome.problems = [Problem("authorization", "unauthorized", f"{message} (journal only: {which})")]
    return answer


def _error(status: int, code: str, message: str, outcome: Outcome, problems: list[Problem] | None = None) -> Response:
    outcome.problems = problems or [Problem("", code, message)]
    body = ErrorBody(error=code, message=message, problems=outcome.problems, warnings=outcome.warnings)
    headers = [("www-authenticate", 'Bearer realm="capigate"')] if status == 401 else None
    return json_response(status, body, headers)
