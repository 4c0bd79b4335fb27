"""The relay outbox on PostgreSQL: the statements ``PostgresStore`` runs on its pool, each job
one transaction.

The tables (schema.py) are the SQLite store's (sqlite/outbox.py): ``outbox`` holds **runs**,
consecutive event ids of one destination that share their state, lease and retry schedule
(``first_id .. last_id``; state, attempts, due time or lease expiry, lease owner, last status
and error, the events' arrival time, and ``attempt_ids``, the attempts that carried them);
``attempts`` holds one row per upstream request, ``outbox_delivered`` a count per destination.
Ingest gives each request a block of ids no other connection can take (ingest.py), so one
request's events of one destination are one run. ``query_events`` reads an event's relay
state from the run that holds it, so delivering never rewrites its (wide) events row.

Across nodes, ``claim`` locks the runs it leases with ``FOR UPDATE SKIP LOCKED``: two nodes
claiming at once get disjoint runs, without waiting for each other. A claim or settle that
covers part of a run cuts it (runs.py) while it holds the run's lock, in the transaction that
leases or moves the part.

**Lock order.** Every job here that waits for row locks (settle, release, replay) takes all
of them in one statement, in ``first_id`` order, before it changes anything; ``claim`` never
waits. So no two outbox jobs, of one node or of several, wait for each other in a cycle. A
settle whose locked runs were cut meanwhile (their cut-off parts were invisible to its
statement) rolls back and locks again, all at once, rather than add a lock out of order.
What PostgreSQL still ends as a deadlock (a lock taken by something else) is run again
(conflicts.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec
import psycopg
from psycopg.rows import TupleRow

from capigate.store.base import AttemptOutcome, DeadLetterQuery, Delivery, DeliveryAttempt, OutboxDepth
from capigate.store.outbox import REPLAYED_SINCE, AttemptGroup, attempt_groups, stretches
from capigate.store.postgres.conflicts import retried
from capigate.store.postgres.runs import CUT, Runs, lock_runs, write_runs
from capigate.store.postgres.schema import pg_text

__all__ = ["ATTEMPTS", "CLAIM", "claim", "outbox_depths", "query_attempts", "release", "replay", "settle"]

Connection = psycopg.AsyncConnection[TupleRow]

_encode = msgspec.json.Encoder().encode
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode

# The due runs of one destination, oldest first; runs another node is leasing right now are
# skipped, not waited for.
CLAIM: Final = """
SELECT first_id, last_id FROM outbox
WHERE destination = %(destination)s AND state = 'pending' AND next_attempt_at <= %(now)s
ORDER BY first_id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
# The lease expiry becomes the run's next_attempt_at; then the events of the leased runs.
_LEASE: Final = """
WITH leased AS (
    UPDATE outbox SET lease_owner = %s, next_attempt_at = %s WHERE first_id = ANY(%s)
    RETURNING first_id, last_id, attempts, queued_at
)
SELECT e.id, e.api, e.source, e.name, e.dedupe_id, e.payload, l.attempts, l.queued_at, e.received_at
FROM leased l JOIN events e ON e.id BETWEEN l.first_id AND l.last_id
ORDER BY e.id
"""
# One attempts row per upstream request, its id returned in the order given.
_LOG_ATTEMPTS: Final = """
WITH g AS MATERIALIZED (
    SELECT nextval('attempts_id_seq') AS id, g.*
    FROM unnest(
        %b::text[], %b::int8[], %b::text[], %b::int4[], %b::float8[], %b::text[], %b::bytea[], %b::text[]
    ) WITH ORDINALITY AS g(destination, at, result, status, latency_ms, error, headers, body, ord)
), logged AS (
    INSERT INTO attempts (id, destination, at, result, status, latency_ms, error, response_headers, response_body)
    SELECT id, destination, at, result, status, latency_ms, error, headers, body FROM g
)
SELECT id FROM g ORDER BY ord
"""
_COUNT_DELIVERED: Final = """
INSERT INTO outbox_delivered (destination, delivered) VALUES (%s, %s)
ON CONFLICT (destination) DO UPDATE SET delivered = outbox_delivered.delivered + excluded.delivered
"""

