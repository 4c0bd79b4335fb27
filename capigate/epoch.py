"""Epoch times: the one rule that tells seconds from milliseconds, and the largest time, for
every layer.

It imports nothing of capigate, so the rules (Axon's event_time and measurement timestamps)
and the admin API's time parameters read the same threshold and the same upper limit without
either importing the other.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_EPOCH_MILLIS", "SECONDS_BELOW", "looks_like_seconds"]

SECONDS_BELOW: Final = 100_000_000_000  # 10^11: March 1973 in ms, the year 5138 in s
# 9999-12-31T23:59:59.999Z, datetime's own limit: a larger integer cannot be a time (nor fit
# the store's column), whether an event's time or an admin API parameter.
MAX_EPOCH_MILLIS: Final = 253_402_300_799_999


def looks_like_seconds(value: int) -> bool:
    """An epoch value below 10^11 is seconds; 0 is the same instant in both units, so it is not."""
    return 0 < value < SECONDS_BELOW
