"""The domain types that flow down from the API rules to the store and the relay: below both,
so that a rule never imports the store to say what it accepted. ``NewEvent``, a Struct, is
declared in a module of its own (the modules mypyc compiles declare none, capigate/native.py)."""

from __future__ import annotations

import re
from typing import Any, Final, TypeGuard

from capigate.identity import contains_email
from capigate.new_event import NewEvent

__all__ = [
    "MAX_KEY_CHARS",
    "MAX_TEST_TAG_CHARS",
    "NewEvent",
    "dedupe_scope",
    "journal_key",
    "kept_as_sent",
    "scope_name",
    "tag_refusal",
]

MAX_KEY_CHARS: Final = 200

# A test tag (X-Capigate-Test) names a run or a person's test: 64 characters hold a CI run
# id, a branch and a date. A longer one is refused (it is stored with each event, indexed).
MAX_TEST_TAG_CHARS: Final = 64


def tag_refusal(tag: str) -> tuple[str, str] | None:
    """Why the test tag ``tag`` is refused, as (code, message), or None. A tag is what an HTTP
    header carries as text: visible ASCII and spaces; granian hands a worker no value of a
    header with other bytes, and a tag the gateway cannot read must not pass for no tag (the
    events would be relayed as real ones)."""
    if not tag.strip():
        return "empty", "the test tag (X-Capigate-Test) is empty: give a tag, or leave the header out"
    if len(tag) > MAX_TEST_TAG_CHARS:
        return (
            "invalid_length",
            f"the test tag (X-Capigate-Test) is {len(tag)} characters; at most {MAX_TEST_TAG_CHARS}",
        )
    if not _HEADER_TEXT.fullmatch(tag):
        return "not_ascii", UNREADABLE_TAG
    if tag != tag.strip():  # a header does not keep them: httpx refuses it, and the SDK said "timeouts"
        return "edge_space", "the test tag (X-Capigate-Test) starts or ends with a space, which a header does not keep"
    return None


UNREADABLE_TAG: Final = (
    "the test tag (X-Capigate-Test) holds characters other than visible ASCII, which an HTTP header "
    "does not carry as text; nothing was stored: use letters, digits, punctuation and spaces"
)
_HEADER_TEXT: Final = re.compile(r"[\x20-\x7e]+")


def dedupe_scope(source: str, test_tag: str | None, name: str | None = None) -> str:
    """What a ``dedupe_id`` is unique within: its source, or for a test event its source and
    tag. A test event must not take the id of a real event sent later (it would be dropped as
    a duplicate, never relayed), nor one test run the ids of the next. A tag holds no control
    character (tag_refusal), so no scope of one source and tag is another's.

    ``name``, given for an AppsFlyer event (whose dedupe id is an eventValue parameter, the app's
    dedupe_key): the scope is that event name's too. An af_refund carries its purchase's
    af_order_id by design, and was dropped as the purchase's duplicate, never relayed (a trial).
    The name comes last, after the tag, so that no name makes one scope another's."""
    scope = source if test_tag is None else f"{source}\x1ftest\x1f{test_tag}"
    return scope if name is None else f"{scope}\x1fevent\x1f{name}"


def scope_name(api: str, name: str) -> str | None:
    """The event name a dedupe scope holds (``dedupe_scope``'s ``name``): an AppsFlyer event's,
    whose dedupe id is an eventValue parameter shared by events of other names (a refund's
    order id is its purchase's); None on Axon, whose dedupe_id is the event's own."""
    return name if api == "appsflyer" else None


def journal_key(value: Any) -> str | None:
    """A key a request is found by (an event's name, dedupe id, transaction id) as the journal
    keeps it: an int as text, stripped, capped; None for anything else, and for a value
    holding an email address (an id it should not be)."""
    if type(value) is int:  # not a bool
        value = str(value)
    if type(value) is not str:  # decoded JSON: exactly str
        return None
    text = value.strip()
    return text[:MAX_KEY_CHARS] if text and not contains_email(text) else None


def kept_as_sent(value: Any) -> TypeGuard[str]:
    """Whether ``value`` is a journal key as it is (``journal_key`` changes nothing): the only
    dedupe ids the store can find a request by, for it matches them as sent."""
    return value is not None and journal_key(value) == value
