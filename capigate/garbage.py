"""How a serving worker's garbage collector is set, once its app has started.

What exists by then (modules, the configuration, the rules' tables, the store's statements,
granian's objects: ~43,000 objects the collector tracks) lives as long as the worker, yet each
full collection walked it all, 13 ms of a stalled event loop. ``gc.freeze`` moves it out of
every collection for good: an object alive at start-up that later becomes cyclic garbage is
never freed (few do: a store connection replaced after an outage, say, a few kilobytes each).

Requests allocate containers that reference counting frees at once, but those of the requests
in flight, a few dozen each, are alive together: with CPython's threshold of 700 the young
collection ran every few dozen requests and found almost nothing. Measured on CPython 3.11 in
a worker under W2 over HTTP (about 200,000 requests): 6,442 young, 586 middle and 54 full
collections, 1.27 s of the loop, against none after start-up with ``YOUNG_THRESHOLD``; the
requests a second +6-9 %, the event loop's CPU 63 → 55 µs a request (docs/performance.md).
Cycles are still collected, once 10,000 more containers have been made than freed.

Only ``capigate serve``'s workers do this (``GatewayApp.settle_gc``, set by
``gateway.app_from_env``): an app embedded in another program leaves that program's collector
as it found it."""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "settle"]

YOUNG_THRESHOLD: Final = 10_000


def settle() -> None:
    """Collect what start-up left behind, freeze the rest, and raise the young threshold."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
