"""What capigate's relay sends to AppLovin: ``POST {url}/v1/event?pixel_id=…``.

Up to ``MAX_BATCH`` (100) events per request, one pixel, ``Authorization: <key>``. The stored payloads are
joined as they are, so each event keeps its ``dedupe_id`` and AppLovin drops a repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

__all__ = ["AXON_URL", "upstream_request"]

AXON_URL: Final = "https://b.applovin.com"


def upstream_request(pixel_id: str, api_key: str, payloads: Sequence[bytes]) -> tuple[str, dict[str, str], bytes]:
    """The request for these stored events: path (after the base URL), headers, body."""
    path = f"/v1/event?pixel_id={quote(pixel_id, safe='')}"
    headers = {"authorization": api_key, "content-type": "application/json"}
    return path, headers, b'{"events":[' + b",".join(payloads) + b"]}"
