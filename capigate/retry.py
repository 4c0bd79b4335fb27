"""When to try again: the one retry timing of the relay and the SDK.

After ``failures`` consecutive failures, the wait is drawn uniformly from
``0 .. min(max_s, base_s * 2**failures)`` (exponential backoff with full jitter). When the
upstream sends ``Retry-After`` (delta-seconds, fractional ones such as ``1.5`` included, or an
HTTP date), the wait is never shorter than it asks, up to ``max_retry_after_s``: a longer ask
is capped there, and the next try comes after the cap, like any other retry (the SDK still
stops at its ``max_attempts``; the relay at its ``max_attempts`` and ``max_age_hours``).
Pure functions, no I/O.
"""

from __future__ import annotations

import math
import random
from email.utils import parsedate_to_datetime

__all__ = ["backoff_s", "retry_after_s", "retry_delay_s"]


def backoff_s(failures: int, *, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in ``[0, min(max_s, base_s * 2**failures)]``; ``failures`` from 0."""
    ceiling = min(max_s, base_s * 2.0 ** min(failures, 62))
    return (rng or random).uniform(0.0, ceiling)


def retry_after_s(value: str | None, *, now_s: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (0 for a date in the past), or None when
    there is none or it is neither a non-negative number nor an HTTP date."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT; a date without a zone is not one
        return None
    return max(0.0, when.timestamp() - now_s)


def retry_delay_s(backoff: float, retry_after: str | None, *, now_s: float, max_retry_after_s: float) -> float:
    """The wait before the next try: ``backoff``, or the ``Retry-After`` if longer (capped at
    ``max_retry_after_s``)."""
    asked = retry_after_s(retry_after, now_s=now_s)
    if asked is None:
        return backoff
    return max(backoff, min(asked, max_retry_after_s))
