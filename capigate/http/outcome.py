"""What a handler says about its request, for the journal and the log: a Struct of its own
module, since the modules mypyc compiles declare none (capigate/native.py)."""

from __future__ import annotations

import msgspec

from capigate.errors import Problem
from capigate.events import UNREADABLE_TAG, tag_refusal
from capigate.http.asgi import Request
from capigate.personal import EMAIL_SHOWN, shown_id

__all__ = ["Outcome"]

_TAG_TWICE = "X-Capigate-Test is given more than once: give one tag (which was meant is not for the gateway to guess)"


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

    def identify(self, request: Request, source: str | None, where: str) -> None:
        """Take the request's source id (read from ``where``) and its test tag, as everything
        after may keep them: an email address in either never goes further (see shown_id).
        The warnings say so; a refused request's answer drops them."""
        self.source = None if source is None else self._shown(source, where)
        tag = request.headers.get("x-capigate-test")
        if tag is None and request.sent_unreadable("x-capigate-test"):
            self.refused_tag = Problem("x-capigate-test", "not_ascii", UNREADABLE_TAG)
        elif tag is not None and (refusal := tag_refusal(tag)) is not None:
            self.refused_tag, tag = Problem("x-capigate-test", *refusal), None
        elif tag is not None and request.sent_twice("x-capigate-test"):
            self.refused_tag, tag = Problem("x-capigate-test", "repeated_header", _TAG_TWICE), None
        self.test_tag = None if tag is None else self._shown(tag, "x-capigate-test")

    def _shown(self, value: str, where: str) -> str:
        shown = shown_id(value)
        if shown != value:
            message = f"{where} holds an email address: capigate keeps it as {EMAIL_SHOWN} and 8 hex digits of its hash"
            self.warnings = [*self.warnings, Problem(where, "plain_pii_replaced", message)]
        return shown
