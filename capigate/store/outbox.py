"""The relay outbox's rules, the same for every backend: the states a delivery goes through,
what each attempt result does to it, and how one ``settle`` call is read.

A delivery is ``pending`` (waiting, or leased by an owner until its lease expires), then
``delivered`` or ``dead`` (final; a dead one can be replayed). Each result of an attempt
moves a delivery its owner still leases:

    delivered  -> delivered, one more attempt, lease released
    dead       -> dead, one more attempt, lease released
    retry      -> pending, one more attempt, lease released, due at next_attempt_at_ms
    split      -> pending, lease kept and extended to next_attempt_at_ms, not an attempt
    interrupted-> pending, lease released, due again at once, not an attempt (the relay
                  stopped before the upstream answered: the request was cut short)

The relay settles in the background, several requests' outcomes per call, so one call may
hold an event's "split" and then what its part's request did: **the last outcome of an event
in a call is the one that moves it**; every outcome is recorded as an attempt.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final, NamedTuple

from capigate.store.base import AttemptOutcome

__all__ = [
    "MOVES",
    "RELAY_STATES",
    "REPLAYED_SINCE",
    "REPLAY_SCAN_RUNS",
    "AttemptGroup",
    "Move",
    "attempt_groups",
    "attempt_key",
    "final_positions",
    "stretches",
]

RELAY_STATES: Final = frozenset({"pending", "delivered", "dead"})

# A replayed run is queued again after it arrived (ingest queues a run as it arrives), its
# attempts reset: what a replay made, until it is tried. Looked for among the destination's
# oldest pending runs alone (a replay's were dead letters: old ones): a paused destination asks
# at every poll, and reads an outage's backlog of new runs no further than this. A replay
# behind more waits out the pause (at most max_retry_after_s or backoff_max_s).
REPLAY_SCAN_RUNS: Final = 10_000
REPLAYED_SINCE: Final = (
    "SELECT 1 FROM (SELECT attempts, queued_at, arrived_at FROM outbox WHERE destination = {p} "
    f"AND state = 'pending' ORDER BY first_id LIMIT {REPLAY_SCAN_RUNS}) oldest "
    "WHERE attempts = 0 AND queued_at >= {p} AND queued_at > arrived_at LIMIT 1"
)


class Move(NamedTuple):
    state: str  # the delivery's state afterwards
    counts: bool  # an attempt, counted in Delivery.attempts
    keeps_lease: bool


MOVES: Final = {
    "delivered": Move("delivered", counts=True, keeps_lease=False),
    "dead": Move("dead", counts=True, keeps_lease=False),
    "retry": Move("pending", counts=True, keeps_lease=False),
    "split": Move("pending", counts=False, keeps_lease=True),
    "interrupted": Move("pending", counts=False, keeps_lease=False),
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


class AttemptGroup(NamedTuple):
    """The outcomes of one upstream request in a settle call: one attempts row."""

    sample: AttemptOutcome  # any of them: they share everything but the event
    moving: list[int]  # the events whose last outcome in the call this is: it moves them
    recorded: list[int]  # the events it is not the last outcome of: only recorded


def attempt_groups(outcomes: Sequence[AttemptOutcome]) -> list[AttemptGroup]:
    """``outcomes`` grouped by upstream request, in the order they first appear."""
    final = final_positions(outcomes)
    groups: dict[tuple[Any, ...], AttemptGroup] = {}
    for position, o in enumerate(outcomes):
        key = attempt_key(o)
        group = groups.get(key)
        if group is None:
            group = groups[key] = AttemptGroup(o, [], [])
        (group.moving if position in final else group.recorded).append(o.event_id)
    return list(groups.values())


def stretches(ids: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Sorted, de-duplicated ``ids`` as (first, last) stretches of consecutive integers."""
    ordered = sorted(set(ids))
    start = prev = ordered[0]
    for n in ordered[1:]:
        if n != prev + 1:
            yield start, prev
            start = n
        prev = n
    yield start, prev
