"""The outbox runs one settle call touches on PostgreSQL: locked, cut and moved in memory in
the order the call gives (store/outbox.py), then written back in two statements.

A run is only ever cut, never merged, so each run locked keeps its ``first_id`` (an UPDATE)
and every cut adds a run (an INSERT). Every run is locked by one statement, ``FOR UPDATE`` in
``first_id`` order, the order every outbox job waits for locks in: no two of them wait for
each other in a cycle. A run another transaction cut while this one waited for it is read
again with what that transaction committed, but the part cut off is a row the statement
could not see: ``Runs.covers`` tells, and the caller starts its transaction again (outbox.py)
rather than lock that part after runs above it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import psycopg
from psycopg.rows import TupleRow

from capigate.store.base import AttemptOutcome
from capigate.store.outbox import MOVES, stretches
from capigate.store.postgres.schema import pg_text

__all__ = ["CUT", "Run", "Runs", "lock_runs", "write_runs"]

Connection = psycopg.AsyncConnection[TupleRow]

_COLUMNS: Final = (
    "first_id, last_id, destination, state, attempts, queued_at, next_attempt_at, lease_owner, last_status, "
    "last_error, arrived_at, attempt_ids"
)
_REST: Final = _COLUMNS.removeprefix("first_id, last_id, ")

# Split the run starting at ``first`` into ``first .. at-1`` and ``at .. last`` (every part of
# the statement reads the run as it was before it).
CUT: Final = f"""
WITH run AS (
    SELECT last_id, {_REST} FROM outbox WHERE first_id = %(first)s
), head AS (
    UPDATE outbox SET last_id = %(at)s - 1 WHERE first_id = %(first)s
)
INSERT INTO outbox ({_COLUMNS}) SELECT %(at)s, {_COLUMNS.removeprefix("first_id, ")} FROM run
"""
# The runs holding any id of the stretches ``a .. b``: for each, the run holding ``a`` (the
# last one starting at or before it) and those starting up to ``b``, through the primary key.
# PostgreSQL sorts before it locks (LockRows above Sort), so the locks come in first_id order.
_LOCK: Final = f"""
SELECT {", ".join(f"o.{c}" for c in _COLUMNS.split(", "))}
FROM unnest(%s::int8[], %s::int8[]) AS r(a, b)
CROSS JOIN LATERAL (SELECT coalesce(max(first_id), r.a) AS start FROM outbox WHERE first_id <= r.a) s
JOIN outbox o ON o.first_id BETWEEN s.start AND r.b
WHERE o.last_id >= r.a
ORDER BY o.first_id
FOR UPDATE OF o
"""
_UPDATE: Final = """
UPDATE outbox o SET
    last_id = u.last_id, state = u.state, attempts = u.attempts, next_attempt_at = u.next_attempt_at,
    lease_owner = u.lease_owner, last_status = u.last_status, last_error = u.last_error,
    attempt_ids = string_to_array(u.attempt_ids, ',')::int8[]
