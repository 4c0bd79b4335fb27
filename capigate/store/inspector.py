"""What the inspector reads beyond the events and the journal, the part both backends share:
refused bodies and the keys a request is found by (written with the journal entries, pruned
with them), and the match-key rollups behind ``GET /api/quality`` (written in ingest's
transaction, one row per hour, or per day, of each source, name and match-key integer: a
month of traffic is a few thousand rows per combination in use, pruned with the events)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from capigate.events import NewEvent
from capigate.store.base import RequestQuery, RequestRecord, StatsBucket

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MINUTE_MS",
    "QualityKey",
    "StatsTally",
    "by_day",
    "minute_key",
    "minute_totals",
    "minute_windows",
    "quality_counts",
    "quality_sql",
    "record_extras",
    "request_clauses",
    "totals_queries",
]

MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
QualityKey = tuple[int, str, str, str, int]  # (hour or day, source, name, api, match_keys)


def minute_key(r: RequestRecord) -> tuple[int, str, str]:
    """The per-minute totals' row a journal entry counts in: (minute, source, api), source ''
    for the requests naming none. Keyed by api too: an Axon pixel and an AppsFlyer app may
    have the same id (before schema version 8, a source's rows had api '': one set of totals)."""
    minute = r.received_at - r.received_at % MINUTE_MS
    return (minute, r.source or "", r.api)


def minute_totals(records: Sequence[RequestRecord]) -> list[tuple[Any, ...]]:
    """The per-minute totals of journal entries, as (minute, source, api, requests, failed,
    received, stored, duplicate, warnings): one row per minute, source and api (source '' for
    the requests naming none), so a flush of a thousand requests is an upsert or two.
    The overview reads whole minutes from them, the sourceless split per api included."""
    totals: dict[tuple[int, str, str], list[int]] = {}
    for r in records:
        key = minute_key(r)
        row = totals.get(key)
        if row is None:
            row = totals[key] = [0, 0, 0, 0, 0, 0]
        row[0] += 1
        row[1] += r.status >= 400
        row[2] += r.events_received
        row[3] += r.events_stored
        row[4] += r.events_duplicate
        row[5] += len(r.warnings)
    return [(*key, *row) for key, row in totals.items()]


def minute_windows(
    since_ms: int, until_ms: int, bucket_ms: int
) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """Where the overview reads a window from: its whole minutes from the per-minute totals
    (None when it has none, or ``bucket_ms`` is not whole minutes), and the rest, the parts
    at its edges, from the journal."""
    first_minute = -(-since_ms // MINUTE_MS) * MINUTE_MS  # the first whole minute in the window
    last_minute = until_ms - until_ms % MINUTE_MS  # the end of the last whole minute
    if bucket_ms % MINUTE_MS or first_minute >= last_minute:
        return None, [(since_ms, until_ms)]
    edges = [(low, high) for low, high in ((since_ms, first_minute), (last_minute, until_ms)) if low < high]
    return (first_minute, last_minute), edges


def totals_queries(
    minutes_sql: str, journal_sql: str, since_ms: int, until_ms: int, bucket_ms: int, extra: list[Any]
) -> list[tuple[str, list[Any]]]:
    """The queries, with their parameters (bucket, window, then ``extra``), that read the
    totals of a window as ``minute_windows`` splits it: ``minutes_sql`` over its whole
    minutes, ``journal_sql`` over each edge. A backend writes the SQL in its dialect."""
    whole, edges = minute_windows(since_ms, until_ms, bucket_ms)
    queries = [] if whole is None else [(minutes_sql, [bucket_ms, *whole, *extra])]
    return queries + [(journal_sql, [bucket_ms, low, high, *extra]) for low, high in edges]


class StatsTally:
    """The overview's buckets, by (start, source, api), summed from the rows of the
    ``totals_queries`` (start, source, api, requests, failed, received, stored, duplicate,
    warnings) and from the dead letters, whichever backend read them."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[int, str | None, str | None], StatsBucket] = {}

    def _bucket(self, start: int, source: str | None, api: str | None = None) -> StatsBucket:
        found = self._buckets.get((start, source, api))
        if found is None:
            found = self._buckets[start, source, api] = StatsBucket(start_ms=start, source=source, api=api)
        return found

    def add_totals(self, rows: Iterable[Sequence[Any]]) -> None:
        for start, source, api, n, failed, received, stored, duplicate, warnings in rows:
            b = self._bucket(start, source, api)
            b.requests += n
            b.failed_requests += failed
            b.events_received += received
            b.events_accepted += stored
            b.events_duplicate += duplicate
            b.warnings += warnings

    def add_dead(self, start: int, api: str, source: str, dead_letters: int) -> None:
        self._bucket(start, source, api).dead_letters += dead_letters

    def buckets(self) -> list[StatsBucket]:
        """In time order, then by source and api; the refused events are what was received
        and neither accepted nor a duplicate."""
        for b in self._buckets.values():
            b.events_refused = max(0, b.events_received - b.events_accepted - b.events_duplicate)
        return [self._buckets[k] for k in sorted(self._buckets, key=lambda k: (k[0], k[1] or "", k[2] or ""))]


def record_extras(
    records: Iterable[RequestRecord],
) -> tuple[list[tuple[str, int, bytes]], list[tuple[str, str, str, int]]]:
    """The body rows and key rows of journal entries (a JournalRecord has them)."""
    bodies: list[tuple[str, int, bytes]] = []
    keys: list[tuple[str, str, str, int]] = []
    for r in records:
        body = getattr(r, "body", None)
        if body is not None:
            bodies.append((r.request_id, r.received_at, body))
        keys += [(kind, value, r.request_id, r.received_at) for kind, value in getattr(r, "keys", ())]
    return bodies, keys


def quality_counts(
    counts: dict[QualityKey, list[int]], events: Sequence[NewEvent], duplicates: Sequence[int], received_at_ms: int
) -> None:
    """Adds one ingest's events (test events aside) to ``counts``: [stored, received] per
    hourly key; the received that were not stored are the duplicates caught."""
    hour = received_at_ms - received_at_ms % HOUR_MS
    dup = set(duplicates)
    for position, e in enumerate(events):
        if e.test_tag is not None:
            continue
        key = (hour, e.source, e.name, e.api, e.match_keys)
        found = counts.get(key)
        if found is None:
            found = counts[key] = [0, 0]
        found[0] += position not in dup
        found[1] += 1


def by_day(counts: dict[QualityKey, list[int]]) -> dict[QualityKey, list[int]]:
    """The hourly counts summed per day (keys start with the day instead of the hour)."""
    days: dict[QualityKey, list[int]] = {}
    for (hour, source, name, api, keys), (stored, received) in counts.items():
        key = (hour - hour % DAY_MS, source, name, api, keys)
        found = days.get(key)
        if found is None:
            days[key] = [stored, received]
        else:
            found[0] += stored
            found[1] += received
    return days


def _quality_parts(since_ms: int, until_ms: int) -> list[tuple[str, str, int, int]]:
    """(table, unit, from, to): the whole days of ``[since_ms, until_ms)`` from the daily
    rollup, the hours before and after them from the hourly one."""
    first_day = -(-since_ms // DAY_MS) * DAY_MS
    last_day = until_ms - until_ms % DAY_MS
    if first_day >= last_day:
        return [("event_quality", "hour", since_ms, until_ms)]
    parts = [("event_quality_days", "day", first_day, last_day)]
    parts += [("event_quality", "hour", a, b) for a, b in ((since_ms, first_day), (last_day, until_ms)) if a < b]
    return parts


def quality_sql(source: str | None, since_ms: int, until_ms: int, *, mark: str) -> tuple[str, list[Any]]:
    """The SELECT of ``query_quality``: rows of (api, source, name, match_keys, stored, duplicates)."""
    by_source = f" AND source = {mark}" if source is not None else ""
    parts = _quality_parts(since_ms, until_ms)
    union = " UNION ALL ".join(
        f"SELECT api, source, name, match_keys, events, received FROM {table} "
        f"WHERE {unit} >= {mark} AND {unit} < {mark}{by_source}"
        for table, unit, _, _ in parts
    )
    sql = (
        "SELECT api, source, name, match_keys, sum(events), sum(received) - sum(events) "
        f"FROM ({union}) AS q GROUP BY api, source, name, match_keys"
    )
    params = [v for _, _, a, b in parts for v in (a, b, *([source] if source is not None else []))]
    return sql, params


def request_clauses(
    query: RequestQuery, *, mark: str, stored_by_dedupe_id: str | None = None, name_column: bool = False
) -> tuple[list[str], list[Any]]:
    """The conditions of ``GET /api/requests``'s own filters beyond ``sql.where``'s: a status
    class, and one ``request_id IN (…)`` per key (name, dedupe_id, transaction_id); a dedupe
    id also by ``stored_by_dedupe_id``, a backend's SELECT of the requests that stored an event
    under the id each of its ``mark``s takes, where the journal leaves those to the store; a
    name also by the journal row's own ``name``, where a backend keeps a request's one name
    (``name_column``)."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.status_class is not None:
        clauses.append(f"status >= {mark} AND status < {mark}")
        params += [query.status_class * 100, query.status_class * 100 + 100]
    for kind, value in query.keys:
        journaled = f"SELECT request_id FROM request_keys WHERE kind = {mark} AND value = {mark}"
        if kind == "dedupe_id" and stored_by_dedupe_id is not None:
            clauses.append(f"request_id IN ({journaled} UNION ALL {stored_by_dedupe_id})")
            params += [kind, value, *[value] * stored_by_dedupe_id.count(mark)]
        elif kind == "name" and name_column:
            clauses.append(f"(name = {mark} OR request_id IN ({journaled}))")
            params += [value, kind, value]
        else:
            clauses.append(f"request_id IN ({journaled})")
            params += [kind, value]
    return clauses, params
