"""What the inspector reads beyond the events and the journal, on SQLite: the tables of
capigate/store/inspector.py (refused bodies, request keys, the hourly and daily match-key
rollups), their writes and their reads."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any, Final

from capigate.events import kept_as_sent
from capigate.store.base import QualityRow, RequestRecord, RequestView
from capigate.store.inspector import QualityKey, by_day, quality_sql
from capigate.store.sql import REQUEST_COLUMNS, request_view
from capigate.store.sqlite.rows import insert, insert_rows

__all__ = [
    "INSPECTOR_SCHEMA",
    "STORED_BY_DEDUPE_ID_SQL",
    "add_extras",
    "add_quality",
    "journal_name",
    "query_quality",
    "query_request",
]


INSPECTOR_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS request_bodies (
        request_id TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        body BLOB NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS request_bodies_received_at ON request_bodies (received_at)",
    """CREATE TABLE IF NOT EXISTS request_keys (
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        request_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (kind, value, request_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS request_keys_received_at ON request_keys (received_at)",
    "CREATE INDEX IF NOT EXISTS requests_request_id ON requests (request_id)",
    "CREATE INDEX IF NOT EXISTS requests_client_ip_id ON requests (client_ip, id)",
    "CREATE INDEX IF NOT EXISTS requests_test_tag_id ON requests (test_tag, id) WHERE test_tag IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS event_quality (
        hour INTEGER NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        api TEXT NOT NULL,
        match_keys INTEGER NOT NULL,
        events INTEGER NOT NULL,
        received INTEGER NOT NULL,
        PRIMARY KEY (hour, source, name, api, match_keys)
    ) WITHOUT ROWID""",
    # The same per day: a week is read in 7 rows per combination, not 168.
    """CREATE TABLE IF NOT EXISTS event_quality_days (
        day INTEGER NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        api TEXT NOT NULL,
        match_keys INTEGER NOT NULL,
        events INTEGER NOT NULL,
        received INTEGER NOT NULL,
        PRIMARY KEY (day, source, name, api, match_keys)
    ) WITHOUT ROWID""",
)

_INSERT_BODY: Final = "INSERT OR REPLACE INTO request_bodies (request_id, received_at, body) VALUES (?, ?, ?)"
_INSERT_KEYS: Final = insert(
    "INSERT OR IGNORE INTO request_keys (kind, value, request_id, received_at) VALUES ", "(?, ?, ?, ?)"
)
_ADD_QUALITY: Final = tuple(
    f"INSERT INTO {table} ({unit}, source, name, api, match_keys, events, received) VALUES (?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT ({unit}, source, name, api, match_keys) DO UPDATE SET events = events + excluded.events, "
    "received = received + excluded.received"
    for table, unit in (("event_quality", "hour"), ("event_quality_days", "day"))
)


def journal_name(keys: Iterable[tuple[str, str]]) -> str | None:
    """The event name of a request that has one only (most: a one-event request, a batch of
    one kind), which its journal row keeps (``requests.name``) rather than a key row. Kept as
    a key row, it was 8 % of a one-event request's instructions in the writer (the row, its
    index entry, and the INSERT itself: writer W2 0.919x without), for the one key most have."""
    found = None
    for kind, value in keys:
        if kind == "name":
            if found is not None:
                return None
            found = value
    return found


def add_extras(cur: sqlite3.Cursor, records: Iterable[RequestRecord], names: Iterable[str | None]) -> None:
    """The bodies and keys of journal entries (``inspector.record_extras``'s rows, the keys'
    values built flat for ``insert_rows``), but a request's one name (``names``, each
    record's ``journal_name``), on its row already."""
    bodies: list[tuple[str, int, bytes]] = []
    keys: list[Any] = []
    for r, name in zip(records, names, strict=True):
        body = getattr(r, "body", None)
        if body is not None:
            bodies.append((r.request_id, r.received_at, body))
        on_row = name is not None
        for kind, value in getattr(r, "keys", ()):
            if not (on_row and kind == "name"):
                keys += (kind, value, r.request_id, r.received_at)
    if bodies:
        cur.executemany(_INSERT_BODY, bodies)
    insert_rows(cur, _INSERT_KEYS, keys)


