"""``POST /inappevent/{app_id}``: the AppsFlyer S2S in-app event API.

Status codes and plain-text bodies are AppsFlyer's, so strict clients keep working; the
full problem list comes back as JSON to a client that sends ``Accept: application/json``.
"""

from __future__ import annotations

import contextlib
import hmac
from typing import Final
from urllib.parse import unquote

from capigate.appsflyer.rules import check_in_app_event
from capigate.appsflyer.schema import BAD_REQUEST, MAX_BODY_BYTES, OK, PARSE_FAILED, UNAUTHORIZED
from capigate.checking import listed
from capigate.config import AppsFlyerApp
from capigate.errors import Problem, StoreError
from capigate.http.accept import accept, not_stored
from capigate.http.asgi import BodyError, Request, Response, json_response, text_response
from capigate.http.outcome import KEY_TWICE, Outcome
from capigate.http.state import Gateway
from capigate.responses import DROPPED_SILENTLY, Accepted, ErrorBody
from capigate.unreadable import sent_as_form

__all__ = ["PREFIX", "post_in_app_event"]

PREFIX = "/inappevent/"
_DUMMY_KEY = b"capigate-dummy-key-for-constant-time"
SILENT_DROP = Problem(
    "app_id",
    DROPPED_SILENTLY,
    "iOS app ids start with 'id' (id123456789): AppsFlyer answers 200 OK and drops this event; capigate did not record it either",
)


