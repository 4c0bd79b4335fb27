"""The upstream APIs: which destinations a configuration has, and how a request to each is built.

A destination is named ``axon:<pixel_id>`` or ``appsflyer:<app_id>``. Axon takes up to 100
events per request (``{"events": [...]}``, one pixel, ``Authorization: <key>``); the stored
payloads are joined as they are, so each event keeps its ``dedupe_id``. AppsFlyer takes one
event per request; the stored event has ``eventValue`` and ``custom_data`` as objects and
may carry keys capigate added: the body sent is the upstream's own shape again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import msgspec

from capigate.appsflyer.rules import RESTAMPED_FIELD
from capigate.config import Config, RelaySettings
from capigate.errors import ConfigError
from capigate.store.base import Delivery

__all__ = [
    "APPSFLYER_URL",
    "AXON_URL",
    "Target",
    "appsflyer_body",
    "axon_body",
    "relay_destination",
    "targets",
]

AXON_URL: Final = "https://b.applovin.com"
APPSFLYER_URL: Final = "https://api3.appsflyer.com"
# Keys capigate adds to a stored AppsFlyer event, never sent upstream.
CAPIGATE_KEYS: Final = frozenset({RESTAMPED_FIELD})
# AppsFlyer fields that travel as stringified JSON objects.
STRINGIFIED: Final = ("eventValue", "custom_data")

_decode_object = msgspec.json.Decoder(dict[str, Any]).decode
_encode = msgspec.json.Encoder().encode


def relay_destination(api: str, source: str, relay: RelaySettings | None) -> str | None:
    """The destination an accepted (non-test) event of this source is queued for, if any."""
    if relay is None or not relay.enabled:
        return None
    return f"{api}:{source}"


@dataclass(frozen=True, slots=True)
class Target:
    """One destination, resolved: where to send, with which key, and how."""

    name: str
    api: str  # "axon" | "appsflyer"
    source: str
    url: str
    api_key: str
    settings: RelaySettings

    @property
    def events_per_request(self) -> int:
        return self.settings.batch_size if self.api == "axon" else 1

    @property
    def splittable(self) -> bool:
        return self.api == "axon"

    def request(self, deliveries: Sequence[Delivery]) -> tuple[str, dict[str, str], bytes]:
        """The upstream request for these deliveries: path (after ``url``), headers, body."""
        if self.api == "axon":
            path = f"/v1/event?pixel_id={quote(self.source, safe='')}"
            return path, {"authorization": self.api_key, "content-type": "application/json"}, axon_body(deliveries)
        (delivery,) = deliveries
        path = f"/inappevent/{quote(self.source, safe='')}"
        headers = {"authentication": self.api_key, "content-type": "application/json"}
        return path, headers, appsflyer_body(delivery.payload)


def axon_body(deliveries: Sequence[Delivery]) -> bytes:
    return b'{"events":[' + b",".join(d.payload for d in deliveries) + b"]}"


def appsflyer_body(payload: bytes) -> bytes:
    event = _decode_object(payload)
    for key in CAPIGATE_KEYS:
        event.pop(key, None)
    for key in STRINGIFIED:
        value = event.get(key)
        if isinstance(value, dict):
            event[key] = _encode(value).decode() if value else ""
    return _encode(event)


def targets(config: Config, environ: dict[str, str] | None = None) -> list[Target]:
    """Every enabled relay of the configuration; ConfigError if a key cannot be resolved."""
    env = os.environ if environ is None else environ
    found = []
    for i, pixel in enumerate(config.axon.pixels):
        if pixel.relay is not None and pixel.relay.enabled:
            key = _api_key(pixel.relay, pixel.api_key, env, config.path, f"axon.pixels[{i}].relay")
            found.append(_target("axon", pixel.pixel_id, AXON_URL, key, pixel.relay))
    for i, app in enumerate(config.appsflyer.apps):
        if app.relay is not None and app.relay.enabled:
            key = _api_key(app.relay, app.keys[0], env, config.path, f"appsflyer.apps[{i}].relay")
            found.append(_target("appsflyer", app.app_id, APPSFLYER_URL, key, app.relay))
    return found


def _target(api: str, source: str, default_url: str, key: str, relay: RelaySettings) -> Target:
    url = (relay.url or default_url).rstrip("/")
    return Target(name=f"{api}:{source}", api=api, source=source, url=url, api_key=key, settings=relay)


def _api_key(relay: RelaySettings, own_key: str, env: Any, file: str, where: str) -> str:
    if relay.api_key_env is not None:
        value = env.get(relay.api_key_env, "")
        if not value:
            raise ConfigError(
                file or "-", f"{where}.api_key_env", f"the environment variable {relay.api_key_env} is not set"
            )
        return str(value)
    return relay.api_key or own_key
