"""The SQLite store's write jobs for accepted events and the journal, run on the writer
thread inside its group transaction (writer.py)."""

from __future__ import annotations

import sqlite3
import time
from functools import cache
from typing import Any, Final, NamedTuple

import msgspec

from capigate.errors import StoreError
from capigate.events import NewEvent
from capigate.store.base import IngestResult, RequestRecord
from capigate.store.inspector import QualityKey, quality_counts
from capigate.store.sql import REQUEST_COLUMNS
from capigate.store.sqlite import inspector, outbox

__all__ = ["Batch", "ingest", "minute_row", "probe", "record_requests", "request_row"]

# Statements with many rows or values are built in power-of-two sizes, so that a handful of
# prepared statements serve every batch; both limits keep under SQLite's old 999 variables.
_MAX_IN: Final = 256
_MAX_ROWS: Final = 64
MINUTE_MS: Final = 60_000

_encode = msgspec.json.Encoder().encode


class Batch:
    """One ``ingest`` call: the writer stores the batches of a group together."""

    __slots__ = ("events", "received_at_ms", "request_id")

    def __init__(self, events: list[NewEvent], request_id: str, received_at_ms: int) -> None:
        self.events, self.request_id, self.received_at_ms = events, request_id, received_at_ms


class _Insert(NamedTuple):
    """A multi-row INSERT: ``head``, then ``row`` once per row, ``width`` values each."""

    head: str
    row: str
    width: int


def _insert(head: str, row: str) -> _Insert:
    return _Insert(head, row, row.count("?"))


