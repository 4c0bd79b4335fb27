"""What a handler says about its request, for the journal and the log."""

from __future__ import annotations

from typing import Final

from capigate.errors import Problem
from capigate.events import UNREADABLE_TAG, tag_refusal
from capigate.http.asgi import Request
from capigate.personal import EMAIL_SHOWN, PHONE_SHOWN, shown_id

__all__ = ["KEY_TWICE", "Outcome"]

# A key header given twice (a proxy adding its own to a client's): refused before either is checked,
# as a repeated pixel_id or test tag is; the last one was taken, and a wrong first key went unseen.
KEY_TWICE: Final = (
    "the {header} header is given more than once: send one key (which was meant is not for the gateway to guess)"
)
_TAG_TWICE: Final = (
    "X-Capigate-Test is given more than once: give one tag (which was meant is not for the gateway to guess)"
)


class Outcome:
    """What a handler says about its request, for the journal and the log. A plain class, not
    a Struct: compiled (capigate/native.py), its attributes are C fields, where a compiled
    module reads a Struct's through ``getattr`` (some 170 instructions each, a request reading
    and writing these some forty times)."""

    __slots__ = (
        "api",
        "body",
        "dropped",
        "events_duplicate",
        "events_received",
        "events_stored",
        "journaled",
        "keys",
        "path",
        "problems",
        "refused_tag",
        "source",
        "test_tag",
        "warnings",
    )

    def __init__(self, api: str) -> None:
        self.api = api
        self.source: str | None = None
        self.events_received = 0
        self.events_stored = 0
        self.events_duplicate = 0
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.test_tag: str | None = None
        self.body: bytes | None = None  # as read: kept (PII treated) if the request is refused
        self.keys: list[tuple[str, str]] = []  # what an accepted request can be found by
        self.path: str | None = None  # the request's path as the journal shows it, when not request.path
        self.journaled = False  # on a route that is not journaled, this request is (a refused admin token)
        self.dropped = False  # answered OK but not recorded (AppsFlyer's silent drop): body kept as if refused
        self.refused_tag: Problem | None = None  # the test tag is refused (then test_tag is None)

    def identify(self, request: Request, source: str | None, where: str) -> None:
        """Take the request's source id (read from ``where``) and its test tag, as everything
        after may keep them: an email address or a phone number in either never goes further (see shown_id).
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
            what, kept = (
                ("a phone number", PHONE_SHOWN)
                if shown.startswith(PHONE_SHOWN[:-1])
                else ("an email address", EMAIL_SHOWN)
            )
            message = f"{where} holds {what}: capigate keeps it as {kept} and 8 hex digits of its hash"
            self.warnings = [*self.warnings, Problem(where, "plain_pii_replaced", message)]
        return shown
