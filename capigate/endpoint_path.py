"""Whether a base URL already holds the endpoint's path that the relay and the SDK add to it.

Given ``…/v1/event``, they posted to ``/v1/event/v1/event``: a 404, dead letters (a trial).
The path is read as a server would route it, so ``/V1/Event``, ``/v1//event``,
``/v1/%65vent`` and ``/v1/./event`` are the endpoint's path too.
"""

from __future__ import annotations

import posixpath
from typing import Final
from urllib.parse import unquote

__all__ = ["endpoint_base"]

_AXON: Final = "/v1/event"
_APPSFLYER: Final = "/inappevent"


def endpoint_base(path: str) -> str | None:
    """None if the URL path ``path`` (as written, not yet decoded) holds no endpoint's path;
    else the part before it, which a base URL behind a proxy keeps (``/applovin/v1/event``:
    ``/applovin``; a trial was told to drop it). Axon's ``/v1/event`` ends the path;
    AppsFlyer's ``/inappevent`` is anywhere in it."""
    plain = posixpath.normpath(unquote(path)) if path else ""
    lower = plain.lower()
    if _APPSFLYER in lower:
        return plain[: lower.find(_APPSFLYER)]
    if lower.endswith(_AXON):
        return plain[: -len(_AXON)]
    return None
