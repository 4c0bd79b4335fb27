"""The shapes of an Axon request body that are read as a batch of events.

The documented form is ``{"events": [...]}``. The most deployed server-side client (stape's
server GTM tag, ``stape-io/axon-tag`` ``template.js`` ``sendEvent``) posts the bare array
``[...]`` instead, to the real API, in production: it is read as the same batch, with
``undocumented_body_shape``. Paths stay ``events[i]...`` either way, and the relay always sends
the documented form.
"""

from __future__ import annotations

from typing import Any

from capigate.checking import Report

__all__ = ["BODY_KEYS", "MAX_BATCH", "MAX_BODY_BYTES", "MIN_BODY_BYTES", "batch_events", "events_received"]

MAX_BATCH = 100
MAX_BODY_BYTES = 1_048_576  # capigate's default [server] max_body_bytes; AppLovin documents none
# The least max_body_bytes may be, in the config and the SDK: one event with its user data
# takes hundreds of bytes, so below this nearly every batch is a 413 (a trial set 10). The
# round 1 KiB is also what AppsFlyer allows a whole request, a limit of its own (not this key).
MIN_BODY_BYTES = 1024
BODY_KEYS = frozenset({"events"})
_ABSENT: Any = object()
_JSON_KINDS = {str: "a string", int: "a number", float: "a number", bool: "a boolean", type(None): "null"}


def batch_events(body: Any, report: Report) -> list[Any] | None:
    """The events of ``body`` (a decoded JSON value), or None after a problem at the body."""
    if isinstance(body, list):
        if not body or len(body) > MAX_BATCH:  # said at the body: it has no `events` to name
            what = "an empty JSON array" if not body else f"a JSON array of {len(body)} events"
            report.error(
                "",
                "empty_batch" if not body else "too_many_events",
                f'the body is {what}: it must be a JSON object {{"events": [...]}} of 1 to {MAX_BATCH} events',
            )
            return None
        report.warn(
            "",
            "undocumented_body_shape",
            'the body is a bare JSON array of events; the documented form is {"events": [...]}, '
            "which is what is relayed",
        )
        return _sized(body, report)
    if not isinstance(body, dict):
        what = _JSON_KINDS.get(type(body), "not an object")
        report.error("", "not_an_object", f'the body must be a JSON object {{"events": [...]}}, got {what}')
        return None
    events = body.get("events", _ABSENT)
    if events is _ABSENT:
        report.error("events", "missing_field", "`events` is required")
    elif not isinstance(events, list):  # null too: the key is there, its value is wrong
        what = _JSON_KINDS.get(type(events), "an object")
        report.error("events", "wrong_type", f"`events` must be an array of events, got {what}")
    else:
        return _sized(events, report)
    return None


def _sized(events: list[Any], report: Report) -> list[Any] | None:
    if not events:
        report.error("events", "empty_batch", "`events` must hold at least 1 event")
    elif len(events) > MAX_BATCH:
        report.error("events", "too_many_events", f"a batch holds at most {MAX_BATCH} events, got {len(events)}")
    else:
        return events
    return None


def events_received(body: Any) -> int:
    """How many events ``body`` holds, whatever its shape (0 when it holds no array)."""
    events = body.get("events") if isinstance(body, dict) else body
    return len(events) if isinstance(events, list) else 0
