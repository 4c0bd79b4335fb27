"""Epoch times: the one rule that tells seconds from milliseconds, for every layer.

It imports nothing of capigate, so the rules (Axon's event_time and measurement timestamps)
and the admin API's time parameters read the same threshold without either importing the other.
"""

from __future__ import annotations

from typing import Final

__all__ = ["SECONDS_BELOW", "looks_like_seconds"]

SECONDS_BELOW: Final = 100_000_000_000  # 10^11: March 1973 in ms, the year 5138 in s


def looks_like_seconds(value: int) -> bool:
    """An epoch value below 10^11 is seconds; 0 is the same instant in both units, so it is not."""
    return 0 < value < SECONDS_BELOW
