"""AppLovin Axon Conversions API clients (``POST /v1/event``), sync and async.

    with AxonClient("px_123", "api-key", base_url="http://localhost:8080") as client:
        result = client.send([axon_event("page_view", user_data=user, event_source_url=url)])

Events are checked with the server's own rules (``capigate.axon.rules``) under the pixel's
profile, PII is hashed with the server's normaliser, and batches hold at most 100 events.
"""

from __future__ import annotations

from typing import Any

import httpx

from capigate.appsflyer.schema import InAppEvent
from capigate.axon.body import MAX_BODY_BYTES, MIN_BODY_BYTES
from capigate.axon.profiles import PROFILES, Profile, ProfileName
from capigate.axon.rules import MAX_BATCH, check_batch
from capigate.axon.schema import EventData, MeasurementPartnerData, ServerEvent, UserData
from capigate.axon.upstream import AXON_URL
from capigate.client._base import (
    Checked,
    Core,
    PreparedRequest,
    RequestResult,
    RetryPolicy,
    check_key,
    now_ms,
    shifted,
    strip_prefix,
    to_builtins,
)
from capigate.client._http import AsyncClientBase, SyncClientBase
from capigate.errors import InvalidEvents, Problem
from capigate.events import tag_refusal

__all__ = ["AXON_URL", "AsyncAxonClient", "AxonClient", "axon_event"]


def _profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; expected one of {', '.join(sorted(PROFILES))}") from None


def axon_event(
    name: str,
    *,
    user_data: UserData,
    event_source_url: str,
    data: EventData | None = None,
    event_time_ms: int | None = None,
    dedupe_id: str | None = None,
    measurement_partner_data: MeasurementPartnerData | None = None,
    profile: ProfileName = "standard",
) -> ServerEvent:
    """A ServerEvent, checked now with the server's rules: a wrong type, a missing field or a
    ``data`` that does not fit ``name`` raises InvalidEvents here, not at AppLovin.

    ``event_time_ms`` defaults to now. Plain email and phone are kept as given and hashed
    when the event is sent. The ``standard`` profile accepts every event the other profiles
    do; pass the pixel's profile to be told about its extra rules now."""
    event = ServerEvent(
        name=name,
        event_time=now_ms() if event_time_ms is None else event_time_ms,
        event_source_url=event_source_url,
        user_data=user_data,
        data=data,
        dedupe_id=dedupe_id,
        measurement_partner_data=measurement_partner_data,
    )
    problems: list[Problem] = []
    raw = to_builtins(event, "", problems)
    if not problems:
        check = check_batch({"events": [raw]}, _profile(profile), source="", now_ms=now_ms())
        problems = [strip_prefix("events[0]", p) for p in check.report.problems]
    if problems:
        raise InvalidEvents(problems)
    return event


