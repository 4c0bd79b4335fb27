"""The relay outbox on PostgreSQL: the statements ``PostgresStore`` runs on its pool, each
one statement (so one snapshot, one transaction).

The tables (schema.py) mirror the SQLite store's: ``outbox`` (one row per relayed event:
state, attempts, due time or lease expiry, lease owner, last status and error), ``attempts``
(one row per upstream request), ``attempt_events`` (which events it carried),
``outbox_delivered`` (a count per destination). ``query_events`` reads an event's relay state
from its outbox row, so delivering an event never rewrites its (wide, five-index) events row.

Across nodes, ``claim`` locks the rows it leases with ``FOR UPDATE SKIP LOCKED``: two nodes
claiming at once get disjoint rows, without waiting for each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec
import psycopg
from psycopg.rows import TupleRow

from capigate.store.base import (
    AttemptOutcome,
    DeadLetterQuery,
    Delivery,
    DeliveryAttempt,
    OutboxDepth,
)
from capigate.store.outbox import MOVES, Move, attempt_key, final_positions
from capigate.store.postgres.schema import pg_text

__all__ = [
    "claim",
    "outbox_depths",
    "query_attempts",
    "release",
    "replay",
    "settle",
]

Connection = psycopg.AsyncConnection[TupleRow]


_encode = msgspec.json.Encoder().encode
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode

# Due rows of one destination, oldest event first; rows another node is leasing right now
# are skipped, not waited for. The lease expiry becomes the row's next_attempt_at.
CLAIM: Final = """
WITH due AS (
    SELECT event_id FROM outbox
    WHERE destination = %(destination)s AND state = 'pending' AND next_attempt_at <= %(now)s
    ORDER BY event_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE outbox o SET lease_owner = %(owner)s, next_attempt_at = %(until)s
    FROM due WHERE o.event_id = due.event_id
    RETURNING o.event_id, o.attempts, o.queued_at
)
SELECT l.event_id, e.api, e.source, e.name, e.dedupe_id, e.payload, l.attempts, l.queued_at
FROM leased l JOIN events e ON e.id = l.event_id
ORDER BY l.event_id
"""


def _by_result(pick: Callable[[Move], str]) -> str:
    """A CASE on the outcome's result, from store/outbox.py's MOVES."""
    return "CASE o.result " + " ".join(f"WHEN '{r}' THEN {pick(m)}" for r, m in MOVES.items()) + " END"


# One attempts row per distinct response; every outcome is linked to its row. Each event's
# final outcome in the call (store/outbox.py) moves its row on, if its lease ``owner`` still
# holds it: "split" keeps the lease and moves its expiry.
SETTLE: Final = """
WITH g AS (
    SELECT nextval('attempts_id_seq') AS id, g.*
    FROM unnest(
        %(destination)b::text[], %(at)b::int8[], %(result)b::text[], %(status)b::int4[],
        %(latency_ms)b::float8[], %(error)b::text[], %(headers)b::bytea[], %(body)b::text[], %(due)b::int8[]
    ) WITH ORDINALITY AS g(destination, at, result, status, latency_ms, error, headers, body, due, ord)
), logged AS (
    INSERT INTO attempts (id, destination, at, result, status, latency_ms, error, response_headers, response_body)
    SELECT id, destination, at, result, status, latency_ms, error, headers, body FROM g
), o AS (
    SELECT u.event_id, u.final, g.id, g.result, g.status, g.error, g.due
    FROM unnest(%(event_id)b::int8[], %(group)b::int8[], %(final)b::bool[]) AS u(event_id, grp, final)
    JOIN g ON g.ord = u.grp
), linked AS (
    INSERT INTO attempt_events (event_id, attempt_id) SELECT event_id, id FROM o ON CONFLICT DO NOTHING
), moved AS (
    UPDATE outbox b SET
        state = {state},
        attempts = b.attempts + {counts},
        lease_owner = {lease_owner},
        next_attempt_at = o.due,
        last_status = o.status,
        last_error = o.error
    FROM o
    WHERE b.event_id = o.event_id AND o.final AND b.lease_owner = %(owner)s AND b.state = 'pending'
    RETURNING b.destination, b.state
)
INSERT INTO outbox_delivered (destination, delivered)
SELECT destination, count(*) FROM moved WHERE state = 'delivered' GROUP BY destination ORDER BY destination
ON CONFLICT (destination) DO UPDATE SET delivered = outbox_delivered.delivered + excluded.delivered
""".format(
    state=_by_result(lambda m: f"'{m.state}'"),
    counts=_by_result(lambda m: str(int(m.counts))),
    lease_owner=_by_result(lambda m: "b.lease_owner" if m.keeps_lease else "NULL"),
)

# A released row was due when it was leased, so it is due again at once.
RELEASE: Final = (
    "UPDATE outbox SET lease_owner = NULL, next_attempt_at = 0 WHERE state = 'pending' AND lease_owner = %s"
)

ATTEMPTS: Final = """
SELECT a.id, l.event_id, a.destination, a.at, a.result, a.status, a.latency_ms, a.error,
       a.response_headers, a.response_body
