"""The SQLite store's write jobs for accepted events and the journal, run on the writer
thread inside its group transaction (writer.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from capigate.errors import StoreError
from capigate.events import NewEvent, dedupe_scope, scope_name
from capigate.store.base import IngestResult, RequestRecord
from capigate.store.inspector import HOUR_MS, QualityKey, minute_totals
from capigate.store.sql import REQUEST_COLUMNS
from capigate.store.sqlite import inspector, outbox
from capigate.store.sqlite.dedupe import BOUNDS, RecentKeys, recent_keys, scattered
from capigate.store.sqlite.pipe import PipedEvent
from capigate.store.sqlite.rows import NULL, insert, insert_rows
from capigate.store.sqlite.schema import KEYS_MARK_TIME

__all__ = ["Batch", "ingest", "probe", "record_requests"]

_encode = msgspec.json.Encoder().encode
# An event's fields in one call: compiled, each attribute of a Struct read alone goes through
# Python's generic lookup, a ninth of the writer's instructions for a W1 lead-gen event.
_fields = msgspec.structs.astuple
_FIELD_ORDER: Final = ("api", "source", "name", "event_time_ms", "dedupe_id", "payload", "test_tag", "destination")
assert (
    NewEvent.__struct_fields__[: len(_FIELD_ORDER)] == PipedEvent.__struct_fields__[: len(_FIELD_ORDER)] == _FIELD_ORDER
)
assert NewEvent.__struct_fields__[8] == "match_keys"


class Batch:
    """One ``ingest`` call: the writer stores the batches of a group together."""

    __slots__ = ("events", "received_at_ms", "request_id")

    def __init__(self, events: list[NewEvent], request_id: str, received_at_ms: int) -> None:
        self.events, self.request_id, self.received_at_ms = events, request_id, received_at_ms

    def __reduce__(self) -> tuple[type[Batch], tuple[list[NewEvent], str, int]]:
        # Compiled, pickle would rebuild it without its __init__'s arguments: the writer process
        # unpickles the ingest of a payload of the wrong type, to fail it as it would here.
        return Batch, (self.events, self.request_id, self.received_at_ms)


_EVENTS: Final = insert(
    "INSERT INTO events (api, source, name, event_time, received_at, dedupe_id, status, test_tag, request_id, "
    "payload) VALUES ",
    "(?, ?, ?, ?, ?, nullif(?, 0), ?, nullif(?, 0), ?, ?)",
)
# Scattered new keys go to dedupe_recent, in order, and join the index in key order later
# (dedupe.py); keys in order, or an index too big for that to pay, go there directly.
_KEYS: Final = insert("INSERT INTO dedupe_recent (source, dedupe_id, event_id, seen_at) VALUES ", "(?, ?, ?, ?)")
_KEYS_DIRECT: Final = insert("INSERT INTO dedupe_keys (source, dedupe_id, event_id, seen_at) VALUES ", "(?, ?, ?, ?)")
_START: Final = f"SELECT (SELECT coalesce(max(id), 0) + 1 FROM events), {BOUNDS}, ({KEYS_MARK_TIME})"
# A key of an event received before prune's walk has passed (prune.py: a clock set back, a
# prune given a later time) waits in dedupe_aging by its time, which the walk would miss.
_AGING: Final = insert(
    "INSERT OR IGNORE INTO dedupe_aging (seen_at, source, dedupe_id, event_id) VALUES ", "(?, ?, ?, ?)"
)
_BLOCKS: Final = insert(
    "INSERT INTO event_blocks (first_id, last_id, source, received_at, request_id, stored, names) VALUES ",
    "(?, ?, ?, ?, ?, ?, ?)",
)
_NAMES: Final = insert("INSERT INTO block_names (name, first_id, last_id) VALUES ", "(?, ?, ?)")
_OUTBOX: Final = insert(outbox.INSERT_OUTBOX, "(" + ", ".join("?" * outbox.OUTBOX_WIDTH) + ")")


def ingest(cur: sqlite3.Cursor, batches: list[Batch]) -> list[IngestResult]:
    """Store ``batches`` in turn, the first dedupe_id winning across them too, with one
    lookup of the keys seen and one INSERT per table (per chunk) for them all."""
    # SQLite gives a row inserted without an id max(id) + 1, an append that is cheaper than
    # placing an explicit id; so the events get first_id, first_id + 1 … (checked below). The
    # same statement reads the recent keys' bounds: a statement is most of a small group's cost.
    first_id, low, high, walked_to = cur.execute(_START).fetchone()
    recent = recent_keys(cur)
    recent.sync(cur, low, high)
    # Each event's fields and dedupe key, once: both the lookup and the rows read them.
    fields = [[_fields(e) for e in batch.events] for batch in batches]
    keys = [[_dedupe_key(f) for f in batch_fields] for batch_fields in fields]
    seen = _seen_keys(cur, keys, recent)
    rows = _Rows(walked_to)
    results: list[IngestResult] = []
    next_id = first_id
    for batch, batch_fields, batch_keys in zip(batches, fields, keys, strict=True):
        stored, duplicates = rows.add(batch, batch_fields, batch_keys, seen, next_id)
        results.append(IngestResult(stored=stored, duplicates=duplicates))
        next_id += stored
    direct = recent.direct or not scattered(rows.keys)
    insert_rows(cur, _KEYS_DIRECT if direct else _KEYS, rows.keys)
    last_key_id = cur.lastrowid
    insert_rows(cur, _EVENTS, rows.events)
    if next_id > first_id and cur.lastrowid != next_id - 1:
        raise StoreError("the events table gave ids out of sequence; nothing was stored")
    insert_rows(cur, _BLOCKS, rows.blocks)
    insert_rows(cur, _NAMES, rows.names)
    insert_rows(cur, _OUTBOX, rows.runs)
    insert_rows(cur, _AGING, rows.aging)
    inspector.add_quality(cur, rows.quality)
    _remember(cur, recent, [] if direct else rows.keys, last_key_id)
    return results


def _remember(cur: sqlite3.Cursor, recent: RecentKeys, values: list[Any], last_id: int | None) -> None:
    """The next chunk of a flush, then the writer's copy takes the keys just appended: last,
    once nothing of the ingest can fail any more (a savepoint rolled back would leave it holding
    keys the table lost)."""
    recent.flush_step(cur)
    if count := len(values) // 4:
        recent.added(int(last_id or 0) - count + 1, zip(values[0::4], values[1::4], strict=True), count)


class _Rows:
    """The values of a group's rows, each table's in one flat list, built in one pass over
    each batch's events (the per-event work of the writer: a loop, not five)."""

    __slots__ = ("aging", "blocks", "events", "keys", "names", "quality", "runs", "walked_to")

    def __init__(self, walked_to: int | None = None) -> None:
        self.walked_to = walked_to  # the time prune's walk of the events has passed (None: none)
        self.aging: list[Any] = []
        self.keys: list[Any] = []
        self.events: list[Any] = []
        self.blocks: list[Any] = []
        self.names: list[Any] = []
        self.runs: list[Any] = []
        self.quality: dict[QualityKey, list[int]] = {}

    def add(
        self,
        batch: Batch,
        fields: list[tuple[Any, ...]],
        dedupe_keys: list[tuple[str, str] | None],
        seen: set[tuple[str, str]],
        first_id: int,
    ) -> tuple[int, list[int]]:
        """Adds ``batch``'s fresh events (their ``fields``, and ``dedupe_keys``: _dedupe_key's)
        as ids ``first_id`` …; (how many, the duplicates' positions)."""
        received_at, request_id = batch.received_at_ms, batch.request_id
        hour = received_at - received_at % HOUR_MS
        keys, events, quality = self.keys, self.events, self.quality
        duplicates: list[int] = []
        fresh: list[tuple[Any, ...]] = []
        relayed = False
        behind = self.walked_to is not None and received_at < self.walked_to
        for position, e in enumerate(batch.events):
            f, key = fields[position], dedupe_keys[position]  # f: NewEvent's fields (_FIELD_ORDER)
            api, source, name, test_tag = f[0], f[1], f[2], f[6]
            if key is None:
                is_new = True
            elif key in seen:
                is_new = False
                duplicates.append(position)
            else:
                is_new = True
                seen.add(key)
                keys += (*key, first_id + len(fresh), received_at)
                if behind:
                    self.aging += (received_at, *key, first_id + len(fresh))
            if test_tag is None:  # test events are not counted (inspector.quality_counts)
                counts = quality.get(found := (hour, source, name, api, f[8]))
                if counts is None:
                    counts = quality[found] = [0, 0]
                counts[0] += is_new
                counts[1] += 1
            if is_new:
                fresh.append(f)
                events += _event_values(position, e, f, request_id, received_at)
                relayed = relayed or f[7] is not None
        if relayed:
            runs = outbox.outbox_rows([f[7] for f in fresh], first_id, received_at)
            self.runs += [v for run in runs for v in run]
        if fresh:
            self._add_blocks(fresh, first_id, request_id, received_at)
        return len(fresh), duplicates

    def _add_blocks(self, fresh: list[tuple[Any, ...]], first_id: int, request_id: str, received_at: int) -> None:
        """The block rows of a request's fresh events (their fields; ids ``first_id`` …): one,
        but for a request whose events name several sources, a block per run of one source;
        and a ``block_names`` row per run of one name in it, so that a name's events are read
        alone (a name in one event of each 100 read all 100, 8x the events' own index, a trial)."""
        names, start = self.names, 0
        while start < len(fresh):
            source = fresh[start][1]
            named: set[str] = set()
            stored = False
            end = run_start = start
            while end < len(fresh) and (f := fresh[end])[1] == source:
                if f[2] != fresh[run_start][2]:
                    names += (fresh[run_start][2], first_id + run_start, first_id + end - 1)
                    run_start = end
                named.add(f[2])
                stored = stored or f[7] is None
                end += 1
            names += (fresh[run_start][2], first_id + run_start, first_id + end - 1)
            listed = _encode(sorted(named)).decode()
            self.blocks += (first_id + start, first_id + end - 1, source, received_at, request_id, int(stored), listed)
            start = end


