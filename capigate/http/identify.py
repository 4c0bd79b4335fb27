"""A request's source id and test tag, as the journal, the log and the store may keep them."""

from __future__ import annotations

from typing import Final

from capigate.errors import Problem
from capigate.events import UNREADABLE_TAG, tag_refusal
from capigate.http.asgi import Request
from capigate.http.outcome import Outcome
from capigate.personal import EMAIL_SHOWN, shown_id

__all__ = ["identify"]

_TAG_TWICE: Final = (
    "X-Capigate-Test is given more than once: give one tag (which was meant is not for the gateway to guess)"
)


def identify(outcome: Outcome, request: Request, source: str | None, where: str) -> None:
    """Take the request's source id (read from ``where``) and its test tag into ``outcome``, as
    everything after may keep them: an email address in either never goes further (see
    shown_id). The warnings say so; a refused request's answer drops them."""
    outcome.source = None if source is None else _shown(outcome, source, where)
    tag = request.headers.get("x-capigate-test")
    if tag is None and request.sent_unreadable("x-capigate-test"):
        outcome.refused_tag = Problem("x-capigate-test", "not_ascii", UNREADABLE_TAG)
    elif tag is not None and (refusal := tag_refusal(tag)) is not None:
        outcome.refused_tag, tag = Problem("x-capigate-test", *refusal), None
    elif tag is not None and request.sent_twice("x-capigate-test"):
        outcome.refused_tag, tag = Problem("x-capigate-test", "repeated_header", _TAG_TWICE), None
    outcome.test_tag = None if tag is None else _shown(outcome, tag, "x-capigate-test")


def _shown(outcome: Outcome, value: str, where: str) -> str:
    shown = shown_id(value)
    if shown != value:
        message = f"{where} holds an email address: capigate keeps it as {EMAIL_SHOWN} and 8 hex digits of its hash"
        outcome.warnings = [*outcome.warnings, Problem(where, "plain_pii_replaced", message)]
    return shown