FROM unnest(
    %b::int8[], %b::int8[], %b::text[], %b::int4[], %b::int8[], %b::text[], %b::int4[], %b::text[], %b::text[]
) AS u(first_id, last_id, state, attempts, next_attempt_at, lease_owner, last_status, last_error, attempt_ids)
WHERE o.first_id = u.first_id
"""
_INSERT: Final = f"""
INSERT INTO outbox ({_COLUMNS})
SELECT {_COLUMNS.removesuffix("attempt_ids")}string_to_array(attempt_ids, ',')::int8[]
FROM unnest(
    %b::int8[], %b::int8[], %b::text[], %b::text[], %b::int4[], %b::int8[], %b::int8[], %b::text[], %b::int4[],
    %b::text[], %b::int8[], %b::text[]
) AS u({_COLUMNS})
"""


@dataclass(slots=True)
class Run:
    first_id: int
    last_id: int
    destination: str
    state: str
    attempts: int
    queued_at: int
    next_attempt_at: int
    lease_owner: str | None
    last_status: int | None
    last_error: str | None
    arrived_at: int
    attempt_ids: list[int]
    cut_off: bool = field(default=False)  # a new run, cut from a locked one


class Runs:
    """Locked runs, sorted, cut and moved as the outcomes of a settle call say."""

    def __init__(self, runs: Sequence[Run]) -> None:
        self.by_first = {run.first_id: run for run in runs}
        self.firsts = sorted(self.by_first)

    def overlapping(self, a: int, b: int) -> list[Run]:
        start = max(0, bisect.bisect_right(self.firsts, a) - 1)
        end = bisect.bisect_right(self.firsts, b)
        return [run for run in (self.by_first[f] for f in self.firsts[start:end]) if run.last_id >= a]

    def covers(self, spans: Sequence[tuple[int, int]]) -> bool:
        for a, b in spans:
            expected = a
            for run in self.overlapping(a, b):
                if run.first_id > expected:
                    return False
                expected = run.last_id + 1
            if expected <= b:
                return False
        return True

    def apply(self, ids: list[int], owner: str | None, sample: AttemptOutcome, attempt_id: int, due: int) -> int:
        """Add the attempt to the runs of ``ids`` and move those ``owner`` still leases (none
        if ``owner`` is None); returns how many events moved."""
        move = MOVES[sample.result]
        moved = 0
        for a, b in stretches(ids):
            for run in self.overlapping(a, b):
                lo, hi = max(run.first_id, a), min(run.last_id, b)
                piece = self._cut(run, lo, hi)
                piece.attempt_ids.append(attempt_id)
                if owner is None or piece.lease_owner != owner or piece.state != "pending":
                    continue  # another owner's lease now, or not the event's last outcome: recorded
                if not move.keeps_lease:
                    piece.state, piece.lease_owner = move.state, None
                piece.attempts += move.counts
                piece.next_attempt_at, piece.last_status, piece.last_error = due, sample.status, pg_text(sample.error)
                moved += hi - lo + 1
        return moved

    def _cut(self, run: Run, lo: int, hi: int) -> Run:
        """The part ``lo .. hi`` of ``run`` as a run of its own."""
        if run.first_id < lo:
            run = self._split(run, lo)
        if hi < run.last_id:
            self._split(run, hi + 1)
        return run

    def _split(self, run: Run, at: int) -> Run:
        rest = replace(run, first_id=at, attempt_ids=list(run.attempt_ids), cut_off=True)
        run.last_id = at - 1
        self.by_first[at] = rest
        bisect.insort(self.firsts, at)
        return rest

    def __iter__(self) -> Iterator[Run]:
        return iter(self.by_first.values())


async def lock_runs(conn: Connection, spans: Sequence[tuple[int, int]]) -> Runs:
    """The runs holding the ids of ``spans`` that the statement could see, locked in
    ``first_id`` order (check ``covers``: a run cut meanwhile is missing its part)."""
    params = [[a for a, _ in spans], [b for _, b in spans]]
    return Runs([Run(*row) for row in await (await conn.execute(_LOCK, params)).fetchall()])


async def write_runs(conn: Connection, runs: Runs) -> None:
    kept = [run for run in runs if not run.cut_off]
    if kept:
        await conn.execute(
            _UPDATE,
            _columns(kept, ("first_id", "last_id", "state", "attempts", "next_attempt_at", "lease_owner",
                            "last_status", "last_error", "attempt_ids")),
        )  # fmt: skip
    added = [run for run in runs if run.cut_off]
    if added:
        await conn.execute(_INSERT, _columns(added, tuple(_COLUMNS.split(", "))))


def _columns(runs: list[Run], names: tuple[str, ...]) -> list[list[Any]]:
    return [
        [",".join(map(str, run.attempt_ids)) for run in runs]
        if name == "attempt_ids"
        else [getattr(run, name) for run in runs]
        for name in names
    ]
