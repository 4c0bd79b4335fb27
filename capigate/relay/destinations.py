"""The relay's destinations: which ones a configuration has, with their URL and key.

A destination is named ``axon:<pixel_id>`` or ``appsflyer:<app_id>``. The request to each is
built by its API's own package (``capigate/axon/upstream.py``, ``capigate/appsflyer/upstream.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from capigate.appsflyer.upstream import APPSFLYER_URL
from capigate.appsflyer.upstream import upstream_request as appsflyer_request
from capigate.axon.upstream import AXON_URL
from capigate.axon.upstream import upstream_request as axon_request
from capigate.config import Config, RelaySettings, unset_variable
from capigate.store.base import Delivery

__all__ = [
    "APPSFLYER_URL",
    "AXON_URL",
    "Target",
    "relay_destination",
    "relayed",
    "replay_refusal",
    "targets",
]


def relay_destination(api: str, source: str, relay: RelaySettings | None) -> str | None:
    """The destination an accepted (non-test) event of this source is queued for, if any."""
    if relay is None or not relay.enabled:
        return None
    return f"{api}:{source}"


def _relays(config: Config) -> dict[str, RelaySettings | None]:
    """Every source's destination name, with its relay table (None: it has none)."""
    found: dict[str, RelaySettings | None] = {f"axon:{p.pixel_id}": p.relay for p in config.axon.pixels}
    found.update({f"appsflyer:{a.app_id}": a.relay for a in config.appsflyer.apps})
    return found


def relayed(config: Config) -> list[str]:
    """The destinations of the configuration's enabled relays."""
    return [name for name, relay in _relays(config).items() if relay is not None and relay.enabled]


def replay_refusal(config: Config, destination: str | None, source: str | None) -> tuple[str, str] | None:
    """Why a replay of ``destination`` (or of ``source``'s destination) can do nothing:
    (the filter at fault, the reason), or None when it can."""
    relays = _relays(config)
    if destination is not None:
        name, key = destination, "destination"
    elif source is not None:
        matches = [n for n in relays if n.split(":", 1)[1] == source]
        if not matches:
            return "source", f"{source!r} is not a pixel or app of {config.path}"
        name, key = matches[0], "source"
    else:
        return None
    if name not in relays:
        known = ", ".join(relayed(config)) or "none: no source has a [relay] table"
        return (
            key,
            f"{name!r} is not a destination of {config.path} (axon:<pixel_id> or appsflyer:<app_id>; relayed: {known})",
        )
    relay = relays[name]
    if relay is None:
        return key, (
            f"{name} has no [relay] table in {config.path}: its events are stored, never relayed, so none is "
            "dead-lettered; add the table to relay them (README, Relay)"
        )
    if not relay.enabled:
        return (
            key,
            f"{name}'s relay is disabled (enabled = false in {config.path}): replayed events would wait for ever",
        )
    return None


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
            return axon_request(self.source, self.api_key, [d.payload for d in deliveries])
        (delivery,) = deliveries
        return appsflyer_request(self.source, self.api_key, delivery.payload, delivery.received_at_ms)


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
            raise unset_variable(file, where, relay.api_key_env)
        return str(value)
    return relay.api_key or own_key
