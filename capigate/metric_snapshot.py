"""One worker's metric counters as a value: what ``capigate/metrics.py`` counts into, and
what the workers' shared files hold (msgpack). A module of its own, left as Python when the
hot modules are compiled: mypyc would drop the Struct's ``array_like``."""

from __future__ import annotations

from typing import TypeVar

import msgspec

__all__ = ["COUNT", "LATENCY_BUCKETS_MS", "SUM", "Histogram", "Snapshot", "decode_snapshot", "encode", "histogram"]

LATENCY_BUCKETS_MS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0)

# A histogram is one list: the count of each bucket (not cumulative; the last is +Inf), then
# the sum of the values in ms, then their count. Plain lists: the cheapest thing to update.
Histogram = list[float]
SUM = len(LATENCY_BUCKETS_MS) + 1
COUNT = SUM + 1


def histogram() -> Histogram:
    return [0] * (COUNT + 1)


def _add_histogram(mine: Histogram, theirs: Histogram) -> None:
    for i, value in enumerate(theirs):
        mine[i] += value


class Snapshot(msgspec.Struct, array_like=True):
    """One worker's counters, as written to its file (keys are label tuples)."""

    requests: dict[tuple[str, int], int]
    latency: dict[str, Histogram]
    events: dict[tuple[str, str], int]
    warnings: dict[tuple[str, str], int]
    relay_attempts: dict[tuple[str, str], int]
    relay_latency: dict[str, Histogram]

    def add(self, other: Snapshot) -> None:
        _add_counts(self.requests, other.requests)
        _add_counts(self.events, other.events)
        _add_counts(self.warnings, other.warnings)
        _add_counts(self.relay_attempts, other.relay_attempts)
        for hists, other_hists in ((self.latency, other.latency), (self.relay_latency, other.relay_latency)):
            for key, hist in other_hists.items():
                _add_histogram(hists.setdefault(key, histogram()), hist)


K = TypeVar("K")


def _add_counts(mine: dict[K, int], theirs: dict[K, int]) -> None:
    for key, value in theirs.items():
        mine[key] = mine.get(key, 0) + value


encode = msgspec.msgpack.Encoder().encode
decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode
