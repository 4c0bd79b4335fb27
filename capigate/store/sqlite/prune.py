"""The retention of the SQLite store: the jobs ``SQLiteStore.prune`` runs, a chunk each.

Each write job deletes at most ``CHUNK`` rows of a table (but for rows sharing one time,
``_edge``) and is submitted on its own, so it joins one group transaction of the writer thread:
a first prune of a big backlog (months of events, a retention just shortened, a node back after
weeks, a journal far over its size) never holds the writer (and the ingests queued behind it)
for long at a time (~10 ms per chunk of 2,000 600-byte events, synchronous NORMAL, on the
2-core reference machine). Each job finds its rows through an index that leads with their time
(or id), of which it reads a chunk's entries. The caller submits each job until it says it is
done (``Chunk``): ``prune_keys``, ``prune_journal``, then (``journal_over`` read once on a
reader) ``prune_over``; then, unless events are kept for ever, ``prune_rollups``,
``prune_events`` until it returns no cursor; it reads ``kept_attempts`` once, then submits
``prune_attempts`` until it returns no cursor.

Dedupe keys go by age (``seen_at``, their event's received_at), on their own retention, not
with their events. They have no index of their time (an eighth of a W1 lead-gen event's writer
instructions): each job walks the next chunk of the events received before the cutoff, from
where the last walk ended (``prune_marks``), and deletes each one's key if it still names it;
the keys of events pruned before them (events kept for less time than keys) wait in
``dedupe_aging`` by time, written when their events go. Journal
entries go by age (``received_at``), then those over ``journal_max_rows`` by id, each job with
a chunk of the refused bodies and request keys of the entries gone. Each job of the journal by
age leaves it as the whole prune would at a cutoff of its own (``prune_journal``), so the
overview's per-minute totals never lose a minute whose entries are still there; the entries
over the limit go, their minutes keep counting them. The match-key rollups go by the hour and
the day, with the events' cutoff.

Events go by age (``received_at``) with their outbox runs, unless a run still holds them:
pending, or dead (replayable): an acknowledged event is deleted only once delivered, or if
it was never to be relayed. The newest event stays too (with its run), whatever its age:
SQLite gives a new row ``max(id) + 1``, and an id must never name a second event (outbox runs,
the query API's cursors). A block (the events a request stored, found by their source, time
and names) goes with its last event.

An attempt is made after every event it carries was received, so an attempt older than the
cutoff carried only events older than it: once those are pruned, it goes too, unless a run
of an event still kept refers to it. ``outbox_delivered`` counts the deliveries ever made per
destination; pruning leaves it alone.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Final

from capigate.events import dedupe_scope, kept_as_sent, scope_name
from capigate.store.inspector import DAY_MS, HOUR_MS, MINUTE_MS
from capigate.store.sqlite.dedupe import flush_older
from capigate.store.sqlite.outbox import in_chunks
from capigate.store.sqlite.schema import KEYS_MARK, KEYS_MARK_SET

__all__ = [
    "CHUNK",
    "START",
    "Chunk",
    "EventCursor",
    "journal_over",
    "kept_attempts",
    "prune_attempts",
    "prune_events",
    "prune_journal",
    "prune_keys",
    "prune_over",
    "prune_rollups",
]

CHUNK: Final = 2000  # rows per job: ~10 ms of the writer's time
EventCursor = tuple[int, int]  # (received_at, id) of the last event looked at
START: Final[EventCursor] = (-(2**63), -(2**63))

Chunk = tuple[int, bool]  # a job's rows deleted (those the PruneResult counts), and whether it is done

# The time each table of the keys, the journal and the rollups is pruned by, which leads an
# index: the table's own (WITHOUT ROWID) key, or the index named, which the planner is held to.
_TIME: Final = {
    "requests": "received_at", "request_minutes": "minute",
    "request_bodies": "received_at", "request_keys": "received_at", "event_quality": "hour",
    "event_quality_days": "day",
}  # fmt: skip
_INDEXED: Final = frozenset(("requests", "request_bodies", "request_keys"))  # by {table}_{column}
_FROM: Final = {
    table: f"{table} INDEXED BY {table}_{column}" if table in _INDEXED else table for table, column in _TIME.items()
}
# The oldest time under a bound, and the time ``CHUNK`` rows after it (``_edge``).
_EDGE: Final = {
    table: f"SELECT (SELECT min({column}) FROM {_FROM[table]} WHERE {column} < ?1), "
    f"(SELECT {column} FROM {_FROM[table]} WHERE {column} < ?1 ORDER BY {column} LIMIT 1 OFFSET {CHUNK})"
    for table, column in _TIME.items()
}
_DELETE_BEFORE: Final = {table: f"DELETE FROM {_FROM[table]} WHERE {column} < ?" for table, column in _TIME.items()}
_OLDEST_ENTRY: Final = f"SELECT min(received_at) FROM {_FROM['requests']}"
_ID_RANGE: Final = "SELECT (SELECT min(id) FROM requests), (SELECT max(id) FROM requests)"
_NTH_ID: Final = "SELECT id FROM requests ORDER BY id LIMIT 1 OFFSET ?"
# The next chunk of entries up to an id, through the primary key.
_OVER_CHUNK: Final = (
    "DELETE FROM requests WHERE id <= coalesce("
    f"(SELECT id FROM requests WHERE id <= ?1 ORDER BY id LIMIT 1 OFFSET {CHUNK - 1}), ?1)"
)

# Oldest first, through the blocks' received_at index (whose entries end with the block's
# first id, in order: blocks never overlap, so that is the order of (received_at, id)).
_IN_BLOCKS_BEFORE: Final = (
    "FROM event_blocks k INDEXED BY event_blocks_received_at JOIN events e ON e.id BETWEEN k.first_id AND k.last_id "
)
_OLD_EVENTS: Final = (
    f"SELECT k.received_at, e.id {_IN_BLOCKS_BEFORE}WHERE k.received_at < ?1 AND k.received_at >= ?2 "
    "AND (k.received_at, e.id) > (?2, ?3) ORDER BY k.received_at, k.first_id, e.id LIMIT ?4"
)
# The blocks left without events between two event ids (the first may begin before them).
_EMPTIED_BLOCKS: Final = (
    "DELETE FROM event_blocks WHERE first_id BETWEEN "
    "coalesce((SELECT max(first_id) FROM event_blocks WHERE first_id <= ?1), ?1) AND ?2 "
    "AND NOT EXISTS (SELECT 1 FROM events WHERE id BETWEEN event_blocks.first_id AND event_blocks.last_id) "
    "RETURNING first_id, last_id, names"
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
    f"SELECT DISTINCT o.attempt_ids {_IN_BLOCKS_BEFORE}"
    "JOIN outbox o ON o.first_id = (SELECT max(first_id) FROM outbox WHERE first_id <= e.id) "
    "WHERE k.received_at < ? AND o.last_id >= e.id AND o.attempt_ids <> ''"
)


def prune_keys(cur: sqlite3.Cursor, before: int) -> Chunk:
    """A chunk of the dedupe keys seen before ``before`` (the recent ones moved into the index
    first, when any is that old): those of a chunk of ``dedupe_aging``, then those of the next
    chunk of the events the walk has not passed yet."""
    flush_older(cur, before)
    aged, done = _prune_aging(cur, before)
    if not done:
        return aged, False
    walked, done = _walk_events(cur, before)
    return aged + walked, done


_AGING: Final = (
    "SELECT seen_at, source, dedupe_id, event_id FROM dedupe_aging WHERE seen_at < ? ORDER BY seen_at LIMIT ?"
)
_DELETE_AGING: Final = "DELETE FROM dedupe_aging WHERE seen_at = ? AND source = ? AND dedupe_id = ?"
# A key goes only while it names the event: once gone, its id may have been stored again since.
_DELETE_KEY: Final = "DELETE FROM dedupe_keys WHERE source = ? AND dedupe_id = ? AND event_id = ?"


def _prune_aging(cur: sqlite3.Cursor, before: int) -> Chunk:
    """A chunk of the waiting keys seen before ``before``; a key whose event is still there
    (received behind the walk) becomes a journal key as the walk's do (``_walk_events``)."""
    rows = cur.execute(_AGING, (before, CHUNK)).fetchall()
    gone = _delete_keys(cur, [row[1:] for row in rows])
    _journal_going(cur, gone)
    cur.executemany(_DELETE_AGING, [row[:3] for row in rows])
    return len(gone), len(rows) < CHUNK


# The walk's next events, oldest first through the blocks' received_at index, as _OLD_EVENTS.
_WALK: Final = (
    "SELECT k.received_at, e.id, e.api, e.source, e.name, e.test_tag, e.dedupe_id "
    f"{_IN_BLOCKS_BEFORE}WHERE k.received_at < ?1 AND k.received_at >= ?2 AND (k.received_at, e.id) > (?2, ?3) "
    "ORDER BY k.received_at, k.first_id, e.id LIMIT ?4"
)


def _walk_events(cur: sqlite3.Cursor, before: int) -> Chunk:
    """The keys of the next ``CHUNK`` events received before ``before`` past the mark, which
    then moves past them (to ``before`` once none is left). A stored event's dedupe id finds
    its request through the key: one going while the entry stays becomes a journal key."""
    row = cur.execute(KEYS_MARK).fetchone()
    after: EventCursor = START if row is None else (row[0], row[1])
    if after[0] >= before:
        return 0, True
    rows = cur.execute(_WALK, (before, *after, CHUNK)).fetchall()
    keys = [
        (dedupe_scope(source, test_tag, scope_name(api, name)), dedupe_id, event_id)
        for _, event_id, api, source, name, test_tag, dedupe_id in rows
        if dedupe_id is not None
    ]
    gone = _delete_keys(cur, keys)
    (oldest_entry,) = cur.execute(_OLDEST_ENTRY).fetchone()
    if gone and oldest_entry is not None and oldest_entry <= rows[-1][0]:  # an entry may stay (rarely)
        _journal_going(cur, gone)
    done = len(rows) < CHUNK
    cur.execute(KEYS_MARK_SET, (before, START[1]) if done else (rows[-1][0], rows[-1][1]))
    return len(gone), done


