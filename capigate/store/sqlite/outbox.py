"""The relay outbox of the SQLite store: the jobs ``SQLiteStore`` runs on it (tables: schema.py).

The write jobs (``claim``, ``settle``, ``release``, ``replay``, and the outbox rows of
``ingest``) run on the store's writer thread, inside its group transaction; ``query_attempts``
and ``outbox_depths`` run on a read-only connection.

An outbox row is a **run**: consecutive event ids of one destination that share their state,
lease and retry schedule. Ingest writes one run per request (its fresh events have
consecutive ids), so a 100-event Axon request is one row to lease and one row to settle,
not a hundred: on the 2-core reference machine per-event rows spent the relay's whole CPU
budget in the writer thread. A settle or claim that covers part of a run splits it first
(``_cut``), so every event still has exactly one row and its own state.

Tables (schema version 2):

    outbox            runs: first_id (key) .. last_id, destination, state (pending |
                      delivered | dead), attempts, queued_at, next_attempt_at (while leased:
                      the lease expiry), lease_owner, last_status, last_error, arrived_at
                      (the events' received_at), attempt_ids ("12,57," the attempts that
                      carried these events)
    attempts          one row per upstream request: time, destination, result, status,
                      latency, the verbatim response headers and body (cut at 64 KiB)
    outbox_delivered  delivered events per destination, so outbox_depths needs no scan

A delivered event's events row is not rewritten: ``query_events`` reads the state from the
run that holds the event (``EVENT_JOIN``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any, Final

import msgspec

from capigate.store.base import AttemptOutcome, DeadLetterQuery, Delivery, DeliveryAttempt, OutboxDepth
from capigate.store.outbox import MOVES, REPLAYED_SINCE, attempt_groups, stretches

__all__ = [
    "EVENT_JOIN",
    "INSERT_OUTBOX",
    "OUTBOX_WIDTH",
    "claim",
    "in_chunks",
    "outbox_depths",
    "outbox_rows",
    "query_attempts",
    "relay_state_join",
    "release",
    "replay",
    "settle",
]

_encode = msgspec.json.Encoder().encode
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode

_COLUMNS: Final = (
    "last_id, destination, state, attempts, queued_at, next_attempt_at, lease_owner, last_status, last_error, "
    "arrived_at, attempt_ids"
)
INSERT_OUTBOX: Final = (
    "INSERT INTO outbox (first_id, last_id, destination, state, queued_at, next_attempt_at, arrived_at) VALUES "
)
OUTBOX_WIDTH: Final = 7

# The run holding an event (runs never overlap): for query_events' status.
_RUN_OF_EVENT: Final = "(SELECT max(first_id) FROM outbox WHERE first_id <= events.id)"
EVENT_JOIN: Final = f" LEFT JOIN outbox o ON o.first_id = {_RUN_OF_EVENT} AND o.last_id >= events.id"

_DUE: Final = """SELECT first_id, last_id, attempts, queued_at, arrived_at FROM outbox
WHERE destination = ? AND state = 'pending' AND next_attempt_at <= ?
ORDER BY first_id LIMIT ?"""
_EVENTS_OF_RUN: Final = (
    "SELECT id, api, source, name, dedupe_id, payload FROM events WHERE id BETWEEN ? AND ? ORDER BY id"
)
# The same in one row (one sqlite3 step, so one GIL hand-off, not one per event), joined by
# the record separator, which msgspec's JSON output never holds raw (it escapes controls).
_RUN_IN_ONE_ROW: Final = """SELECT count(*), min(api), min(source),
    group_concat(name, char(30)), group_concat(coalesce('=' || dedupe_id, ''), char(30)),
    CAST(group_concat(payload, char(30)) AS BLOB)
