"""What capigate's relay sends to AppsFlyer: ``POST {url}/inappevent/{app_id}``.

One event per request, ``authentication: <key>``. A stored event has ``eventValue`` and
``custom_data`` as objects and may carry keys capigate added: the body sent is AppsFlyer's
own shape again (those two stringified, capigate's keys left out).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

import msgspec

from capigate.appsflyer.rules import RESTAMPED_FIELD

__all__ = ["APPSFLYER_URL", "CAPIGATE_KEYS", "STRINGIFIED", "upstream_body", "upstream_request"]

APPSFLYER_URL: Final = "https://api3.appsflyer.com"
# Keys capigate adds to a stored AppsFlyer event, never sent upstream.
CAPIGATE_KEYS: Final = frozenset({RESTAMPED_FIELD})
# AppsFlyer fields that travel as stringified JSON objects.
STRINGIFIED: Final = ("eventValue", "custom_data")

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


def upstream_request(app_id: str, api_key: str, payload: bytes) -> tuple[str, dict[str, str], bytes]:
    """The request for one stored event: path (after the base URL), headers, body."""
    headers = {"authentication": api_key, "content-type": "application/json"}
    return f"/inappevent/{quote(app_id, safe='')}", headers, upstream_body(payload)


def upstream_body(payload: bytes) -> bytes:
    event = _decode_object(payload)
    for key in CAPIGATE_KEYS:
        event.pop(key, None)
    for key in STRINGIFIED:
        value = event.get(key)
        if isinstance(value, dict):
            event[key] = _encode(value).decode() if value else ""
    return _encode(event)