def _delete_keys(cur: sqlite3.Cursor, keys: list[tuple[str, str, int]]) -> set[int]:
    """Deletes each (source, dedupe_id, event id) key that still names its event; the event
    ids whose key went. A statement a key, by the primary key: 1.6 µs each, where one
    statement for the chunk's keys listed in JSON took three times as long."""
    return {key[2] for key in keys if cur.execute(_DELETE_KEY, key).rowcount}


def _journal_going(cur: sqlite3.Cursor, event_ids: Iterable[int]) -> None:
    """The dedupe ids of these events (their keys gone) whose journal entry stays become its
    keys, a statement a chunk of ids."""
    for chunk, size in in_chunks(sorted(event_ids)):
        _journal_stored_ids(cur, _events_going_sql(size), chunk)


def _age_keys(cur: sqlite3.Cursor, ids: Sequence[int], keys_before: int) -> None:
    """Events about to go whose keys stay (seen since ``keys_before``): their keys wait by time
    in dedupe_aging, which the walk (past the events) cannot find them by any more."""
    for chunk, size in in_chunks(ids):
        rows = cur.execute(_aging_of_sql(size), (*chunk, keys_before)).fetchall()
        aged = [
            (seen_at, dedupe_scope(source, tag, scope_name(api, name)), d, i)
            for seen_at, api, source, name, tag, d, i in rows
        ]
        cur.executemany(_INSERT_AGING, aged)


_INSERT_AGING: Final = "INSERT OR IGNORE INTO dedupe_aging (seen_at, source, dedupe_id, event_id) VALUES (?, ?, ?, ?)"


@cache
def _aging_of_sql(size: int) -> str:
    return (
        "SELECT received_at, api, source, name, test_tag, dedupe_id, id FROM events "
        f"WHERE id IN ({', '.join('?' * size)}) AND dedupe_id IS NOT NULL AND received_at >= ?"
    )


# A stored event's dedupe id finds its request through its dedupe key and the event
# (kept.dedupe_ids_not_stored), not a journal key; when either goes while the journal entry
# stays (the journal kept longer, or the retention shortened since), the id becomes one.
_ENTRY_STAYS: Final = "EXISTS (SELECT 1 FROM requests r WHERE r.request_id = e.request_id)"
_INSERT_KEY: Final = (
    "INSERT OR IGNORE INTO request_keys (kind, value, request_id, received_at) VALUES ('dedupe_id', ?, ?, ?)"
)


def _journal_stored_ids(cur: sqlite3.Cursor, sql: str, params: Sequence[Any]) -> None:
    rows = [row for row in cur.execute(sql, params) if kept_as_sent(row[0])]
    if rows:
        cur.executemany(_INSERT_KEY, rows)


@cache
def _events_going_sql(size: int) -> str:
    return (
        "SELECT e.dedupe_id, e.request_id, e.received_at FROM events e "
        f"WHERE e.id IN ({', '.join('?' * size)}) AND e.dedupe_id IS NOT NULL AND {_ENTRY_STAYS}"
    )


def prune_journal(cur: sqlite3.Cursor, before: int) -> Chunk:
    """A chunk of the journal entries received before ``before``, the oldest, with the
    per-minute totals and a chunk of the bodies and keys of the entries gone (``_prune_extras``);
    done once none of them is left.

    The job prunes the entries and their minutes as the whole prune does at a cutoff of its
    own, the chunk's ``edge``, which moves on to ``before``: the entries received before it, the
    minutes ending by then. A minute whose entries are left keeps its totals, which the
    overview reads, so they go no sooner than its last entry."""
    edge = min(_edge(cur, "requests", before, 1), _edge(cur, "request_minutes", before, MINUTE_MS))
    deleted = cur.execute(_DELETE_BEFORE["requests"], (edge,)).rowcount
    cur.execute(_DELETE_BEFORE["request_minutes"], (edge - edge % MINUTE_MS,))
    return deleted, _prune_extras(cur, edge) and edge == before


