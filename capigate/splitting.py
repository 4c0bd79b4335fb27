"""How a batch refused as a whole is sent again in parts, the one rule of the relay and the SDK.

The relay splits an Axon batch its upstream refused with 400, 413 or 422 (one bad event may
hold back good ones); the SDK one a gateway refused as too large (413: its ``max_body_bytes``
is below the client's, and no event is to blame). Either sends the events the refusal named
(``events[3]…``), each alone, after the others together, if it named some; else the two
halves, and each half again if refused again, down to single events. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TypeVar

__all__ = ["split_parts"]

T = TypeVar("T")


def split_parts(items: Sequence[T], named: Collection[int] = ()) -> list[list[T]]:
    """The parts to send ``items`` (two or more) in: the rest, then each of the ``named``
    indexes alone, when some but not all are named; else the two halves, in order."""
    named = {i for i in named if 0 <= i < len(items)}
    if named and len(named) < len(items):
        rest = [item for i, item in enumerate(items) if i not in named]
        return [rest, *([items[i]] for i in sorted(named))]
    half = len(items) // 2
    return [list(items[:half]), list(items[half:])]
