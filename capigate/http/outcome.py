"""What a handler says about its request, for the journal and the log: a Struct of its own
module, since the modules mypyc compiles declare none (capigate/native.py). What it holds of
the request's source and test tag is set by ``capigate.http.identify``."""

from __future__ import annotations

import msgspec

from capigate.errors import Problem

__all__ = ["Outcome"]


class Outcome(msgspec.Struct, kw_only=True):
    """What a handler says about its request, for the journal and the log."""

    api: str
    source: str | None = None
    events_received: int = 0
    events_stored: int = 0
    events_duplicate: int = 0
    problems: list[Problem] = []
    warnings: list[Problem] = []
    test_tag: str | None = None
    body: bytes | None = None  # as read: kept (PII treated) if the request is refused
    keys: list[tuple[str, str]] = []  # what an accepted request can be found by
    path: str | None = None  # the request's path as the journal shows it, when not request.path
    journaled: bool = False  # on a route that is not journaled, this request is (a refused admin token)
    dropped: bool = False  # answered OK but not recorded (AppsFlyer's silent drop): body kept as if refused
    refused_tag: Problem | None = None  # the test tag is refused (then test_tag is None)