FROM (SELECT api, source, name, dedupe_id, payload FROM events WHERE id BETWEEN ? AND ? ORDER BY id)"""
_OVERLAPPING: Final = """SELECT first_id, last_id, state, lease_owner FROM outbox
WHERE first_id BETWEEN coalesce((SELECT max(first_id) FROM outbox WHERE first_id <= ?), ?) AND ?
ORDER BY first_id"""
_INSERT_ATTEMPT: Final = (
    "INSERT INTO attempts (destination, at, result, status, latency_ms, error, response_headers, response_body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_COUNT_DELIVERED: Final = (
    "INSERT INTO outbox_delivered (destination, delivered) VALUES (?, ?) "
    "ON CONFLICT (destination) DO UPDATE SET delivered = delivered + excluded.delivered"
)
Row = tuple[Any, ...]


def relay_state_join(state: str) -> str:
    """The join of query_events for a relay state: pending and dead runs are read through
    their partial index (the backlog, the dead letters: few), delivered ones by scanning
    events newest first (CROSS JOIN keeps events the outer loop)."""
    if state == "delivered":
        return f" CROSS JOIN outbox o ON o.first_id = {_RUN_OF_EVENT} AND o.last_id >= events.id"
    return f" JOIN outbox o INDEXED BY outbox_{state} ON events.id BETWEEN o.first_id AND o.last_id"


# --- ingest -------------------------------------------------------------------------------


def outbox_rows(destinations: Sequence[str | None], first_id: int, received_at_ms: int) -> Iterator[Row]:
    """One run per stretch of consecutive stored events (ids ``first_id`` …, their
    ``destinations``) with one destination."""
    start = 0
    while start < len(destinations):
        destination = destinations[start]
        end = start + 1
        while end < len(destinations) and destinations[end] == destination:
            end += 1
        if destination is not None:
            a, b = first_id + start, first_id + end - 1
            yield a, b, destination, "pending", received_at_ms, received_at_ms, received_at_ms
        start = end


# --- write jobs ---------------------------------------------------------------------------


def claim(cur: sqlite3.Cursor, destination: str, owner: str, limit: int, now_ms: int, lease_ms: int) -> list[Delivery]:
    if limit < 1:
        return []
    taken: list[Row] = []
    left = limit
    for first, last, attempts, queued_at, arrived_at in cur.execute(_DUE, (destination, now_ms, limit)).fetchall():
        if last - first + 1 > left:
            _cut(cur, first, first + left)  # the rest of the run stays due
            last = first + left - 1
        taken.append((first, last, attempts, queued_at, arrived_at))
        left -= last - first + 1
        if left == 0:
            break
    for chunk, size in in_chunks([run[0] for run in taken]):
        cur.execute(_lease_sql(size), [owner, now_ms + lease_ms, *chunk])
    deliveries: list[Delivery] = []
    for first, last, attempts, queued_at, arrived_at in taken:
        deliveries += _deliveries(cur, destination, first, last, attempts, queued_at, arrived_at)
    return deliveries


def _deliveries(
    cur: sqlite3.Cursor, destination: str, first: int, last: int, attempts: int, queued_at: int, arrived_at: int
) -> list[Delivery]:
    """The events of one run (one ingest request: one api, one source, one arrival time), read in one row."""
    count, api, source, names, dedupe_ids, payloads = cur.execute(_RUN_IN_ONE_ROW, (first, last)).fetchone()
    size = last - first + 1
    if count == size:
        columns = names.split("\x1e"), dedupe_ids.split("\x1e"), payloads.split(b"\x1e")
        if all(len(column) == size for column in columns):
            return [
                Delivery(
                    event_id=first + i,
                    destination=destination,
                    api=api,
                    source=source,
                    name=name,
                    dedupe_id=dedupe_id[1:] if dedupe_id else None,  # "=id", or "" for none
                    payload=payload,
                    attempts=attempts,
                    queued_at_ms=queued_at,
                    received_at_ms=arrived_at,
                )
                for i, (name, dedupe_id, payload) in enumerate(zip(*columns, strict=True))
            ]
    # A separator inside a name or a dedupe_id: one row per event.
    return [
        Delivery(
            event_id=r[0],
            destination=destination,
            api=r[1],
            source=r[2],
            name=r[3],
            dedupe_id=r[4],
            payload=r[5],
            attempts=attempts,
            queued_at_ms=queued_at,
            received_at_ms=arrived_at,
        )
        for r in cur.execute(_EVENTS_OF_RUN, (first, last))
    ]


def settle(cur: sqlite3.Cursor, outcomes: Sequence[AttemptOutcome], owner: str) -> None:
    """One ``attempts`` row per distinct response (the outcomes of one request share it);
    each event's final outcome in the call moves its run (store/outbox.py)."""
    for sample, moving, recorded in attempt_groups(outcomes):
        cur.execute(
            _INSERT_ATTEMPT,
            (
                sample.destination,
                sample.at_ms,
                sample.result,
                sample.status,
                sample.latency_ms,
                sample.error,
                _encode(sample.response_headers),
                sample.response_body,
            ),
        )
        history = f"{cur.lastrowid},"
        due = sample.next_attempt_at_ms if sample.next_attempt_at_ms is not None else sample.at_ms
        moved = _apply(cur, moving, owner, sample, history, due) if moving else 0
        if recorded:
            _apply(cur, recorded, None, sample, history, due)
        if sample.result == "delivered" and moved:
            cur.execute(_COUNT_DELIVERED, (sample.destination, moved))


