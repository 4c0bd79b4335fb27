"""The retention of the SQLite store: the jobs ``SQLiteStore.prune`` runs, the events chunk by chunk.

Each write job deletes at most ``CHUNK`` rows and is submitted on its own, so it joins one
group transaction of the writer thread: a first prune of months of events never holds the
writer (and the ingests queued behind it) for long at a time (~10 ms per chunk of 2,000
600-byte events, synchronous NORMAL, on the 2-core reference machine). The
caller submits ``prune_events`` until it returns no cursor, reads ``kept_attempts`` once,
then submits ``prune_attempts`` until it returns no cursor.

Events go by age (``received_at``) with their outbox runs, unless a run still holds them:
pending, or dead (replayable): an acknowledged event is deleted only once delivered, or if
it was never to be relayed. The newest event stays too (with its run), whatever its age:
SQLite gives a new row ``max(id) + 1``, and an id must never name a second event (outbox runs,
the query API's cursors). Dedupe keys are pruned on their own retention, not with their events.

An attempt is made after every event it carries was received, so an attempt older than the
cutoff carried only events older than it: once those are pruned, it goes too, unless a run
of an event still kept refers to it. ``outbox_delivered`` counts the deliveries ever made per
destination; pruning leaves it alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import cache
from typing import Final

from capigate.store.base import PruneResult, Retention, cutoff_ms
from capigate.store.inspector import MINUTE_MS
from capigate.store.sqlite.inspector import prune_inspector
from capigate.store.sqlite.outbox import in_chunks

__all__ = [
    "CHUNK",
    "START",
    "EventCursor",
    "kept_attempts",
    "prune_attempts",
    "prune_events",
    "prune_keys_and_journal",
]

CHUNK: Final = 2000  # rows per job: ~10 ms of the writer's time
EventCursor = tuple[int, int]  # (received_at, id) of the last event looked at
START: Final[EventCursor] = (-(2**63), -(2**63))

# Oldest first, through the received_at index (whose entries end with the id, in order).
_OLD_EVENTS: Final = (
    "SELECT received_at, id FROM events INDEXED BY events_received_at "
    "WHERE received_at < ? AND (received_at, id) > (?, ?) ORDER BY received_at, id LIMIT ?"
)
# The runs between two event ids (the first may begin before them), through the primary key.
_RUNS_FROM: Final = "first_id BETWEEN coalesce((SELECT max(first_id) FROM outbox WHERE first_id <= ?), ?) AND ?"
_HOLDING: Final = f"SELECT first_id, last_id FROM outbox WHERE {_RUNS_FROM} AND state <> 'delivered' ORDER BY first_id"
_EMPTIED: Final = (
    f"DELETE FROM outbox WHERE {_RUNS_FROM} AND state = 'delivered' "
    "AND NOT EXISTS (SELECT 1 FROM events WHERE id BETWEEN outbox.first_id AND outbox.last_id)"
)
# The first id of the run holding the newest event (the newest alone if none holds it).
_NEWEST_RUN: Final = (
    "SELECT coalesce((SELECT first_id FROM outbox WHERE first_id = "
    "(SELECT max(first_id) FROM outbox WHERE first_id <= newest.id) AND last_id >= newest.id), newest.id) "
    "FROM (SELECT max(id) AS id FROM events) AS newest"
)
# The attempts the runs of the events still older than the cutoff refer to ("12,57,").
_KEPT: Final = (
    "SELECT DISTINCT o.attempt_ids FROM events e INDEXED BY events_received_at "
    "JOIN outbox o ON o.first_id = (SELECT max(first_id) FROM outbox WHERE first_id <= e.id) "
    "WHERE e.received_at < ? AND o.last_id >= e.id AND o.attempt_ids <> ''"
)


def prune_keys_and_journal(cur: sqlite3.Cursor, now_ms: int, retention: Retention) -> PruneResult:
    """The dedupe keys and the journal; the events follow in chunks (prune_events)."""
    keys_before = cutoff_ms(now_ms, retention.dedupe_days)
    journal_before = cutoff_ms(now_ms, retention.journal_days)
    keys = cur.execute("DELETE FROM dedupe_keys WHERE seen_at < ?", (keys_before,)).rowcount
    old = cur.execute("DELETE FROM requests WHERE received_at < ?", (journal_before,)).rowcount
    cur.execute("DELETE FROM request_minutes WHERE minute < ?", (journal_before - journal_before % MINUTE_MS,))
    over = cur.execute(
        "DELETE FROM requests WHERE id <= (SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (max(0, retention.journal_max_rows),),
    ).rowcount
    prune_inspector(cur, journal_before, cutoff_ms(now_ms, retention.event_days))
    return PruneResult(dedupe_keys=keys, requests=old + over, events=0)


def prune_events(cur: sqlite3.Cursor, before_ms: int, after: EventCursor) -> tuple[int, EventCursor | None]:
    """Delete the next ``CHUNK`` events received before ``before_ms`` (after the cursor
    ``after``) that no run holds, and the delivered runs left without events; returns how
    many were deleted and the cursor to go on from, None when none are left."""
    rows = cur.execute(_OLD_EVENTS, (before_ms, *after, CHUNK)).fetchall()
    if not rows:
        return 0, None
    last: EventCursor | None = (rows[-1][0], rows[-1][1]) if len(rows) == CHUNK else None
    (keep_from,) = cur.execute(_NEWEST_RUN).fetchone()
    ids = sorted(event_id for _, event_id in rows if event_id < keep_from)
    if not ids:
        return 0, last
    held = cur.execute(_HOLDING, (ids[0], ids[0], ids[-1])).fetchall()
    doomed = _outside(ids, held)
    deleted = _delete_ids(cur, "events", doomed)
    if doomed:
        cur.execute(_EMPTIED, (doomed[0], doomed[0], doomed[-1]))
    return deleted, last


def kept_attempts(conn: sqlite3.Connection, before_ms: int) -> frozenset[int]:
    """The attempts still referred to by the runs of the events older than ``before_ms``
    (after ``prune_events``: the pending, the dead and the newest). Read once, before
    ``prune_attempts``: later, a run only loses references (or, split, copies its own)."""
    return frozenset(int(n) for (ids,) in conn.execute(_KEPT, (before_ms,)) for n in ids.rstrip(",").split(","))


def prune_attempts(cur: sqlite3.Cursor, before_ms: int, after_id: int, kept: frozenset[int]) -> int | None:
    """Delete, among the next ``CHUNK`` attempts after ``after_id``, those made before
    ``before_ms`` that are not ``kept``; returns the id to go on from, None at the first
    attempt made since (attempts are written in time order, give or take a few seconds:
    one left behind goes at a later prune). The newest stays, as the newest event does."""
    rows = cur.execute("SELECT id, at FROM attempts WHERE id > ? ORDER BY id LIMIT ?", (after_id, CHUNK)).fetchall()
    if not rows:
        return None
    (newest,) = cur.execute("SELECT max(id) FROM attempts").fetchone()
    _delete_ids(cur, "attempts", [i for i, at in rows if at < before_ms and i not in kept and i != newest])
    if len(rows) < CHUNK or any(at >= before_ms for _, at in rows):
        return None
    last_id: int = rows[-1][0]
    return last_id


def _outside(ids: Sequence[int], runs: Sequence[tuple[int, int]]) -> list[int]:
    """The ``ids`` (ascending) in none of the ``runs`` (ascending, never overlapping)."""
    outside: list[int] = []
    r = 0
    for event_id in ids:
        while r < len(runs) and runs[r][1] < event_id:
            r += 1
        if r == len(runs) or event_id < runs[r][0]:
            outside.append(event_id)
    return outside


def _delete_ids(cur: sqlite3.Cursor, table: str, ids: Sequence[int]) -> int:
    deleted = 0
    for chunk, size in in_chunks(ids):
        deleted += cur.execute(_delete_sql(table, size), chunk).rowcount
    return deleted


@cache
def _delete_sql(table: str, size: int) -> str:
    return f"DELETE FROM {table} WHERE id IN ({', '.join('?' * size)})"
