"""What every field rule of an AppsFlyer in-app event is given and may return: the check's
``Context`` (its report, the arrival time, what earlier fields told) and ``DROP`` to leave the
field out of the payload."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from capigate.checking import Report, did_you_mean, you_mean

__all__ = ["DROP", "Context", "Drop", "Rule", "suggest"]


@lru_cache(maxsize=1024)  # difflib costs ~100 µs; a client repeats the same stray keys
def suggest(key: str, known: frozenset[str]) -> str:
    lowered = key.lower()
    for name in known:
        if name.lower() == lowered:
            return you_mean(name)
    return did_you_mean(key, known)


class Drop:
    """Returned by a rule to leave the field out of the payload."""


DROP: Final = Drop()


class Context:
    __slots__ = ("event_time_ms", "event_value", "extra", "received_at_ms", "region", "report")

    def __init__(self, report: Report, received_at_ms: int) -> None:
        self.report = report
        self.received_at_ms = received_at_ms
        self.event_time_ms: int | None = None
        self.event_value: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.region: str | None = None  # the country the body carries (eventValue.af_country)


Rule = Callable[[str, Any, Context], Any]