async def post_in_app_event(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    outcome.api = "appsflyer"
    app_id = unquote(request.path[len(PREFIX) :])
    outcome.identify(request, app_id or None, "app_id")
    if outcome.source != (app_id or None):
        outcome.path = PREFIX + (outcome.source or "")  # the path holds the app id too
    if request.sent_twice("authentication"):  # before any key is checked: neither is taken
        outcome.problems = [Problem("authentication", "repeated_header", KEY_TWICE.format(header="authentication"))]
        return _answer(request, 400, BAD_REQUEST, outcome)
    key = request.headers.get("authentication", "")
    app = gateway.config.app(app_id)
    if app is None:
        ios = gateway.config.app("id" + app_id) if app_id.isascii() and app_id.isdigit() else None
        if ios is not None and _authorised(key, ios):
            return await _drop_silently(request, ios, outcome)
        slashed = gateway.config.app(app_id.rstrip("/")) if app_id.endswith("/") else None
        if slashed is not None and _authorised(key, slashed):
            outcome.source = slashed.app_id  # journaled as the app's, where its sender looks
            outcome.problems = [_trailing_slash(slashed)]
            return _answer(request, 401, UNAUTHORIZED, outcome)
        if not app_id.strip("/"):
            outcome.problems = [_missing_app_id()]
            return _answer(request, 401, UNAUTHORIZED, outcome)
        hmac.compare_digest(key.strip().encode(), _DUMMY_KEY)  # as a configured app's key is: timing does not tell
        return _unauthorised(request, key, outcome, UNKNOWN_APP)
    if not _authorised(key, app):
        return _unauthorised(request, key, outcome, WRONG_KEY)
    if outcome.refused_tag is not None:
        outcome.problems = [outcome.refused_tag]
        return _answer(request, 400, BAD_REQUEST, outcome)
    try:
        body = await request.body(MAX_BODY_BYTES)
    except BodyError as unreadable:
        return _unreadable(request, unreadable, outcome)
    outcome.body = body
    check = check_in_app_event(
        body, app_id=outcome.source or app_id, received_at_ms=request.received_at_ms, dedupe_key=app.dedupe_key
    )
    outcome.events_received = check.received
    # As the Axon endpoint lists them; AppsFlyer's 1 KB body holds fewer than LISTED_PER_CODE of a code.
    outcome.problems, outcome.warnings = (
        listed(check.problems, "problems"),
        listed([*outcome.warnings, *check.warnings]),
    )
    if check.event is None and len(check.problems) == 1 and not check.problems[0].path:  # the body itself
        outcome.problems = [sent_as_form(check.problems[0], request.headers.get("content-type"), body)]
    if check.event is None:
        return _answer(request, check.status, check.text, outcome)
    try:
        result = await accept(request, gateway, outcome, [check.event], app.relay)
    except StoreError as lost:
        code, headers = not_stored(lost)
        outcome.problems = [Problem("", code, f"the store did not confirm the event: {lost}")]
        answer = _answer(request, 503, "Service Unavailable", outcome)
        answer.headers += headers
        return answer
    return _answer(request, 200, OK, outcome, result.duplicates)


def _unreadable(request: Request, exc: BodyError, outcome: Outcome) -> Response:
    """AppsFlyer's 400 for a body it cannot take; but a body that did not arrive in time is a
    408, as on the Axon endpoint: a 400 would tell the client not to send it again."""
    if exc.status == 408:
        outcome.problems = [Problem("", exc.code, exc.message)]
        return _answer(request, 408, "Request Timeout", outcome)
    if exc.status == 413:
        message = f"{exc.message} (AppsFlyer accepts at most {MAX_BODY_BYTES} bytes)"
        outcome.problems = [Problem("", "payload_too_large", message)]
    else:
        outcome.problems = [Problem("", exc.code, exc.message)]
    return _answer(request, 400, PARSE_FAILED, outcome)


def _missing_app_id() -> Problem:
    """``POST /inappevent/`` was told "no app with this id", of an id it never gave (a trial)."""
    message = f"the app id is missing from the path: POST {PREFIX}{{app_id}}, as on AppsFlyer"
    return Problem("app_id", "missing_app_id", message)


# One answer for an unknown app and a configured app's wrong key, as the Axon endpoint gives one
# for an unknown pixel_id and a wrong key: "no app with this id is configured" (code unknown_app)
# beside "missing or wrong authentication key" (unauthorized) told anyone which app ids are
# configured, without a key (a trial). Which it was is said in the journal only (the operator's).
NO_KEY: Final = "no key in the 'authentication' header"
UNKNOWN_APP_OR_WRONG_KEY: Final = "unknown app id or wrong authentication key"
UNKNOWN_APP: Final = "no app with this id is configured"
WRONG_KEY: Final = "the app is configured; the key is not one of its keys"
KNOWN_APP: Final = "the app is configured"  # and no key came: WRONG_KEY would say one did


def _unauthorised(request: Request, key: str, outcome: Outcome, which: str) -> Response:
    """The 401 of an unknown app or a missing or wrong key: the same answer for both. The
    journal's problem says ``which`` too; the answer's never does."""
    message = UNKNOWN_APP_OR_WRONG_KEY if key.strip() else NO_KEY
    if which == WRONG_KEY and not key.strip():
        which = KNOWN_APP
    if not key and "authorization" in request.headers:
        message += ": AppsFlyer reads the key from the 'authentication' header; it came in 'Authorization'"
    answered = Problem("authentication", "unauthorized", message)
    journaled = Problem("authentication", "unauthorized", f"{message} (journal only: {which})")
    outcome.problems = [journaled]
    return _answer(request, 401, UNAUTHORIZED, outcome, problems=[answered])


def _trailing_slash(app: AppsFlyerApp) -> Problem:
    """``/inappevent/com.example.demo/`` with that app's key: named, not "no app with this id
    (or the key is wrong)", which sent a trial to check a right key. Still a 401: AppsFlyer
    documents ``/inappevent/{app_id}`` only, and no app id ends with '/'. Said only to a client
    with the app's key, as the iOS prefix is: a wrong key learns no app id."""
    message = (
        f"the path has a trailing '/' after the app id: POST {PREFIX}{app.app_id} (no '/' at the end) "
        f"is app {app.app_id}'s endpoint, as on AppsFlyer; no app id ends with '/'"
    )
    return Problem("app_id", "unknown_app", message)


def _authorised(key: str, app: AppsFlyerApp) -> bool:
    given = key.strip().encode()
    # Every key is compared, so timing does not tell which one (if any) matched.
    matches = [hmac.compare_digest(given, k.encode()) for k in app.keys]
    return bool(given) and any(matches)


async def _drop_silently(request: Request, ios: AppsFlyerApp, outcome: Outcome) -> Response:
    """AppsFlyer's answer to an iOS app id sent without ``id``: 200 OK, and the event is gone.
    Journaled as the configured app's, with its body kept as a refused one is, so that it is
    found where its sender looks for it: by the app, the event name or the order id."""
    outcome.source = ios.app_id
    outcome.events_received, outcome.dropped = 1, True
    outcome.warnings = [*outcome.warnings, SILENT_DROP]
    with contextlib.suppress(BodyError):  # AppsFlyer drops it all the same; no body is kept then
        outcome.body = await request.body(MAX_BODY_BYTES)
    return _answer(request, 200, OK, outcome)


def _answer(
    request: Request,
    status: int,
    text: str,
    outcome: Outcome,
    duplicates: list[int] | None = None,
    problems: list[Problem] | None = None,
) -> Response:
    """The answer; ``problems``, where given, are the answer's in place of the journal's (``outcome.problems``)."""
    headers = _warning_headers(outcome)
    if "application/json" not in request.headers.get("accept", ""):
        return text_response(status, text, headers)
    if status == 200:
        body: Accepted | ErrorBody = Accepted(
            received=outcome.events_received,
            stored=outcome.events_stored,
            duplicates=outcome.events_duplicate,
            duplicate_events=duplicates or [],
            warnings=outcome.warnings,
            test_tag=outcome.test_tag,
        )
    else:
        told = outcome.problems if problems is None else problems
        body = ErrorBody(error=_error_code(told), message=text, problems=told, warnings=outcome.warnings)
    return json_response(status, body, headers)


def _error_code(problems: list[Problem]) -> str:
    return problems[0].code if problems else "bad_request"


def _warning_headers(outcome: Outcome) -> list[tuple[str, str]]:
    if not outcome.warnings:
        return []
    codes = ",".join(sorted({w.code for w in outcome.warnings}))
    headers = [("x-capigate-warnings", codes)]
    if any(w.code == SILENT_DROP.code for w in outcome.warnings):
        headers.append(("x-capigate-dropped", "ios app id without 'id' prefix: event not recorded"))
    return headers
