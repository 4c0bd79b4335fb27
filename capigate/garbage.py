"""How a serving worker's garbage collector is set, once its app has started.

What exists by then (modules, the configuration, the rules' tables, the store's statements,
granian's: ~46,800 objects the collector tracks) lives as long as the worker, yet each full
collection walked it all, 13 ms of a stalled event loop; ``gc.freeze`` leaves it out of every
collection. Requests allocate containers that reference counting frees at once, but a few dozen
of each request in flight are alive at a time: with CPython's threshold of 700 the young
collection ran every few dozen requests and found almost nothing (W2 over HTTP, about 200,000
requests: 6,442 young, 586 middle and 54 full collections, 1.27 s of the loop). At
``YOUNG_THRESHOLD`` none ran; cycles are still collected, later. W2, one worker: +6-9 %
requests a second, the event loop's CPU 63 → 55 µs a request (docs/performance.md).

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
