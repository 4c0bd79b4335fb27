"""Whether a base URL already holds the endpoint's path that the relay and the SDK add to it.

Given ``…/v1/event``, they posted to ``/v1/event/v1/event``: a 404, dead letters (a trial).
The path is read as a server would route it, so ``/V1/Event``, ``/v1//event``,
``/v1/%65vent`` and ``/v1/./event`` are the endpoint's path too.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

__all__ = ["base_path", "holds_endpoint_path"]


def holds_endpoint_path(path: str) -> bool:
    """Whether the URL path ``path`` (as written, not yet decoded) ends with Axon's
    ``/v1/event`` or holds AppsFlyer's ``/inappevent``."""
    plain = posixpath.normpath(unquote(path)).lower() if path else ""
    return plain.endswith("/v1/event") or "/inappevent" in plain


def base_path(path: str) -> str:
    """The part of ``path`` before the endpoint's, as a server routes it: what a base URL
    behind a proxy keeps (``/applovin/v1/event``: ``/applovin``; a trial was told to drop it)."""
    plain = posixpath.normpath(unquote(path)) if path else ""
    lower = plain.lower()
    cut = lower.find("/inappevent") if "/inappevent" in lower else lower.rfind("/v1/event")
    return plain[:cut] if cut > 0 else ""
