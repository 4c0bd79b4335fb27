"""Whether a base URL already holds the endpoint's path that the relay and the SDK add to it.

Given ``…/v1/event``, they posted to ``/v1/event/v1/event``: a 404, dead letters (a trial).
The path is read as a server would route it, so ``/V1/Event``, ``/v1//event``,
``/v1/%65vent`` and ``/v1/./event`` are the endpoint's path too.
"""

from __future__ import annotations

import posixpath
from typing import Final
from urllib.parse import unquote

__all__ = ["endpoint_base", "endpoint_of", "split_admin", "split_endpoint"]

_AXON: Final = "/v1/event"
_APPSFLYER: Final = "/inappevent"
_ADMIN: Final = "/api"


def endpoint_of(app_id: str | None) -> str:
    """The endpoint's path added to a base URL: Axon's, or AppsFlyer's for ``app_id``."""
    return _AXON if app_id is None else f"{_APPSFLYER}/{app_id}"


def endpoint_base(path: str) -> str | None:
    """None if the URL path ``path`` (as written, not yet decoded) holds no endpoint's path;
    else the part before it, which a base URL behind a proxy keeps (``/applovin/v1/event``:
    ``/applovin``; a trial was told to drop it)."""
    split = split_endpoint(path)
    return None if split is None else split[0]


def split_admin(path: str) -> tuple[str, str] | None:
    """As ``split_endpoint``, of the admin API's path: ``/api`` and what follows it
    (``/api/events``), which ``GatewayAdmin`` adds to a base URL (``…/api/events`` was asked
    for ``/api/events/api/events``: "'api/events' is not an event id", a trial)."""
    plain = posixpath.normpath(unquote(path)) if path else ""
    lower = plain.lower()
    if lower.endswith(_ADMIN):
        at = len(plain) - len(_ADMIN)
    elif f"{_ADMIN}/" in lower:
        at = lower.find(f"{_ADMIN}/")
    else:
        return None
    return plain[:at], plain[at:]


def split_endpoint(path: str) -> tuple[str, str] | None:
    """None if the URL path ``path`` holds no endpoint's path; else the part before it and the
    endpoint's path, as a server routes them (``/applovin/V1//event``: ``/applovin``,
    ``/V1/event``). Axon's ``/v1/event`` ends the path; AppsFlyer's ``/inappevent`` is anywhere
    in it."""
    plain = posixpath.normpath(unquote(path)) if path else ""
    lower = plain.lower()
    if _APPSFLYER in lower:
        at = lower.find(_APPSFLYER)
    elif lower.endswith(_AXON):
        at = len(plain) - len(_AXON)
    else:
        return None
    return plain[:at], plain[at:]
