"""What the inspector reads beyond the events and the journal, on PostgreSQL: refused bodies,
the keys a request is found by, and the match-key rollup behind ``GET /api/quality`` (the tables
of capigate/store/inspector.py).

The rollup is written in the ingest group's transaction. Several writers (of this node and of
others) add to the same hour at once, so each writer has a ``shard`` of its own in the key:
they never wait on each other's row locks, and a query sums the shards.
"""

from __future__ import annotations

import random
from typing import Any, Final

import psycopg
from psycopg.rows import TupleRow

from capigate.store.base import QualityRow, RequestView
from capigate.store.inspector import DAY_MS, HOUR_MS, QualityKey, by_day, quality_sql
from capigate.store.sql import REQUEST_COLUMNS, request_view

__all__ = [
    "ADD_QUALITY_SQL",
    "BODIES_SQL",
    "INSPECTOR_MIGRATION",
    "KEYS_SQL",
    "QUALITY_CTE",
    "new_shard",
    "quality_columns",
    "query_quality",
    "query_request",
]

Connection = psycopg.AsyncConnection[TupleRow]

INSPECTOR_MIGRATION: Final = (
    """CREATE TABLE request_bodies (
        request_id text PRIMARY KEY,
        received_at bigint NOT NULL,
        body bytea NOT NULL
    )""",
    "CREATE INDEX request_bodies_received_at ON request_bodies (received_at)",
    """CREATE TABLE request_keys (
        kind text NOT NULL,
        value text NOT NULL,
        request_id text NOT NULL,
        received_at bigint NOT NULL,
        PRIMARY KEY (kind, value, request_id)
    )""",
    "CREATE INDEX request_keys_received_at ON request_keys (received_at)",
    "CREATE INDEX requests_request_id ON requests (request_id)",
    "CREATE INDEX requests_client_ip_id ON requests (client_ip, id)",
    "CREATE INDEX requests_test_tag_id ON requests (test_tag, id) WHERE test_tag IS NOT NULL",
    """CREATE TABLE event_quality (
        hour bigint NOT NULL,
        source text NOT NULL,
        name text NOT NULL,
        api text NOT NULL,
        match_keys bigint NOT NULL,
        shard integer NOT NULL,
        events bigint NOT NULL,
        received bigint NOT NULL,
        PRIMARY KEY (hour, source, name, api, match_keys, shard)
    )""",
    """CREATE TABLE event_quality_days (
        day bigint NOT NULL,
        source text NOT NULL,
        name text NOT NULL,
        api text NOT NULL,
        match_keys bigint NOT NULL,
        shard integer NOT NULL,
        events bigint NOT NULL,
        received bigint NOT NULL,
        PRIMARY KEY (day, source, name, api, match_keys, shard)
    )""",
)

BODIES_SQL: Final = """
INSERT INTO request_bodies (request_id, received_at, body)
SELECT * FROM unnest(%b::text[], %b::int8[], %b::bytea[])
ON CONFLICT (request_id) DO NOTHING
"""
KEYS_SQL: Final = """
INSERT INTO request_keys (kind, value, request_id, received_at)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::int8[])
ON CONFLICT DO NOTHING
"""
# The events a group received (its duplicates too), in key order: two transactions of one
# shard lock the rows in the same order. The stored ones are counted by QUALITY_CTE, a part of
# the ingest statement (only it knows which events won their dedupe key).
ADD_QUALITY_SQL: Final = tuple(
    f"""
INSERT INTO {table} ({unit}, source, name, api, match_keys, shard, events, received)
SELECT k.u, k.s, k.n, k.a, k.m, k.sh, 0, k.r
FROM unnest(%b::int8[], %b::text[], %b::text[], %b::text[], %b::int8[], %b::int4[], %b::int8[]) AS k(u, s, n, a, m, sh, r)
ON CONFLICT ({unit}, source, name, api, match_keys, shard) DO UPDATE
SET received = {table}.received + excluded.received
"""
    for table, unit in (("event_quality", "hour"), ("event_quality_days", "day"))
)
QUALITY_CTE: Final = "".join(
    f""", {table}_in AS (
    INSERT INTO {table} ({unit}, source, name, api, match_keys, shard, events, received)
    SELECT received_at - received_at %% {size}, source, name, api, match_keys, %b::int4, count(*), 0
    FROM stored WHERE test_tag IS NULL
    GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ({unit}, source, name, api, match_keys, shard) DO UPDATE
    SET events = {table}.events + excluded.events
)"""
    for table, unit, size in (("event_quality", "hour", HOUR_MS), ("event_quality_days", "day", DAY_MS))
)


def new_shard() -> int:
    return random.randrange(1 << 30)


def quality_columns(counts: dict[QualityKey, list[int]], shard: int) -> list[list[list[Any]]]:
    """ADD_QUALITY_SQL's parameters, per table: the received count of each key."""
    return [_columns(counts, shard), _columns(by_day(counts), shard)]


def _columns(counts: dict[QualityKey, list[int]], shard: int) -> list[list[Any]]:
    keys = sorted(counts)
    return [
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys],
        [k[4] for k in keys], [shard] * len(keys), [counts[k][1] for k in keys],
    ]  # fmt: skip


async def query_request(
    conn: Connection, request_id: str
) -> tuple[RequestView, bytes | None, list[tuple[str, str]]] | None:
    sql = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = %s"
    row = await (await conn.execute(sql, (request_id,))).fetchone()
    if row is None:
        return None
    view = request_view(row)
    return view, *await _request_extras(conn, request_id, view.received_at)


# A request's keys carry its received_at, whose index finds them: the table's key starts with
# the key's kind and value, so a look-up by request id alone read every key of the journal.
REQUEST_KEYS_SQL: Final = "SELECT kind, value FROM request_keys WHERE received_at = %s AND request_id = %s"


async def _request_extras(
    conn: Connection, request_id: str, received_at: int
) -> tuple[bytes | None, list[tuple[str, str]]]:
    row = await (await conn.execute("SELECT body FROM request_bodies WHERE request_id = %s", (request_id,))).fetchone()
    cur = await conn.execute(REQUEST_KEYS_SQL, (received_at, request_id))
    keys = [(k, v) for k, v in await cur.fetchall()]
    return (bytes(row[0]) if row else None), keys


async def query_quality(conn: Connection, source: str | None, since_ms: int, until_ms: int) -> list[QualityRow]:
    sql, params = quality_sql(source, since_ms, until_ms, mark="%s")
    sql = sql.replace(
        "sum(events), sum(received) - sum(events)", "sum(events)::bigint, (sum(received) - sum(events))::bigint"
    )
    rows = await (await conn.execute(sql, params)).fetchall()
    return [QualityRow(api=a, source=s, name=n, match_keys=m, events=e, duplicates=d) for a, s, n, m, e, d in rows]