def add_quality(cur: sqlite3.Cursor, counts: dict[QualityKey, list[int]]) -> None:
    if counts:
        for sql, rows in zip(_ADD_QUALITY, (counts, by_day(counts)), strict=True):
            cur.executemany(sql, [(*key, n[0], n[1]) for key, n in rows.items()])


def query_request(
    conn: sqlite3.Connection, request_id: str
) -> tuple[RequestView, bytes | None, list[tuple[str, str]]] | None:
    row = conn.execute(f"SELECT {REQUEST_COLUMNS}, name FROM requests WHERE request_id = ?", (request_id,)).fetchone()
    if row is None:
        return None
    view = request_view(row)
    body, keys = _request_extras(conn, request_id, view.received_at)
    if row[-1] is not None:
        keys = sorted({*keys, ("name", row[-1])})
    return view, body, keys


# A request's keys carry its received_at, whose index finds them: the table's key starts with
# the key's kind and value, so a look-up by request id alone read every key of the journal.
REQUEST_KEYS_SQL: Final = "SELECT kind, value FROM request_keys WHERE received_at = ? AND request_id = ?"
# A request's stored events, which the journal leaves to name their own dedupe ids
# (kept.dedupe_ids_not_stored), are found by their block's received_at, the request's.
_STORED_DEDUPE_IDS: Final = (
    "SELECT e.dedupe_id FROM event_blocks k INDEXED BY event_blocks_received_at "
    "JOIN events e ON e.id BETWEEN k.first_id AND k.last_id "
    "WHERE k.received_at = ? AND k.request_id = ? AND e.dedupe_id IS NOT NULL"
)
# The requests that stored an event under a dedupe id: its dedupe key names the event, in each
# source the keys hold. The keys are found by (source, dedupe_id); the sources one index step
# each (a skip scan: a handful of sources, however many keys); the recent keys not yet in the
# index by reading them (at most dedupe.FLUSH_KEYS rows).
STORED_BY_DEDUPE_ID_SQL: Final = (
    "SELECT e.request_id FROM events e WHERE e.id IN (SELECT d.event_id FROM dedupe_keys d "
    "WHERE d.dedupe_id = ? AND d.source IN ("
    "WITH RECURSIVE s(source) AS (SELECT min(source) FROM dedupe_keys UNION ALL "
    "SELECT (SELECT min(source) FROM dedupe_keys WHERE source > s.source) FROM s WHERE s.source IS NOT NULL) "
    "SELECT source FROM s WHERE source IS NOT NULL) "
    "UNION ALL SELECT r.event_id FROM dedupe_recent r WHERE r.dedupe_id = ?)"
)


def _request_keys(journaled: Iterable[tuple[str, str]], stored_ids: Iterable[str]) -> list[tuple[str, str]]:
    """A request's keys, sorted, each once: the journal's, and the dedupe ids of its stored
    events that are keys as sent (``events.kept_as_sent``), those the journal left out."""
    keys = set(journaled)
    keys.update(("dedupe_id", d) for d in stored_ids if kept_as_sent(d))
    return sorted(keys)


def _request_extras(
    conn: sqlite3.Connection, request_id: str, received_at: int
) -> tuple[bytes | None, list[tuple[str, str]]]:
    row = conn.execute("SELECT body FROM request_bodies WHERE request_id = ?", (request_id,)).fetchone()
    keys = conn.execute(REQUEST_KEYS_SQL, (received_at, request_id)).fetchall()
    stored = conn.execute(_STORED_DEDUPE_IDS, (received_at, request_id)).fetchall()
    return (bytes(row[0]) if row else None), _request_keys(keys, (d for (d,) in stored))


def query_quality(conn: sqlite3.Connection, source: str | None, since_ms: int, until_ms: int) -> list[QualityRow]:
    sql, params = quality_sql(source, since_ms, until_ms, mark="?")
    return [
        QualityRow(api=a, source=s, name=n, match_keys=m, events=e, duplicates=d)
        for a, s, n, m, e, d in conn.execute(sql, params)
    ]
