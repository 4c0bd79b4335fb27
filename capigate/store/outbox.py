"""The relay outbox's rules, the same for every backend: the states a delivery goes through,
what each attempt result does to it, and how one ``settle`` call is read.

A delivery is ``pending`` (waiting, or leased by an owner until its lease expires), then
``delivered`` or ``dead`` (final; a dead one can be replayed). Each result of an attempt
moves a delivery its owner still leases:

    delivered  -> delivered, one more attempt, lease released
    dead       -> dead, one more attempt, lease released
    retry      -> pending, one more attempt, lease released, due at next_attempt_at_ms
    split      -> pending, lease kept and extended to next_attempt_at_ms, not an attempt

The relay settles in the background, several requests' outcomes per call, so one call may
hold an event's "split" and then what its part's request did: **the last outcome of an event
in a call is the one that moves it**; every outcome is recorded as an attempt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from capigate.store.base import AttemptOutcome

__all__ = ["MOVES", "RELAY_STATES", "Move", "attempt_key", "final_positions"]

RELAY_STATES: Final = frozenset({"pending", "delivered", "dead"})


class Move(NamedTuple):
    state: str  # the delivery's state afterwards
    counts: bool  # an attempt, counted in Delivery.attempts
    keeps_lease: bool


MOVES: Final = {
    "delivered": Move("delivered", counts=True, keeps_lease=False),
    "dead": Move("dead", counts=True, keeps_lease=False),
    "retry": Move("pending", counts=True, keeps_lease=False),
    "split": Move("pending", counts=False, keeps_lease=True),
}


def final_positions(outcomes: Sequence[AttemptOutcome]) -> set[int]:
    """The positions in ``outcomes`` of each event's last outcome: the ones that move it.
    ValueError on an unknown result."""
    last: dict[int, int] = {}
    for position, o in enumerate(outcomes):
        if o.result not in MOVES:
            raise ValueError(f"unknown attempt result {o.result!r}")
        last[o.event_id] = position
    return set(last.values())


def attempt_key(o: AttemptOutcome) -> tuple[Any, ...]:
    """Outcomes with equal keys came from one upstream request and share one attempts row
    (the relay gives them the same response objects, compared by identity)."""
    return (
        id(o.response_headers), id(o.response_body), o.result, o.at_ms, o.next_attempt_at_ms,
        o.status, o.error, o.destination, o.latency_ms,
    )  # fmt: skip