FROM attempt_events l JOIN attempts a ON a.id = l.attempt_id
WHERE l.event_id = %s ORDER BY a.id
"""

DEPTHS: Final = """
WITH p AS (
    SELECT destination, count(*) AS n, min(event_id) AS first FROM outbox WHERE state = 'pending' GROUP BY destination
), d AS (
    SELECT destination, count(*) AS n FROM outbox WHERE state = 'dead' GROUP BY destination
), names AS (
    SELECT destination FROM p UNION SELECT destination FROM d UNION SELECT destination FROM outbox_delivered
)
SELECT names.destination, coalesce(p.n, 0), coalesce(d.n, 0), coalesce(dl.delivered, 0), e.received_at
FROM names
LEFT JOIN p USING (destination)
LEFT JOIN d USING (destination)
LEFT JOIN outbox_delivered dl USING (destination)
LEFT JOIN events e ON e.id = p.first
"""


async def claim(
    conn: Connection, destination: str, owner: str, limit: int, now_ms: int, lease_ms: int
) -> list[Delivery]:
    if limit < 1:
        return []
    params = {"destination": destination, "owner": owner, "limit": limit, "now": now_ms, "until": now_ms + lease_ms}
    rows = await (await conn.execute(CLAIM, params)).fetchall()
    return [_delivery(row, destination) for row in rows]


def _delivery(r: TupleRow, destination: str) -> Delivery:
    return Delivery(
        event_id=r[0], destination=destination, api=r[1], source=r[2], name=r[3], dedupe_id=r[4],
        payload=r[5], attempts=r[6], queued_at_ms=r[7],
    )  # fmt: skip


async def settle(conn: Connection, outcomes: Sequence[AttemptOutcome], owner: str) -> None:
    """The outcomes of one upstream request (same response objects) share one attempts row."""
    final = final_positions(outcomes)
    groups: dict[tuple[Any, ...], int] = {}
    samples: list[AttemptOutcome] = []
    event_ids: list[int] = []
    group_of: list[int] = []
    for o in outcomes:
        key = attempt_key(o)
        index = groups.get(key)
        if index is None:
            index = groups[key] = len(samples) + 1  # WITH ORDINALITY counts from 1
            samples.append(o)
        event_ids.append(o.event_id)
        group_of.append(index)
    params = {
        "destination": [s.destination for s in samples],
        "at": [s.at_ms for s in samples],
        "result": [s.result for s in samples],
        "status": [s.status for s in samples],
        "latency_ms": [float(s.latency_ms) for s in samples],
        "error": [pg_text(s.error) for s in samples],
        "headers": [_encode(s.response_headers) for s in samples],
        "body": [pg_text(s.response_body) for s in samples],
        "due": [s.next_attempt_at_ms if s.next_attempt_at_ms is not None else s.at_ms for s in samples],
        "event_id": event_ids,
        "group": group_of,
        "final": [position in final for position in range(len(outcomes))],
        "owner": owner,
    }
    await conn.execute(SETTLE, params)


async def release(conn: Connection, owner: str) -> int:
    return (await conn.execute(RELEASE, (owner,))).rowcount


async def replay(conn: Connection, query: DeadLetterQuery, now_ms: int) -> int:
    """Dead rows matching ``query`` become pending again, due now, with attempts reset."""
    filters = (
        ("o.destination = %s", query.destination),
        ("e.source = %s", query.source),
        ("o.last_status = %s", query.status),
        ("e.received_at >= %s", query.since_ms),
        ("e.received_at < %s", query.until_ms),
    )
    chosen = [(clause, value) for clause, value in filters if value is not None]
    where = "".join(f" AND {clause}" for clause, _ in chosen)
    sql = (
        "UPDATE outbox SET state = 'pending', attempts = 0, queued_at = %s, next_attempt_at = %s, lease_owner = NULL "
        "WHERE event_id IN (SELECT o.event_id FROM outbox o JOIN events e ON e.id = o.event_id "
        f"WHERE o.state = 'dead'{where})"
    )
    return (await conn.execute(sql, [now_ms, now_ms, *(value for _, value in chosen)])).rowcount


async def query_attempts(conn: Connection, event_id: int) -> list[DeliveryAttempt]:
    rows = await (await conn.execute(ATTEMPTS, (event_id,))).fetchall()
    return [_attempt(row) for row in rows]


def _attempt(r: TupleRow) -> DeliveryAttempt:
    return DeliveryAttempt(
        id=r[0], event_id=r[1], destination=r[2], at=r[3], result=r[4], status=r[5], latency_ms=r[6],
        error=r[7], response_headers=_decode_headers(r[8]), response_body=r[9],
    )  # fmt: skip


async def outbox_depths(conn: Connection) -> list[OutboxDepth]:
    """Per destination; pending and dead are counted on their partial indexes only."""
    rows = await (await conn.execute(DEPTHS)).fetchall()
    depths = [
        OutboxDepth(destination=r[0], pending=r[1], dead=r[2], delivered=r[3], oldest_pending_at=r[4]) for r in rows
    ]
    return sorted(depths, key=lambda d: d.destination)
