"""AppsFlyer S2S in-app event clients (``POST /inappevent/{app_id}``), sync and async.

    with AppsFlyerClient("com.example.shop", "dev-key") as client:
        client.send([in_app_event("1415211453000-6513711", "af_purchase", {"af_revenue": "6"})])

Each event is checked with the server's own rules (``capigate.appsflyer.rules``), its
``*_hashed`` fields are hashed if sent plain, and it goes out in a request of its own (the
API takes one event per request), up to ``max_concurrency`` at once. ``eventValue`` and
``custom_data`` may be given as mappings: they are sent stringified, as AppsFlyer documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx
import msgspec

from capigate.appsflyer.rules import RESTAMPED_FIELD, check_in_app_event
from capigate.appsflyer.schema import MAX_BODY_BYTES, InAppEvent, format_event_time, ios_prefix_missing
from capigate.axon.schema import ServerEvent
from capigate.client._base import (
    Checked,
    Core,
    PreparedRequest,
    RequestResult,
    RetryPolicy,
    check_key,
    now_ms,
    prefixed,
    to_builtins,
)
from capigate.client._http import AsyncClientBase, SyncClientBase
from capigate.errors import InvalidEvents, Problem
from capigate.events import tag_refusal

__all__ = ["APPSFLYER_URL", "AppsFlyerClient", "AsyncAppsFlyerClient", "check_as_sent", "in_app_event"]

APPSFLYER_URL: Final = "https://api2.appsflyer.com"

_STRINGIFIED: Final = ("eventValue", "custom_data")
# Warnings that, in a builder, mean a typo rather than a habit worth tolerating. Personal data
# the rules drop (plain_pii_dropped) is not one: send drops it with that warning, as the gateway
# does, and the builder does not refuse an event the gateway and send(dict) take.
_BUILDER_ERRORS: Final = frozenset({"unknown_field"})
# Warnings about what the SDK itself takes care of before sending (objects in eventValue and
# custom_data need none: they are stringified before the check, which sees the bytes sent).
_SDK_HANDLED: Final = frozenset({"plain_pii_hashed"})
_encode = msgspec.json.Encoder().encode
_decode_object = msgspec.json.Decoder(dict[str, Any]).decode


def _stringify(raw: dict[str, Any]) -> dict[str, Any]:
    """eventValue and custom_data given as objects, as the stringified JSON AppsFlyer wants."""
    for key in _STRINGIFIED:
        value = raw.get(key)
        if isinstance(value, dict):
            raw[key] = _encode(value).decode() if value else ""
    return raw


def _wire(payload: bytes) -> bytes:
    """The body to send from the normalised payload the rules produced (PII hashed)."""
    obj = _stringify(_decode_object(payload))
    obj.pop(RESTAMPED_FIELD, None)  # capigate's own note; AppsFlyer re-stamps by itself
    return _encode(obj)


def check_as_sent(
    raw: Any, *, app_id: str, dedupe_key: str | None = None
) -> tuple[list[Checked], list[Problem], list[Problem]]:
    """(the body to send, problems, warnings) of one event as the SDK sends it: eventValue and
    custom_data objects stringified, plain PII hashed, checked with the gateway's rules. Both
    ``send`` and ``capigate validate`` use it, so that they agree on every warning."""
    body = _encode(_stringify(dict(raw)) if isinstance(raw, dict) else raw)
    check = check_in_app_event(body, app_id=app_id, received_at_ms=now_ms(), dedupe_key=dedupe_key)
    warnings = [w for w in check.warnings if w.code not in _SDK_HANDLED]
    if check.event is None:
        return [], check.problems, warnings
    wire = _wire(check.event.payload)
    if len(wire) > MAX_BODY_BYTES:
        message = f"hashed, the body is {len(wire)} bytes; AppsFlyer takes at most {MAX_BODY_BYTES}"
        return [], [Problem("", "payload_too_large", message)], warnings
    # AppsFlyer does not deduplicate; capigate does on dedupe_key when configured so.
    return [Checked(wire, bool(dedupe_key and check.event.dedupe_id))], [], warnings


def in_app_event(
    appsflyer_id: str,
    event_name: str,
    event_value: Mapping[str, Any] | str | None = None,
    *,
    event_currency: str | None = None,
    event_time_ms: int | None = None,
    customer_user_id: str | None = None,
    ip: str | None = None,
    os: str | None = None,
    **fields: Any,
) -> InAppEvent:
    """An InAppEvent, checked now with the server's rules: a wrong type, a bad value or an
    unknown field (``fields`` take wire names: ``idfa``, ``email_hashed``...) raises
    InvalidEvents here. ``event_value`` may be a mapping; it is stringified. Left out,
    ``eventTime`` is the arrival time. Plain values in ``*_hashed`` fields are hashed on send;
    personal data elsewhere (an email address in an eventValue parameter) is dropped on send,
    with the warning ``plain_pii_dropped``, as the gateway drops it."""
    raw: dict[str, Any] = {
        "appsflyer_id": appsflyer_id,
        "eventName": event_name,
        "eventValue": dict(event_value) if isinstance(event_value, Mapping) else event_value or "",
        "eventCurrency": event_currency,
        "eventTime": None if event_time_ms is None else format_event_time(event_time_ms),
        "customer_user_id": customer_user_id,
        "ip": ip,
        "os": os,
        **fields,
    }
    problems: list[Problem] = []
    raw = _stringify(to_builtins({k: v for k, v in raw.items() if v is not None}, "", problems) or {})
    if not problems:
        check = check_in_app_event(_encode(raw), app_id="", received_at_ms=now_ms())
        problems = check.problems + [w for w in check.warnings if w.code in _BUILDER_ERRORS]
    if problems:
        raise InvalidEvents(problems)
    return msgspec.convert(raw, InAppEvent)


class AppsFlyerCore(Core):
    max_batch = 1

    def __init__(
        self,
        app_id: str,
        key: str,
        *,
        dedupe_key: str | None,
        test_tag: str | None,
        retry: RetryPolicy | None,
        rate_limit_eps: float | None,
    ) -> None:
        super().__init__(retry=retry, rate_limit_eps=rate_limit_eps)
        if not app_id or not key:
            raise ValueError("app_id and key are required")
        check_key("key", key)
        if (reason := ios_prefix_missing(app_id)) is not None:
            raise ValueError(reason)
        self.app_id = app_id
        self._url = f"/inappevent/{quote(app_id, safe='')}"  # as the relay and the inspector send it
        self._dedupe_key = dedupe_key
        # Accept: JSON gets capigate's detailed answer; AppsFlyer ignores it and says OK.
        self._headers = {"authentication": key, "Content-Type": "application/json", "Accept": "application/json"}
        if test_tag is not None:  # an empty one given is refused: taken for none, a test went out as real
            if (refusal := tag_refusal(test_tag)) is not None:
                raise ValueError(refusal[1])
            self._headers["X-Capigate-Test"] = test_tag

    def check(self, events: list[Any]) -> tuple[list[Checked], list[Problem], list[Problem]]:
        (event,) = events  # one event a request
        if isinstance(event, ServerEvent):
            return [], [Problem("", "wrong_api", "an Axon ServerEvent: send it with AxonClient")], []
        problems: list[Problem] = []
        raw = to_builtins(event, "", problems)
        if problems:
            return [], problems, []
        return check_as_sent(raw, app_id=self.app_id, dedupe_key=self._dedupe_key)

    def in_send(self, first: int, problem: Problem) -> Problem:
        return prefixed(f"events[{first}]", problem)

    def in_event(self, problem: Problem) -> Problem:
        return problem

    def body(self, payloads: list[bytes]) -> bytes:
        (payload,) = payloads
        return payload

    def request(self, req: PreparedRequest) -> tuple[str, dict[str, str], dict[str, str]]:
        return self._url, {}, self._headers

    def interpret(self, req: PreparedRequest, attempt: int, elapsed: float, response: httpx.Response) -> RequestResult:
        if "json" in response.headers.get("content-type", ""):
            result = self.from_json(req, attempt, elapsed, response)
        else:  # AppsFlyer: a plain-text body, OK or the reason
            status, ok = response.status_code, 200 <= response.status_code < 300
            text = response.text.strip()[:200]
            result = self._result(
                req, attempt, elapsed, ok=ok, status=status, error=None if ok else f"HTTP {status} {text}"
            )
        dropped = response.headers.get("x-capigate-dropped")
        if dropped and result.ok:
            result.ok, result.error = False, f"answered OK but not recorded: {dropped}"
        return result


class AppsFlyerClient(SyncClientBase):
    """Sends in-app events to AppsFlyer (``base_url`` defaults to api2.appsflyer.com; use
    api3 with an S2S token) or to a capigate gateway. ``key`` is the dev key or S2S token.
    ``dedupe_key`` names the eventValue parameter capigate deduplicates on, if configured so.
    The other arguments are AxonClient's."""

    def __init__(
        self,
        app_id: str,
        key: str,
        *,
        base_url: str = APPSFLYER_URL,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 8,
        rate_limit_eps: float | None = None,
        dedupe_key: str | None = None,
        test_tag: str | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        core = AppsFlyerCore(
            app_id, key, dedupe_key=dedupe_key, test_tag=test_tag, retry=retry, rate_limit_eps=rate_limit_eps
        )
        super().__init__(
            core,
            base_url=base_url,
            timeout=timeout,
            max_concurrency=max_concurrency,
            transport=transport,
            headers=headers,
        )


class AsyncAppsFlyerClient(AsyncClientBase):
    """The async twin of AppsFlyerClient: same arguments, ``await client.send(events)``."""

    def __init__(
        self,
        app_id: str,
        key: str,
        *,
        base_url: str = APPSFLYER_URL,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        max_concurrency: int = 8,
        rate_limit_eps: float | None = None,
        dedupe_key: str | None = None,
        test_tag: str | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        core = AppsFlyerCore(
            app_id, key, dedupe_key=dedupe_key, test_tag=test_tag, retry=retry, rate_limit_eps=rate_limit_eps
        )
        super().__init__(
            core,
            base_url=base_url,
            timeout=timeout,
            max_concurrency=max_concurrency,
            transport=transport,
            headers=headers,
        )