# Python 3.11's sqlite3 looks for an adapter for every None or bytes it binds (~1 µs each: it
# builds and drops an AttributeError); int, str and bytearray it binds at once. So the rows
# bind _NULL for NULL, which ``nullif(?, 0)`` turns back (no TEXT value equals the integer
# 0), and payloads as a bytearray copy (~0.3 µs): about 2 µs less per event.
_NULL: Final = 0
_EVENTS: Final = _insert(
    "INSERT INTO events (api, source, name, event_time, received_at, dedupe_id, status, test_tag, request_id, "
    "payload) VALUES ",
    "(?, ?, ?, ?, ?, nullif(?, 0), ?, nullif(?, 0), ?, ?)",
)
_KEYS: Final = _insert("INSERT INTO dedupe_keys (source, dedupe_id, event_id, seen_at) VALUES ", "(?, ?, ?, ?)")
_OUTBOX: Final = _insert(outbox.INSERT_OUTBOX, "(" + ", ".join("?" * outbox.OUTBOX_WIDTH) + ")")
_INSERT_REQUEST: Final = (
    f"INSERT INTO requests ({REQUEST_COLUMNS.removeprefix('id, ')}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def ingest(cur: sqlite3.Cursor, batches: list[Batch]) -> list[IngestResult]:
    """Store ``batches`` in turn, the first dedupe_id winning across them too, with one
    lookup of the keys seen and one INSERT per table (per chunk) for them all."""
    seen = _seen_keys(cur, [e for batch in batches for e in batch.events])
    # SQLite gives a row inserted without an id max(id) + 1, an append that is cheaper than
    # placing an explicit id; so the events get first_id, first_id + 1 … (checked below).
    (first_id,) = cur.execute("SELECT coalesce(max(id), 0) + 1 FROM events").fetchone()
    keys: list[Any] = []
    rows: list[Any] = []
    runs: list[Any] = []
    results: list[IngestResult] = []
    quality: dict[QualityKey, list[int]] = {}
    next_id = first_id
    for batch in batches:
        fresh, duplicates = _split_duplicates(batch.events, seen)
        quality_counts(quality, batch.events, duplicates, batch.received_at_ms)
        keys += _key_values(fresh, next_id, batch.received_at_ms)
        rows += _event_values(fresh, batch.request_id, batch.received_at_ms)
        runs += [v for run in outbox.outbox_rows(fresh, next_id, batch.received_at_ms) for v in run]
        results.append(IngestResult(stored=len(fresh), duplicates=duplicates))
        next_id += len(fresh)
    _insert_rows(cur, _KEYS, keys)
    _insert_rows(cur, _EVENTS, rows)
    if next_id > first_id and cur.lastrowid != next_id - 1:
        raise StoreError("the events table gave ids out of sequence; nothing was stored")
    _insert_rows(cur, _OUTBOX, runs)
    inspector.add_quality(cur, quality)
    return results


def _insert_rows(cur: sqlite3.Cursor, insert: _Insert, values: list[Any]) -> None:
    """Multi-row INSERTs of ``values`` (the rows' values, one after the other): one
    sqlite3_step per chunk, not per row as executemany does, so the writer gives up and waits
    for the GIL once per chunk, not once per row (and spends a third fewer instructions)."""
    start = 0
    for size in _chunk_sizes(len(values) // insert.width):
        end = start + size * insert.width
        cur.execute(_values_sql(insert, size), values[start:end])
        start = end


def _chunk_sizes(rows: int) -> list[int]:
    """Full chunks of _MAX_ROWS, then the rest in powers of two, largest first."""
    full, rest = divmod(rows, _MAX_ROWS)
    return [_MAX_ROWS] * full + [1 << bit for bit in range(rest.bit_length() - 1, -1, -1) if rest >> bit & 1]


@cache
def _values_sql(insert: _Insert, size: int) -> str:
    return insert.head + ", ".join([insert.row] * size)


def _seen_keys(cur: sqlite3.Cursor, events: list[NewEvent]) -> set[tuple[str, str]]:
    """The (source, dedupe_id) keys of the batch already stored, one SELECT per source."""
    by_source: dict[str, list[str]] = {}
    for event in events:
        if event.dedupe_id is not None:
            by_source.setdefault(event.source, []).append(event.dedupe_id)
    seen: set[tuple[str, str]] = set()
    for source, ids in by_source.items():
        for start in range(0, len(ids), _MAX_IN):
            chunk = ids[start : start + _MAX_IN]
            size = _in_size(len(chunk))
            params = [source, *chunk, *chunk[-1:] * (size - len(chunk))]  # a repeat matches nothing new
            seen.update((source, d) for (d,) in cur.execute(_seen_sql(size), params))
    return seen


def _in_size(n: int) -> int:
    return 1 << (n - 1).bit_length()


@cache
def _seen_sql(size: int) -> str:
    marks = ", ".join("?" * size)
    return f"SELECT dedupe_id FROM dedupe_keys WHERE source = ? AND dedupe_id IN ({marks})"


def _split_duplicates(
    events: list[NewEvent], seen: set[tuple[str, str]]
) -> tuple[list[tuple[int, NewEvent]], list[int]]:
    fresh: list[tuple[int, NewEvent]] = []
    duplicates: list[int] = []
    for position, event in enumerate(events):
        if event.dedupe_id is not None:
            key = (event.source, event.dedupe_id)
            if key in seen:
                duplicates.append(position)
                continue
            seen.add(key)
        fresh.append((position, event))
    return fresh, duplicates


def _event_values(fresh: list[tuple[int, NewEvent]], request_id: str, received_at_ms: int) -> list[Any]:
    values: list[Any] = []
    for position, e in fresh:
        if type(e.payload) is not bytes:
            kind = type(e.payload).__name__
            raise TypeError(f"event at position {position}: payload must be bytes, not {kind}")
        values += (
            e.api, e.source, e.name, e.event_time_ms, received_at_ms,
            _NULL if e.dedupe_id is None else e.dedupe_id,
            "stored" if e.destination is None else "pending",
            _NULL if e.test_tag is None else e.test_tag,
            request_id, bytearray(e.payload),
        )  # fmt: skip
    return values


def _key_values(fresh: list[tuple[int, NewEvent]], first_id: int, received_at_ms: int) -> list[Any]:
    values: list[Any] = []
    for offset, (_, event) in enumerate(fresh):
        if event.dedupe_id is not None:
            values += (event.source, event.dedupe_id, first_id + offset, received_at_ms)
    return values


def record_requests(
    cur: sqlite3.Cursor,
    rows: list[tuple[Any, ...]],
    minutes: list[tuple[Any, ...]],
    extras: tuple[list[tuple[str, int, bytes]], list[tuple[str, str, str, int]]] = ([], []),
) -> None:
    """Journal entries with their per-minute totals, and what the inspector keeps beside them."""
    cur.executemany(_INSERT_REQUEST, rows)
    cur.executemany(_ADD_MINUTE, minutes)
    inspector.add_extras(cur, *extras)


_ADD_MINUTE: Final = (
    "INSERT INTO request_minutes (minute, source, requests, failed, received, stored, duplicate, warnings) "
    "VALUES (?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (minute, source) DO UPDATE SET requests = requests + 1, "
    "failed = failed + excluded.failed, received = received + excluded.received, stored = stored + excluded.stored, "
    "duplicate = duplicate + excluded.duplicate, warnings = warnings + excluded.warnings"
)


def minute_row(r: RequestRecord) -> tuple[Any, ...]:
    return (
        r.received_at - r.received_at % MINUTE_MS, r.source or "", int(r.status >= 400), r.events_received,
        r.events_stored, r.events_duplicate, len(r.warnings),
    )  # fmt: skip


def probe(cur: sqlite3.Cursor) -> None:
    # A real write (a page in the WAL, then COMMIT) so a full disk or a lost lock shows. The
    # value changes each time: SQLite writes nothing for an UPDATE that changes nothing.
    cur.execute("INSERT OR REPLACE INTO writability_probe (id, at_ns) VALUES (1, ?)", (time.time_ns(),))


def request_row(r: RequestRecord) -> tuple[Any, ...]:
    return (
        r.request_id, r.received_at, r.api, r.source, r.method, r.path, r.status, r.client_ip,
        r.user_agent, r.latency_ms, r.events_received, r.events_stored, r.events_duplicate,
        _encode(r.problems), _encode(r.warnings), r.test_tag,
    )  # fmt: skip