def _dedupe_key(f: tuple[Any, ...]) -> tuple[str, str] | None:
    """The (scope, dedupe_id) key of an event's fields (_FIELD_ORDER), None without a dedupe id."""
    dedupe_id = f[4]
    return None if dedupe_id is None else (dedupe_scope(f[1], f[6], scope_name(f[0], f[2])), dedupe_id)


def _seen_keys(
    cur: sqlite3.Cursor, keys: list[list[tuple[str, str] | None]], recent: RecentKeys
) -> set[tuple[str, str]]:
    """The (source, dedupe_id) keys of the batches already stored: the recent ones from the
    writer's copy, the others with one SELECT of the index per source (``SEEN_SQL``)."""
    by_source: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for batch_keys in keys:
        for key in batch_keys:
            if key is not None:
                if key in recent:
                    seen.add(key)
                else:
                    by_source.setdefault(key[0], []).append(key[1])
    for source, ids in by_source.items():
        listed = _encode(ids)
        if b"\\u0000" in listed:  # a NUL, which json_each cuts the id at (and so missed it)
            seen.update((source, d) for d in ids if cur.execute(_SEEN_ONE_SQL, (source, d)).fetchone())
        else:
            seen.update((source, d) for (d,) in cur.execute(SEEN_SQL, (listed, source)))
    return seen