class AxonCore(Core):
    def __init__(
        self,
        pixel_id: str,
        api_key: str,
        *,
        profile: ProfileName,
        max_batch: int,
        max_body_bytes: int,
        test_tag: str | None,
        retry: RetryPolicy | None,
        rate_limit_eps: float | None,
    ) -> None:
        super().__init__(retry=retry, rate_limit_eps=rate_limit_eps)
        if not pixel_id or not api_key:
            raise ValueError("pixel_id and api_key are required")
        check_key("api_key", api_key)
        if not 1 <= max_batch <= MAX_BATCH:
            raise ValueError(f"max_batch must be from 1 to {MAX_BATCH}")
        if max_body_bytes < MIN_BODY_BYTES:
            raise ValueError(f"max_body_bytes must be at least {MIN_BODY_BYTES}")
        self.pixel_id, self.profile, self.max_batch = pixel_id, _profile(profile), max_batch
        self.max_body_bytes = max_body_bytes
        self._params = {"pixel_id": pixel_id}
        self._headers = {"Authorization": api_key, "Content-Type": "application/json"}
        if test_tag is not None:  # an empty one given is refused: taken for none, a test went out as real
            if (refusal := tag_refusal(test_tag)) is not None:
                raise ValueError(refusal[1])
            self._headers["X-Capigate-Test"] = test_tag

    def check(self, events: list[Any]) -> tuple[list[Checked], list[Problem], list[Problem]]:
        problems = [
            Problem(f"events[{i}]", "wrong_api", "an AppsFlyer InAppEvent: send it with AppsFlyerClient")
            for i, e in enumerate(events)
            if isinstance(e, InAppEvent)
        ]
        if problems:  # else each would read as an Axon event missing all of its fields
            return [], problems, []
        raws = [to_builtins(e, f"events[{i}]", problems) for i, e in enumerate(events)]
        if problems:
            return [], problems, []
        check = check_batch({"events": raws}, self.profile, source=self.pixel_id, now_ms=now_ms())
        checked = [Checked(e.payload, bool(e.dedupe_id)) for e in check.events]
        return checked, check.report.problems, check.report.warnings

    def in_send(self, first: int, problem: Problem) -> Problem:
        return shifted(problem, first)

    def in_event(self, problem: Problem) -> Problem:
        return strip_prefix("events[0]", problem)

    def body(self, payloads: list[bytes]) -> bytes:
        return b'{"events":[' + b",".join(payloads) + b"]}"

    def request(self, req: PreparedRequest) -> tuple[str, dict[str, str], dict[str, str]]:
        return "/v1/event", self._params, self._headers

    def interpret(self, req: PreparedRequest, attempt: int, elapsed: float, response: httpx.Response) -> RequestResult:
        return self.from_json(req, attempt, elapsed, response)


class AxonClient(SyncClientBase):
    """Sends Axon events to AppLovin (``base_url`` defaults to it) or to a capigate gateway.

    ``profile`` is the pixel's profile (standard, lead_gen, lead_gen_restricted): events are
    checked against it before anything is sent. A request carries at most ``max_batch`` events
    and ``max_body_bytes`` bytes (capigate's default limit: a larger body is a 413). ``max_concurrency`` batches of a send go out
    at once; ``rate_limit_eps`` caps events per second; ``test_tag`` marks the events as test
    events in capigate (``X-Capigate-Test``). ``transport`` replaces httpx's own (tests)."""

    def __init__(
        self,
        pixel_id: str,
        api_key: str,
        *,
        base_url: str = AXON_URL,
        profile: ProfileName = "standard",
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        max_batch: int = MAX_BATCH,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_concurrency: int = 4,
        rate_limit_eps: float | None = None,
        test_tag: str | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        core = AxonCore(
            pixel_id,
            api_key,
            profile=profile,
            max_batch=max_batch,
            max_body_bytes=max_body_bytes,
            test_tag=test_tag,
            retry=retry,
            rate_limit_eps=rate_limit_eps,
        )
        super().__init__(
            core,
            base_url=base_url,
            timeout=timeout,
            max_concurrency=max_concurrency,
            transport=transport,
            headers=headers,
        )


class AsyncAxonClient(AsyncClientBase):
    """The async twin of AxonClient: same arguments, ``await client.send(events)``."""

    def __init__(
        self,
        pixel_id: str,
        api_key: str,
        *,
        base_url: str = AXON_URL,
        profile: ProfileName = "standard",
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        max_batch: int = MAX_BATCH,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_concurrency: int = 4,
        rate_limit_eps: float | None = None,
        test_tag: str | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        core = AxonCore(
            pixel_id,
            api_key,
            profile=profile,
            max_batch=max_batch,
            max_body_bytes=max_body_bytes,
            test_tag=test_tag,
            retry=retry,
            rate_limit_eps=rate_limit_eps,
        )
        super().__init__(
            core,
            base_url=base_url,
            timeout=timeout,
            max_concurrency=max_concurrency,
            transport=transport,
            headers=headers,
        )