def _apply(
    cur: sqlite3.Cursor, ids: list[int], owner: str | None, sample: AttemptOutcome, history: str, due: int
) -> int:
    """Add the attempt to the runs of ``ids`` and move those ``owner`` still leases (none if
    ``owner`` is None); returns how many events moved."""
    moved = 0
    for a, b in stretches(ids):
        for first, last, state, lease_owner in cur.execute(_OVERLAPPING, (a, a, b)).fetchall():
            lo, hi = max(first, a), min(last, b)
            if lo > hi:
                continue  # the run before ``a`` ends before it
            if first < lo:
                _cut(cur, first, lo)
            if hi < last:
                _cut(cur, lo, hi + 1)
            if owner is not None and lease_owner == owner and state == "pending":
                cur.execute(_move_sql(sample.result), (history, due, sample.status, sample.error, lo))
                moved += hi - lo + 1
            else:  # another owner's lease now, or not the event's last outcome: recorded, not moved
                cur.execute("UPDATE outbox SET attempt_ids = attempt_ids || ? WHERE first_id = ?", (history, lo))
    return moved


def release(cur: sqlite3.Cursor, owner: str) -> int:
    """Gives back the owner's leases; returns how many events they held."""
    # A released run was due when it was leased, so it is due again at once.
    sql = (
        "UPDATE outbox SET lease_owner = NULL, next_attempt_at = 0 WHERE state = 'pending' AND lease_owner = ? "
        "RETURNING last_id - first_id + 1"
    )
    return sum(n for (n,) in cur.execute(sql, (owner,)).fetchall())


def replay(cur: sqlite3.Cursor, query: DeadLetterQuery, now_ms: int) -> int:
    """Dead runs matching ``query`` (every event of a run came in one request: one source,
    one received_at) become due now, attempts reset; returns how many events."""
    filters = (
        ("o.destination = ?", query.destination),
        ("e.source = ?", query.source),
        ("o.last_status = ?", query.status),
        ("o.arrived_at >= ?", query.since_ms),
        ("o.arrived_at < ?", query.until_ms),
    )
    chosen = [(clause, value) for clause, value in filters if value is not None]
    where = "".join(f" AND {clause}" for clause, _ in chosen)
    sql = (
        "UPDATE outbox SET state = 'pending', attempts = 0, queued_at = ?, next_attempt_at = ?, lease_owner = NULL "
        "WHERE first_id IN (SELECT o.first_id FROM outbox o JOIN events e ON e.id = o.first_id "
        f"WHERE o.state = 'dead'{where}) RETURNING last_id - first_id + 1"
    )
    return sum(n for (n,) in cur.execute(sql, [now_ms, now_ms, *(value for _, value in chosen)]).fetchall())


_REPLAYED_SINCE: Final = REPLAYED_SINCE.format(p="?")


def replayed_since(conn: sqlite3.Connection, destination: str, since_ms: int) -> bool:
    return conn.execute(_REPLAYED_SINCE, (destination, since_ms)).fetchone() is not None


