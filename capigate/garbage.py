"""How a serving worker's garbage collector is set, once its app has started.

What exists by then (modules, the configuration, the rules' tables, the store's statements:
some 30,000 objects the collector tracks) lives as long as the worker, yet each full
collection walked it all, ~6 ms of a stalled event loop; ``gc.freeze`` leaves it out of every
collection. Requests allocate containers that reference counting frees at once: CPython's
young collection, every 700 allocations (every ~80 one-event requests), found almost nothing,
and every tenth of them walked the older objects too. It now runs every ``YOUNG_THRESHOLD``
allocations; cycles are still collected. W2 over HTTP, one worker: +5.8 % requests a second,
the event loop's CPU 63 → 55 µs a request (docs/performance.md).

Only ``capigate serve``'s workers do this (``GatewayApp.settle_gc``, set by
``gateway.app_from_env``): an app embedded in another program leaves that program's collector
as it found it."""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "settle"]

YOUNG_THRESHOLD: Final = 10_000


def settle() -> None:
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
