"""The SQLite store's reads: a pool of read-only connections (in WAL mode they never wait
for the writer), and the SELECTs of the list and statistics queries."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from capigate.errors import StoreError
from capigate.store.base import EventQuery, RequestQuery, StatsBucket
from capigate.store.inspector import StatsTally, request_clauses, totals_queries
from capigate.store.outbox import RELAY_STATES
from capigate.store.sql import REQUEST_COLUMNS, also, clamp, event_columns, where
from capigate.store.sqlite import outbox
from capigate.store.sqlite.inspector import STORED_BY_DEDUPE_ID_SQL
from capigate.store.sqlite.schema import UNUSUAL_STATUS
from capigate.store.sqlite.writer import sqlite_error

__all__ = ["Readers", "events_sql", "query_stats", "requests_sql", "stats_sql"]

T = TypeVar("T")


class Readers:
    """Read-only connections, each used by one thread at a time."""

    def __init__(self, path: Path, size: int, busy_timeout_ms: int) -> None:
        self._path, self._size, self._busy_timeout_ms = path, size, busy_timeout_ms
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._all = await asyncio.to_thread(self._connect_all)
        for conn in self._all:
            self._idle.put(conn)
        self._executor = concurrent.futures.ThreadPoolExecutor(self._size, thread_name_prefix="capigate-sqlite-read")

    def _connect_all(self) -> list[sqlite3.Connection]:
        uri = self._path.resolve().as_uri() + "?mode=ro"
        timeout = self._busy_timeout_ms / 1000
        try:
            return [
                sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
                for _ in range(self._size)
            ]
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown)
        for conn in self._all:
            conn.close()
        self._all = []

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._idle.get()
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise sqlite_error(exc) from exc
        finally:
            self._idle.put(conn)


_EVENT_COLUMNS: Final = event_columns("events")
# NOT INDEXED: a block's events are read by their ids, never through an automatic index that
# SQLite would build of every event for a filter of theirs (their status, say).
_IN_BLOCK: Final = " JOIN events NOT INDEXED ON events.id BETWEEN k.first_id AND k.last_id"
_NEWEST_FIRST: Final = " ORDER BY events.id DESC LIMIT ?"
# Blocks never overlap: their events newest first are the blocks' newest first, each's
# events newest first, which SQLite reads in that order without sorting them.
_BLOCKS_NEWEST_FIRST: Final = " ORDER BY k.first_id DESC, events.id DESC LIMIT ?"


def events_sql(query: EventQuery) -> tuple[str, list[Any]]:
    """The SELECT that ``query_events`` runs (exposed so tests can EXPLAIN it).

    An event's source, received_at, request and name are indexed by its block (the events a
    request stored, schema.BLOCKS_SCHEMA): a filter on one reads the blocks that match,
    newest first, and their events; every filter is then applied to the events themselves."""
    if query.status in RELAY_STATES:
        return _relay_state_sql(query)
    blocks, where_sql, params = _filters(query)
    if query.status is not None:
        # Written out, not bound: the partial index event_blocks_stored serves only this literal.
        # An events row holds 'stored' or 'pending' (its outbox run's state overrides that):
        # any other status is held by no event, and reading nothing needs no index.
        where_sql = also(where_sql, "events.status = 'stored'" if query.status == "stored" else "0")
    if blocks is None:
        sql = f"SELECT {_EVENT_COLUMNS} FROM events{outbox.EVENT_JOIN}{where_sql}{_NEWEST_FIRST}"
    else:
        sql = f"SELECT {_EVENT_COLUMNS} FROM {blocks}{_IN_BLOCK}{outbox.EVENT_JOIN}{where_sql}{_BLOCKS_NEWEST_FIRST}"
    return sql, [*params, clamp(query.limit) + 1]


def _relay_state_sql(query: EventQuery) -> tuple[str, list[Any]]:
    """A relay state is the state of the outbox run holding the event (outbox.py): pending and
    dead runs are read through their partial index, delivered ones event by event, newest
    first, through the blocks when a filter has them."""
    # Delivered events are most: read newest first, a page ends soon; a time window's blocks
    # would all be read and sorted first (2 s for a week of 1.5 M events, a trial).
    blocks, where_sql, params = _filters(query, blocks=query.status == "delivered", by_time=False)
    # The state is written out, not bound: a partial index serves only a literal that matches.
    where_sql = also(where_sql, f"o.state = '{query.status}'")  # one of RELAY_STATES
    join = outbox.relay_state_join(query.status or "")
    if blocks is None:
        # The few pending or dead runs lead; their events are read by id (never through an
        # index SQLite would build of every event for a filter of theirs).
        events = "events" if query.status == "delivered" else "events NOT INDEXED"
        sql = f"SELECT {_EVENT_COLUMNS} FROM {events}{join}{where_sql}{_NEWEST_FIRST}"
    else:
        sql = f"SELECT {_EVENT_COLUMNS} FROM {blocks}{_IN_BLOCK}{join}{where_sql}{_BLOCKS_NEWEST_FIRST}"
    return sql, [*params, clamp(query.limit) + 1]


def _filters(query: EventQuery, *, blocks: bool = True, by_time: bool = True) -> tuple[str | None, str, list[Any]]:
    """The blocks to read (``FROM`` with the alias ``k``, None: the events by their own id or
    test-tag index), and the WHERE and its parameters: the blocks' conditions, then the events'."""
    equal = (
        ("events.source", query.source), ("events.api", query.api),
        ("events.name", query.name), ("events.test_tag", query.test_tag),
    )  # fmt: skip
    where_sql, params = where(equal, query.since_ms, query.until_ms, query.cursor, mark="?", table="events")
    if query.request is not None:
        where_sql = also(where_sql, "events.received_at = ? AND events.request_id = ?")
        params += [query.request[1], query.request[0]]
    scan = _block_scan(query, by_time=by_time) if blocks else None
    if scan is None:
        return None, where_sql, params
    table, clauses, values = scan
    if query.cursor is not None:
        clauses.append("k.first_id < ?")
        values.append(query.cursor)
    block_where = " WHERE " + " AND ".join(clauses)
    return table, block_where + where_sql.replace(" WHERE ", " AND ", 1), [*values, *params]


def _block_scan(query: EventQuery, *, by_time: bool) -> tuple[str, list[str], list[Any]] | None:
    """The index of the blocks that finds the events asked for: the request's, its name's, its
    source's, the blocks holding an event no relay queues, a time window's (in that order);
    None for the test tag's events (the events' own partial index: few) or none of those."""
    if query.request is not None:  # its received_at finds its block
        request_id, received_at = query.request
        return "event_blocks k INDEXED BY event_blocks_received_at", ["k.received_at = ?", "k.request_id = ?"], [
            received_at, request_id,
        ]  # fmt: skip
    if query.test_tag is not None:
        return None
    if query.name is not None:
        return "block_names k", ["k.name = ?"], [query.name]
    window, bounds = _block_window(query)
    if query.source is not None:
        return "event_blocks k INDEXED BY event_blocks_source", ["k.source = ?", *window], [query.source, *bounds]
    if query.status == "stored":
        return "event_blocks k INDEXED BY event_blocks_stored", ["k.stored", *window], bounds
    if by_time and query.since_ms is not None:
        # "Since" asks for a recent window: read it through the received_at index, where SQLite
        # (without statistics) would scan every event newest first until LIMIT rows match.
        return "event_blocks k INDEXED BY event_blocks_received_at", window, bounds
    return None


def _block_window(query: EventQuery) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    values: list[Any] = []
    if query.since_ms is not None:
        clauses.append("k.received_at >= ?")
        values.append(query.since_ms)
    if query.until_ms is not None:
        clauses.append("k.received_at < ?")
        values.append(query.until_ms)
    return clauses, values


def requests_sql(query: RequestQuery) -> tuple[str, list[Any]]:
    """The SELECT that ``query_requests`` runs (exposed so tests can EXPLAIN it)."""
    equal = (
        ("source", query.source), ("api", query.api), ("status", query.status),
        ("client_ip", query.client_ip), ("test_tag", query.test_tag),
    )  # fmt: skip
    where_sql, params = where(equal, query.since_ms, query.until_ms, query.cursor, mark="?")
    clauses, values = request_clauses(query, mark="?", stored_by_dedupe_id=STORED_BY_DEDUPE_ID_SQL, name_column=True)
    unusual = _unusual_status(query)
    if unusual:
        clauses.append(UNUSUAL_STATUS)
    for clause in clauses:
        where_sql = also(where_sql, clause)
    params += values
    keys_indexed = [kind for kind, _ in query.keys if kind != "name"] or None  # a name is read off the rows
    hint = _since_hint(
        "requests", query.since_ms, query.source, unusual or None, query.client_ip, query.test_tag, keys_indexed
    )
    sql = f"SELECT {REQUEST_COLUMNS} FROM requests{hint}{where_sql} ORDER BY id DESC LIMIT ?"
    return sql, [*params, clamp(query.limit) + 1]


def _unusual_status(query: RequestQuery) -> bool:
    """Whether the status asked for excludes 200: the journal's status index has those rows
    only (schema.UNUSUAL_STATUS); a page of 200s is read off the newest rows."""
    if query.status is not None:
        return query.status != 200
    return query.status_class is not None and query.status_class != 2


def _since_hint(table: str, since: int | None, *indexed_filters: object) -> str:
    """ "Since" asks for a recent window: read it through the received_at index, where SQLite
    (without statistics) would scan every row newest first until LIMIT rows match."""
    if since is None or any(f is not None for f in indexed_filters):
        return ""
    return f" INDEXED BY {table}_received_at"


_JOURNAL_TOTALS: Final = (
    "count(*), sum(status >= 400), sum(events_received), sum(events_stored), sum(events_duplicate), "
    "sum(CASE WHEN length(warnings) > 2 THEN json_array_length(CAST(warnings AS TEXT)) ELSE 0 END)"
)


def stats_sql(source: str | None, since_ms: int, until_ms: int, bucket_ms: int) -> list[tuple[str, list[Any]]]:
    """The SELECTs of ``query_stats`` (exposed so tests can EXPLAIN them), each giving rows of
    (start, source, api, requests, failed, received, stored, duplicate, warnings), then the
    dead letters as (start, destination, count).

    Whole minutes come from ``request_minutes`` when buckets are whole minutes (the requests
    naming no source per api there too); the partial minutes at the window's edges (or every
    row, for other buckets) from the journal, through its received_at index. Dead letters are
    read from the outbox's dead runs.
    """
    by_source = " AND source = ?" if source is not None else ""
    extra = [source] if source is not None else []
    journal = (
        f"SELECT received_at - received_at % ? AS start, source, api, "
        f"{_JOURNAL_TOTALS} FROM requests INDEXED BY requests_received_at "
        f"WHERE received_at >= ? AND received_at < ?{by_source} GROUP BY start, source, 3"
    )
    minutes = (
        "SELECT minute - minute % ? AS start, nullif(source, ''), nullif(api, ''), sum(requests), sum(failed), "
        "sum(received), sum(stored), sum(duplicate), sum(warnings) FROM request_minutes "
        f"WHERE minute >= ? AND minute < ?{by_source} GROUP BY start, source, api"
    )
    queries = totals_queries(minutes, journal, since_ms, until_ms, bucket_ms, extra)
    # Dead letters: the outbox's dead runs (consecutive events of one request, one destination
    # "<api>:<source>"), through its partial index, from the first event of the window on.
    by_destination = " AND destination IN ('axon:' || ?, 'appsflyer:' || ?)" if source is not None else ""
    dead = (
        "SELECT arrived_at - arrived_at % ? AS start, destination, sum(last_id - first_id + 1) "
        "FROM outbox INDEXED BY outbox_dead WHERE state = 'dead' AND first_id >= coalesce("
        "(SELECT first_id FROM event_blocks INDEXED BY event_blocks_received_at WHERE received_at >= ? "
        "ORDER BY received_at LIMIT 1), "
        "(SELECT max(id) FROM events) + 1) "
        f"AND arrived_at >= ? AND arrived_at < ?{by_destination} GROUP BY start, destination"
    )
    # An event's id follows its commit, its received_at its arrival: a minute of slack for the
    # requests that arrived earlier but committed later than the first one of the window.
    queries.append((dead, [bucket_ms, since_ms - 60_000, since_ms, until_ms, *extra, *extra]))
    return queries


def query_stats(
    conn: sqlite3.Connection, source: str | None, since_ms: int, until_ms: int, bucket_ms: int
) -> list[StatsBucket]:
    *totals, (dead, dead_params) = stats_sql(source, since_ms, until_ms, bucket_ms)
    tally = StatsTally()
    for sql, params in totals:
        tally.add_totals(conn.execute(sql, params))
    for start, destination, n in conn.execute(dead, dead_params):
        api, _, dead_source = destination.partition(":")
        tally.add_dead(start, api, dead_source, n)
    return tally.buckets()
