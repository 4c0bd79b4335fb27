"""What to do with an upstream's answer: deliver, retry later, split the batch, or give up.

Pure functions, no I/O. How long to wait before a retry is ``capigate/retry.py``, shared with
the SDK.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["Verdict", "classify", "give_up_reason"]

_RETRYABLE: Final = frozenset({408, 425, 429})
# A batch refused with these may hold one bad event among good ones: split it to find it.
_SPLITTABLE: Final = frozenset({400, 413, 422})


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"  # network error, timeout, 408/425/429, 5xx: the upstream is unwell
    SPLIT = "split"  # a batch refused as a whole: retry it in parts to find the event at fault
    REFUSED = "refused"  # this event is refused: dead letter, the destination goes on
    BLOCKED = "blocked"  # the destination refuses everything (401, 403, 404 …): dead letter, back off


def classify(status: int | None, *, events: int, splittable: bool) -> Verdict:
    """``status`` None is a network error or a timeout; ``splittable``: the API takes batches."""
    if status is None or status in _RETRYABLE or status >= 500:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in _SPLITTABLE:
        return Verdict.SPLIT if splittable and events > 1 else Verdict.REFUSED
    if status == 400:
        return Verdict.REFUSED
    return Verdict.BLOCKED


def give_up_reason(
    attempts: int, queued_at_ms: int, *, now_ms: int, max_attempts: int, max_age_hours: float
) -> str | None:
    """Why an event that just failed (its ``attempts``-th attempt) is not retried, or None."""
    if attempts >= max_attempts:
        return f"gave up after {attempts} attempts (max_attempts = {max_attempts})"
    age_ms = now_ms - queued_at_ms
    if age_ms / 3_600_000 >= max_age_hours:
        return f"gave up: queued {_age(age_ms)} ago (max_age_hours = {max_age_hours:g})"
    return None


def _age(ms: int) -> str:
    """``7.2 s``, ``12.5 min``, ``3.0 h``: an age in the unit that shows it. In hours alone, a
    max_age_hours of 0.002 (7.2 s) said "queued 0.0 h ago" (a trial)."""
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"