def _cut(cur: sqlite3.Cursor, first: int, at: int) -> None:
    """Split the run starting at ``first`` into ``first .. at-1`` and ``at .. last``."""
    cur.execute(
        f"INSERT INTO outbox (first_id, {_COLUMNS}) SELECT ?, {_COLUMNS} FROM outbox WHERE first_id = ?", (at, first)
    )
    cur.execute("UPDATE outbox SET last_id = ? WHERE first_id = ?", (at - 1, first))


def in_chunks(ids: Sequence[int]) -> Iterator[tuple[list[int | None], int]]:
    """``ids`` in chunks of at most 256, each padded with NULLs (which match nothing) to a
    power of two, so that a handful of prepared statements serve every size."""
    for start in range(0, len(ids), 256):
        chunk: list[int | None] = list(ids[start : start + 256])
        size = 1 << (len(chunk) - 1).bit_length()
        yield chunk + [None] * (size - len(chunk)), size


@cache
def _lease_sql(size: int) -> str:
    marks = ", ".join("?" * size)
    return f"UPDATE outbox SET lease_owner = ?, next_attempt_at = ? WHERE first_id IN ({marks})"


@cache
def _move_sql(result: str) -> str:
    """What ``result`` does to a run its owner still leases (store/outbox.py's MOVES)."""
    move = MOVES[result]
    sets = "" if move.keeps_lease else f"state = '{move.state}', lease_owner = NULL, "
    if move.counts:
        sets += "attempts = attempts + 1, "
    return (
        f"UPDATE outbox SET {sets}attempt_ids = attempt_ids || ?, next_attempt_at = ?, last_status = ?, "
        "last_error = ? WHERE first_id = ?"
    )


# --- reads --------------------------------------------------------------------------------


def query_attempts(conn: sqlite3.Connection, event_id: int) -> list[DeliveryAttempt]:
    row = conn.execute(
        "SELECT attempt_ids, destination FROM outbox WHERE first_id = "
        "(SELECT max(first_id) FROM outbox WHERE first_id <= ?) AND last_id >= ?",
        (event_id, event_id),
    ).fetchone()
    if row is None or not row[0]:
        return []
    ids = [int(n) for n in row[0].rstrip(",").split(",")]
    marks = ", ".join("?" * len(ids))
    sql = (
        "SELECT id, destination, at, result, status, latency_ms, error, response_headers, response_body "
        f"FROM attempts WHERE id IN ({marks}) ORDER BY id"
    )
    return [
        DeliveryAttempt(
            id=r[0],
            event_id=event_id,
            destination=r[1],
            at=r[2],
            result=r[3],
            status=r[4],
            latency_ms=r[5],
            error=r[6],
            response_headers=_decode_headers(r[7]),
            response_body=r[8],
        )
        for r in conn.execute(sql, ids)
    ]


def outbox_depths(conn: sqlite3.Connection) -> list[OutboxDepth]:
    """Per destination; pending and dead read their partial indexes only."""
    conn.execute("BEGIN")  # one snapshot for the three reads
    try:
        pending = {
            d: (n, first)
            for d, n, first in conn.execute(
                "SELECT destination, sum(last_id - first_id + 1), min(first_id) FROM outbox "
                "WHERE state = 'pending' GROUP BY destination"
            )
        }
        dead = dict(
            conn.execute(
                "SELECT destination, sum(last_id - first_id + 1) FROM outbox WHERE state = 'dead' GROUP BY destination"
            )
        )
        delivered = dict(conn.execute("SELECT destination, delivered FROM outbox_delivered"))
        depths = []
        for destination in sorted({*pending, *dead, *delivered}):
            count, first = pending.get(destination, (0, None))
            oldest = None
            if first is not None:
                row = conn.execute("SELECT arrived_at FROM outbox WHERE first_id = ?", (first,)).fetchone()
                oldest = row[0] if row else None
            depths.append(
                OutboxDepth(
                    destination=destination,
                    pending=count,
                    dead=dead.get(destination, 0),
                    delivered=delivered.get(destination, 0),
                    oldest_pending_at=oldest,
                )
            )
        return depths
    finally:
        conn.execute("COMMIT")