# The ids go as one JSON array, each looked up in the index in turn (CROSS JOIN keeps that
# order): bound one by one in an IN list, as they were, they cost 1.3 % more of writer W2.
SEEN_SQL: Final = (
    "SELECT d.dedupe_id FROM json_each(?) AS j CROSS JOIN dedupe_keys AS d ON d.source = ? AND d.dedupe_id = j.value"
)


_SEEN_ONE_SQL: Final = "SELECT 1 FROM dedupe_keys WHERE source = ? AND dedupe_id = ?"


def _event_values(
    position: int, e: NewEvent, f: tuple[Any, ...], request_id: str, received_at_ms: int
) -> tuple[Any, ...]:
    # ``f``: e's fields (_fields). The payload is read untyped: compiled, ``e.payload`` is
    # checked as NewEvent's bytes, and a PipedEvent's is a bytearray (every ingest of the writer
    # process failed); a wrong type is said below.
    payload: Any = f[5]
    if type(e) is not PipedEvent:  # its payload is a bytearray already
        if type(payload) is not bytes:
            raise TypeError(f"event at position {position}: payload must be bytes, not {type(payload).__name__}")
        payload = bytearray(payload)
    dedupe_id, test_tag = f[4], f[6]
    return (
        f[0], f[1], f[2], f[3], received_at_ms,
        NULL if dedupe_id is None else dedupe_id,
        "stored" if f[7] is None else "pending",
        NULL if test_tag is None else test_tag,
        request_id, payload,
    )  # fmt: skip