# A released run was due when it was leased, so it is due again at once. The runs are locked
# first, in first_id order (PostgreSQL sorts, then locks), before any is changed.
RELEASE: Final = """
WITH held AS MATERIALIZED (
    SELECT first_id FROM outbox WHERE state = 'pending' AND lease_owner = %s ORDER BY first_id FOR UPDATE
)
UPDATE outbox o SET lease_owner = NULL, next_attempt_at = 0 FROM held WHERE o.first_id = held.first_id
RETURNING o.last_id - o.first_id + 1
"""
_READS: Final = 5  # a settle's reads of its runs until they cover its events; a cut meanwhile adds one

# The attempts that carried an event: those its run lists (sorted by the caller).
ATTEMPTS: Final = """
SELECT a.id, a.destination, a.at, a.result, a.status, a.latency_ms, a.error, a.response_headers, a.response_body
FROM (SELECT %(id)s::int8 AS id) x
CROSS JOIN LATERAL (
    SELECT last_id, attempt_ids FROM outbox WHERE first_id <= x.id ORDER BY first_id DESC LIMIT 1
) o
JOIN attempts a ON a.id = ANY(o.attempt_ids)
WHERE o.last_id >= x.id
"""

DEPTHS: Final = """
WITH p AS (
    SELECT destination, sum(last_id - first_id + 1)::int8 AS n, min(first_id) AS first
    FROM outbox WHERE state = 'pending' GROUP BY destination
), d AS (
    SELECT destination, sum(last_id - first_id + 1)::int8 AS n FROM outbox WHERE state = 'dead' GROUP BY destination
), names AS (
    SELECT destination FROM p UNION SELECT destination FROM d UNION SELECT destination FROM outbox_delivered
)
SELECT names.destination, coalesce(p.n, 0), coalesce(d.n, 0), coalesce(dl.delivered, 0), o.arrived_at
FROM names
LEFT JOIN p USING (destination)
LEFT JOIN d USING (destination)
LEFT JOIN outbox_delivered dl USING (destination)
LEFT JOIN outbox o ON o.first_id = p.first
"""


async def claim(
    conn: Connection, destination: str, owner: str, limit: int, now_ms: int, lease_ms: int
) -> list[Delivery]:
    if limit < 1:
        return []
    return await retried("claim", lambda: _claim(conn, destination, owner, limit, now_ms, lease_ms))


async def _claim(
    conn: Connection, destination: str, owner: str, limit: int, now_ms: int, lease_ms: int
) -> list[Delivery]:
    params = {"destination": destination, "limit": limit, "now": now_ms}
    async with conn.transaction():
        taken: list[int] = []
        left = limit
        for first, last in await (await conn.execute(CLAIM, params)).fetchall():
            if last - first + 1 > left:
                await conn.execute(CUT, {"first": first, "at": first + left})  # the rest stays due
                last = first + left - 1
            taken.append(first)
            left -= last - first + 1
            if left == 0:
                break
        if not taken:
            return []
        rows = await (await conn.execute(_LEASE, (owner, now_ms + lease_ms, taken))).fetchall()
    return [_delivery(row, destination) for row in rows]


def _delivery(r: TupleRow, destination: str) -> Delivery:
    return Delivery(
        event_id=r[0], destination=destination, api=r[1], source=r[2], name=r[3], dedupe_id=r[4],
        payload=r[5], attempts=r[6], queued_at_ms=r[7], received_at_ms=r[8],
    )  # fmt: skip


async def settle(conn: Connection, outcomes: Sequence[AttemptOutcome], owner: str) -> None:
    """One ``attempts`` row per upstream request; each event's final outcome in the call
    moves its run (store/outbox.py), if ``owner`` still leases it."""
    groups = attempt_groups(outcomes)
    samples = [g.sample for g in groups]
    attempts: list[list[Any]] = [
        [s.destination for s in samples],
        [s.at_ms for s in samples],
        [s.result for s in samples],
        [s.status for s in samples],
        [float(s.latency_ms) for s in samples],
        [pg_text(s.error) for s in samples],
        [_encode(s.response_headers) for s in samples],
        [pg_text(s.response_body) for s in samples],
    ]
    spans = list(stretches([o.event_id for o in outcomes]))
    await retried("settle", lambda: _settle(conn, groups, attempts, spans, owner))


async def _settle(
    conn: Connection, groups: list[AttemptGroup], attempts: list[list[Any]], spans: list[tuple[int, int]], owner: str
) -> None:
    """One transaction that locks the runs before anything else. If a run was cut while it
    waited, it starts again; the last read moves what it found (an event whose run it missed
    stays leased, and is sent again when the lease ends)."""
    for read in range(1, _READS + 1):
        async with conn.transaction():
            runs = await lock_runs(conn, spans)
            if not runs.covers(spans) and read < _READS:
                raise psycopg.Rollback()  # a run was cut while this waited: lock again, in order
            await _move(conn, groups, runs, attempts, owner)
            return