def journal_over(conn: sqlite3.Connection, max_rows: int) -> int | None:
    """The id of the newest journal entry over ``max_rows`` (the limit counts the newest),
    None if the journal holds no more: read once, on a reader, before ``prune_over`` (entries
    come in id order, so those over the limit stay over it). None at once if the ids span no
    more than ``max_rows``; else the entries are counted through the smallest index and the
    id found from the oldest, past as many entries as will go: neither on the writer."""
    max_rows = max(0, max_rows)
    conn.execute("BEGIN")  # one snapshot
    try:
        low, high = conn.execute(_ID_RANGE).fetchone()
        if low is None or high - low < max_rows:
            return None
        (count,) = conn.execute("SELECT count(*) FROM requests").fetchone()
        if count <= max_rows:
            return None
        (last,) = conn.execute(_NTH_ID, (count - max_rows - 1,)).fetchone()
        return int(last)
    finally:
        conn.execute("COMMIT")


def prune_over(cur: sqlite3.Cursor, last: int, before: int) -> Chunk:
    """The next ``CHUNK`` journal entries up to ``last`` (``journal_over``), the oldest ids,
    with a chunk of the bodies and keys of the entries gone; done once none is left. Their
    minutes keep counting them (the overview's totals outlive the journal's size)."""
    deleted = cur.execute(_OVER_CHUNK, (last,)).rowcount
    return deleted, _prune_extras(cur, before) and deleted < CHUNK


def prune_rollups(cur: sqlite3.Cursor, before: int) -> Chunk:
    """A chunk of each table of the match-key rollups: the hours and days that ended before
    ``before``, the events' cutoff."""
    done = True
    for table, size in (("event_quality", HOUR_MS), ("event_quality_days", DAY_MS)):
        end = before - before % size
        edge = _edge(cur, table, end, size)
        cur.execute(_DELETE_BEFORE[table], (edge,))
        done = done and edge == end
    return 0, done


def _prune_extras(cur: sqlite3.Cursor, before: int) -> bool:
    """A chunk of the refused bodies and request keys of the entries gone: those received
    before the oldest entry left, and before ``before`` (the entries pruned by age) if none
    is left. True if none is left."""
    (oldest,) = cur.execute(_OLDEST_ENTRY).fetchone()
    bound = before if oldest is None else max(before, oldest)
    edge = min(_edge(cur, "request_bodies", bound, 1), _edge(cur, "request_keys", bound, 1))
    cur.execute(_DELETE_BEFORE["request_bodies"], (edge,))
    cur.execute(_DELETE_BEFORE["request_keys"], (edge,))
    return edge == bound


def _edge(cur: sqlite3.Cursor, table: str, before: int, step: int) -> int:
    """Where the next chunk of ``table``'s rows whose time (``_TIME``) is under ``before``
    ends (the rows under it go): ``before`` if at most ``CHUNK`` are left, else the
    ``CHUNK+1``-th's time, so that at most ``CHUNK`` go. Only if more than ``CHUNK`` share the
    oldest time do they all go at once (``step`` past it: a time's unit), or no chunk would
    ever end. The time leads an index of ``table``, of which it reads ``CHUNK`` entries."""
    oldest, nth = cur.execute(_EDGE[table], (before,)).fetchone()
    if nth is None:
        return before
    return int(nth) if nth > oldest else int(oldest) + step


def prune_events(
    cur: sqlite3.Cursor, before_ms: int, after: EventCursor, keys_before: int = 0
) -> tuple[int, EventCursor | None]:
    """Delete the next ``CHUNK`` events received before ``before_ms`` (after the cursor
    ``after``) that no run holds, and the delivered runs left without events; returns how
    many were deleted and the cursor to go on from, None when none are left. The keys of
    those seen since ``keys_before`` (the dedupe keys' cutoff) go on waiting (``_age_keys``)."""
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
    _journal_going(cur, doomed)
    _age_keys(cur, doomed, keys_before)
    deleted = _delete_ids(cur, "events", doomed)
    if doomed:
        cur.execute(_EMPTIED, (doomed[0], doomed[0], doomed[-1]))
        _delete_emptied_blocks(cur, doomed[0], doomed[-1])
    return deleted, last


def _delete_emptied_blocks(cur: sqlite3.Cursor, first: int, last: int) -> None:
    """The blocks between two event ids that hold no event any more, with their names' runs."""
    gone = cur.execute(_EMPTIED_BLOCKS, (first, last)).fetchall()
    runs = [(name, start, end) for start, end, listed in gone for name in json.loads(listed)]
    if runs:  # a row per run of one name within the block
        cur.executemany("DELETE FROM block_names WHERE name = ? AND first_id BETWEEN ? AND ?", runs)


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