def record_requests(cur: sqlite3.Cursor, records: Sequence[RequestRecord]) -> None:
    """Journal entries with their per-minute totals, and what the inspector keeps beside them.
    An entry stored already (the retry of a write that may or may not have been stored) is
    not stored again, nor counted twice."""
    values: list[Any] = []
    names: list[str | None] = []
    for r in records:
        name = inspector.journal_name(getattr(r, "keys", ()))
        names.append(name)
        values += _request_values(r, name)
    before = cur.connection.total_changes
    insert_rows(cur, _REQUESTS, values)
    added = cur.connection.total_changes - before
    if added < len(records):
        records, names = _added(cur, records, names, added)
    cur.executemany(_ADD_MINUTES, minute_totals(records))
    inspector.add_extras(cur, records, names)


def _added(
    cur: sqlite3.Cursor, records: Sequence[RequestRecord], names: list[str | None], added: int
) -> tuple[list[RequestRecord], list[str | None]]:
    """The entries the INSERT added, with their names: the newest ``added`` rows, as a new
    row's id is the largest plus one; a request id twice in ``records`` is counted at its first."""
    newest = "SELECT request_id FROM requests ORDER BY id DESC LIMIT ?"
    ids = {request_id for (request_id,) in cur.execute(newest, (added,))} if added else set()
    fresh: list[RequestRecord] = []
    fresh_names: list[str | None] = []
    for r, name in zip(records, names, strict=True):
        if r.request_id in ids:
            ids.discard(r.request_id)
            fresh.append(r)
            fresh_names.append(name)
    return fresh, fresh_names


_REQUESTS: Final = insert(
    f"INSERT OR IGNORE INTO requests ({REQUEST_COLUMNS.removeprefix('id, ')}, name) VALUES ",
    "(?, ?, ?, nullif(?, 0), ?, ?, ?, nullif(?, 0), nullif(?, 0), ?, ?, ?, ?, ?, ?, nullif(?, 0), nullif(?, 0))",
)
_ADD_MINUTES: Final = (
    "INSERT INTO request_minutes (minute, source, api, requests, failed, received, stored, duplicate, warnings) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (minute, source, api) DO UPDATE SET "
    "requests = requests + excluded.requests, failed = failed + excluded.failed, "
    "received = received + excluded.received, stored = stored + excluded.stored, "
    "duplicate = duplicate + excluded.duplicate, warnings = warnings + excluded.warnings"
)


def _request_values(r: RequestRecord, name: str | None) -> tuple[Any, ...]:
    return (
        r.request_id, r.received_at, r.api, NULL if r.source is None else r.source, r.method, r.path, r.status,
        NULL if r.client_ip is None else r.client_ip, NULL if r.user_agent is None else r.user_agent,
        r.latency_ms, r.events_received, r.events_stored, r.events_duplicate,
        _json_list(r.problems), _json_list(r.warnings), NULL if r.test_tag is None else r.test_tag,
        NULL if name is None else name,
    )  # fmt: skip


_EMPTY_LIST: Final = bytearray(b"[]")  # most entries' problems and warnings: bound as is (SQLite copies it)


def _json_list(items: list[Any]) -> bytearray:
    return bytearray(_encode(items)) if items else _EMPTY_LIST


def probe(cur: sqlite3.Cursor) -> None:
    # A real write (a page in the WAL, then COMMIT) so a full disk or a lost lock shows. The
    # value changes each time: SQLite writes nothing for an UPDATE that changes nothing.
    cur.execute("INSERT OR REPLACE INTO writability_probe (id, at_ns) VALUES (1, ?)", (time.time_ns(),))
