"""The PostgreSQL store's reads: the SELECTs of the list queries and the inspector's
statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg.rows import TupleRow

from capigate.store.base import EventQuery, RequestQuery, StatsBucket
from capigate.store.inspector import StatsTally, request_clauses, totals_queries
from capigate.store.outbox import RELAY_STATES
from capigate.store.postgres.schema import pg_text
from capigate.store.sql import REQUEST_COLUMNS, also, clamp, event_columns, where

__all__ = ["events_sql", "query_stats", "requests_sql", "stats_sql"]

Connection = psycopg.AsyncConnection[TupleRow]

_EVENT_COLUMNS: Final = event_columns("e")
# The run holding an event (runs never overlap): the last one starting at or before it, if
# it reaches it.
_OUTBOX_JOIN: Final = (
    " LEFT JOIN LATERAL (SELECT state, last_id FROM outbox WHERE first_id <= e.id ORDER BY first_id DESC LIMIT 1) o"
    " ON o.last_id >= e.id"
)


def events_sql(query: EventQuery) -> tuple[str, list[Any]]:
    """The SELECT that ``query_events`` runs (exposed so tests can EXPLAIN it). An event with an
    outbox run reports the run's state (pending, delivered, dead) as its status."""
    equal: list[tuple[str, str | int | None]] = [
        ("e.source", query.source), ("e.api", query.api), ("e.name", query.name), ("e.test_tag", query.test_tag),
    ]  # fmt: skip
    join = _OUTBOX_JOIN
    if query.status in RELAY_STATES:
        # Written out, not bound: the partial indexes serve only a literal that matches.
        join = f" JOIN outbox o ON o.state = '{query.status}' AND e.id BETWEEN o.first_id AND o.last_id"
    else:
        equal.append(("e.status", query.status))
    if query.request is not None:  # its received_at finds its events through an index
        equal += [("e.received_at", query.request[1]), ("e.request_id", query.request[0])]
    where_sql, params = where(_text(equal), query.since_ms, query.until_ms, query.cursor, mark="%s", table="e")
    sql = f"SELECT {_EVENT_COLUMNS} FROM events e{join}{where_sql} ORDER BY e.id DESC LIMIT %s"
    return sql, [*params, clamp(query.limit) + 1]


def requests_sql(query: RequestQuery) -> tuple[str, list[Any]]:
    """The SELECT that ``query_requests`` runs (exposed so tests can EXPLAIN it)."""
    equal = [
        ("source", query.source), ("api", query.api), ("status", query.status),
        ("client_ip", query.client_ip), ("test_tag", query.test_tag),
    ]  # fmt: skip
    where_sql, params = where(_text(equal), query.since_ms, query.until_ms, query.cursor, mark="%s")
    clauses, values = request_clauses(query, mark="%s")
    for clause in clauses:
        where_sql = also(where_sql, clause)
    params += [pg_text(v) if isinstance(v, str) else v for v in values]
    sql = f"SELECT {REQUEST_COLUMNS} FROM requests{where_sql} ORDER BY id DESC LIMIT %s"
    return sql, [*params, clamp(query.limit) + 1]


def _text(equal: Sequence[tuple[str, str | int | None]]) -> list[tuple[str, object]]:
    return [(column, pg_text(value) if isinstance(value, str) else value) for column, value in equal]


def stats_sql(source: str | None, since_ms: int, until_ms: int, bucket_ms: int) -> list[tuple[str, list[Any]]]:
    """The SELECTs of ``query_stats`` (exposed so tests can EXPLAIN them), each giving rows of
    (start, source, api, requests, failed, received, stored, duplicate, warnings), then the
    dead letters as (start, api, source, count).

    Whole minutes come from ``request_minutes`` when buckets are whole minutes (the requests
    naming no source per api there too); the partial minutes at the window's edges (or every
    row, for other buckets) from the journal, through requests_received_at. Dead letters are
    those of the events received in the window, through the outbox's partial index.
    """
    by_source = " AND source = %s" if source is not None else ""
    extra = [source] if source is not None else []
    journal = (
        "SELECT received_at - received_at %% %s AS start, source, api, "
        "count(*), count(*) FILTER (WHERE status >= 400), sum(events_received), sum(events_stored), "
        "sum(events_duplicate), "
        "sum(CASE WHEN length(warnings) > 2 THEN json_array_length(convert_from(warnings, 'UTF8')::json) ELSE 0 END) "
        f"FROM requests WHERE received_at >= %s AND received_at < %s{by_source} GROUP BY 1, 2, 3"
    )
    minutes = (
        "SELECT minute - minute %% %s AS start, nullif(source, ''), nullif(api, ''), sum(requests)::int8, "
        "sum(failed)::int8, sum(received)::int8, sum(stored)::int8, sum(duplicate)::int8, sum(warnings)::int8 "
        f"FROM request_minutes WHERE minute >= %s AND minute < %s{by_source} GROUP BY 1, 2, 3"
    )
    queries = totals_queries(minutes, journal, since_ms, until_ms, bucket_ms, extra)
    dead = (  # a run's events came in one request: its first event tells their source
        "SELECT o.arrived_at - o.arrived_at %% %s AS start, e.api, e.source, sum(o.last_id - o.first_id + 1)::int8 "
        "FROM outbox o JOIN events e ON e.id = o.first_id "
        f"WHERE o.state = 'dead' AND o.arrived_at >= %s AND o.arrived_at < %s{by_source.replace('source', 'e.source')} "
        "GROUP BY 1, 2, 3"
    )
    queries.append((dead, [bucket_ms, since_ms, until_ms, *extra]))
    return queries


async def query_stats(
    conn: Connection, source: str | None, since_ms: int, until_ms: int, bucket_ms: int
) -> list[StatsBucket]:
    *totals, (dead, dead_params) = stats_sql(pg_text(source), since_ms, until_ms, bucket_ms)
    tally = StatsTally()
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot for all
        for sql, params in totals:
            tally.add_totals(await (await conn.execute(sql, params)).fetchall())
        for start, api, src, n in await (await conn.execute(dead, dead_params)).fetchall():
            tally.add_dead(start, api, src, n)
    return tally.buckets()
