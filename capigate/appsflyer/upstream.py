"""What capigate's relay sends to AppsFlyer: ``POST {url}/inappevent/{app_id}``.

One event per request, ``authentication: <key>``. A stored event has ``eventValue`` and
``custom_data`` as objects and may carry keys capigate added: the body sent is AppsFlyer's
own shape again (those two stringified, capigate's keys left out).

An event received without ``eventTime`` is sent with the time capigate received it: AppsFlyer
dates an event without one at its own arrival time, which is the relay's delivery time (hours
late after retries). Added only while the body stays within AppsFlyer's 1 KB: a body that fits
is never made one that does not (without it, AppsFlyer dates the event on delivery, as before).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import msgspec

from capigate.appsflyer.rules import RESTAMPED_FIELD
from capigate.appsflyer.schema import MAX_BODY_BYTES, format_event_time

__all__ = ["APPSFLYER_URL", "CAPIGATE_KEYS", "STRINGIFIED", "upstream_body", "upstream_request"]

APPSFLYER_URL: Final = "https://api3.appsflyer.com"
# Keys capigate adds to a stored AppsFlyer event, never sent upstream.
CAPIGATE_KEYS: Final = frozenset({RESTAMPED_FIELD})
# AppsFlyer fields that travel as stringified JSON objects.
STRINGIFIED: Final = ("eventValue", "custom_data")

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode
_EVENT_TIME: Final = b',"eventTime":"'


def upstream_request(
    app_id: str, api_key: str, payload: bytes, received_at_ms: int | None = None
) -> tuple[str, dict[str, str], bytes]:
    """The request for one stored event received at ``received_at_ms``: path (after the base
    URL), headers, body."""
    headers = {"authentication": api_key, "content-type": "application/json"}
    return f"/inappevent/{quote(app_id, safe='')}", headers, upstream_body(payload, received_at_ms)


def upstream_body(payload: bytes, received_at_ms: int | None = None) -> bytes:
    """AppsFlyer's body for a stored event; without an ``eventTime`` of its own, the event gets
    ``received_at_ms`` as one, if given and if the body still fits AppsFlyer's 1 KB."""
    event = _decode_object(payload)
    for key in CAPIGATE_KEYS:
        event.pop(key, None)
    for key in STRINGIFIED:
        value = event.get(key)
        if isinstance(value, dict):
            event[key] = _encode(value).decode() if value else ""
    stamp = None
    if received_at_ms is not None and event.get("eventTime") in (None, ""):
        event.pop("eventTime", None)
        stamp = format_event_time(received_at_ms).encode()
    body = _encode(event)
    if stamp is not None and event and len(body) + len(_EVENT_TIME) + len(stamp) + 1 <= MAX_BODY_BYTES:
        return body[:-1] + _EVENT_TIME + stamp + b'"}'  # the object's last key
    return body