async def _move(
    conn: Connection, groups: list[AttemptGroup], runs: Runs, attempts: list[list[Any]], owner: str
) -> None:
    """Logs the attempts, applies the outcomes to the locked runs in order, writes them."""
    attempt_ids = [row[0] for row in await (await conn.execute(_LOG_ATTEMPTS, attempts)).fetchall()]
    delivered: dict[str, int] = {}
    for (sample, moving, recorded), attempt_id in zip(groups, attempt_ids, strict=True):
        due = sample.next_attempt_at_ms if sample.next_attempt_at_ms is not None else sample.at_ms
        moved = runs.apply(moving, owner, sample, attempt_id, due) if moving else 0
        if recorded:
            runs.apply(recorded, None, sample, attempt_id, due)
        if sample.result == "delivered" and moved:
            delivered[sample.destination] = delivered.get(sample.destination, 0) + moved
    await write_runs(conn, runs)
    for destination, count in sorted(delivered.items()):
        await conn.execute(_COUNT_DELIVERED, (destination, count))


async def release(conn: Connection, owner: str) -> int:
    """Gives back the owner's leases; returns how many events they held."""
    return await retried("release", lambda: _count(conn, RELEASE, [owner]))


async def _count(conn: Connection, sql: str, params: list[Any]) -> int:
    """Runs an UPDATE that returns each changed run's size; returns the events it changed."""
    rows = await (await conn.execute(sql, params)).fetchall()
    return sum(n for (n,) in rows)


async def replay(conn: Connection, query: DeadLetterQuery, now_ms: int) -> int:
    """Dead runs matching ``query`` (every event of a run came in one request: one source,
    one arrival time) become due now, attempts reset; returns how many events."""
    filters = (
        ("o.destination = %s", query.destination),
        ("e.source = %s", query.source),
        ("o.last_status = %s", query.status),
        ("o.arrived_at >= %s", query.since_ms),
        ("o.arrived_at < %s", query.until_ms),
    )
    chosen = [(clause, value) for clause, value in filters if value is not None]
    where = "".join(f" AND {clause}" for clause, _ in chosen)
    # The runs are locked first, in first_id order, as RELEASE's are.
    sql = (
        "WITH chosen AS MATERIALIZED (SELECT o.first_id FROM outbox o JOIN events e ON e.id = o.first_id "
        f"WHERE o.state = 'dead'{where} ORDER BY o.first_id FOR UPDATE OF o) "
        "UPDATE outbox o SET state = 'pending', attempts = 0, queued_at = %s, next_attempt_at = %s, lease_owner = NULL "
        "FROM chosen WHERE o.first_id = chosen.first_id RETURNING o.last_id - o.first_id + 1"
    )
    params = [*(value for _, value in chosen), now_ms, now_ms]
    return await retried("replay", lambda: _count(conn, sql, params))


_REPLAYED_SINCE: Final = REPLAYED_SINCE.format(p="%s")


async def replayed_since(conn: Connection, destination: str, since_ms: int) -> bool:
    row = await (await conn.execute(_REPLAYED_SINCE, [destination, since_ms])).fetchone()
    return row is not None


async def query_attempts(conn: Connection, event_id: int) -> list[DeliveryAttempt]:
    rows = await (await conn.execute(ATTEMPTS, {"id": event_id})).fetchall()
    return [_attempt(row, event_id) for row in sorted(rows, key=lambda r: int(r[0]))]


def _attempt(r: TupleRow, event_id: int) -> DeliveryAttempt:
    return DeliveryAttempt(
        id=r[0], event_id=event_id, destination=r[1], at=r[2], result=r[3], status=r[4], latency_ms=r[5],
        error=r[6], response_headers=_decode_headers(r[7]), response_body=r[8],
    )  # fmt: skip


async def outbox_depths(conn: Connection) -> list[OutboxDepth]:
    """Per destination; pending and dead are counted on their partial indexes only."""
    rows: list[Any] = await (await conn.execute(DEPTHS)).fetchall()
    depths = [
        OutboxDepth(destination=r[0], pending=r[1], dead=r[2], delivered=r[3], oldest_pending_at=r[4]) for r in rows
    ]
    return sorted(depths, key=lambda d: d.destination)
