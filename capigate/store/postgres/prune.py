"""Pruning on PostgreSQL: the dedupe keys and the journal in one transaction, then the events
and the attempts a chunk per transaction, each under the prune lock.

One node prunes at a time: each transaction first tries the advisory lock, and a node that
finds it taken stops (the node holding it is pruning). Chunks keep the row locks, the WAL of
one transaction and the time a replica lags behind small, however much a first prune finds.
Each transaction takes a connection from the pool and gives it back: a long first prune holds
none between them, so the reads and leases waiting for one wait for one transaction at most.

The rules are the SQLite store's (sqlite/prune.py): an event goes by age, with its outbox run
once the run holds no other event, unless its run is pending or dead; an attempt goes by age
unless a run the outbox held pending or dead when the prune began lists it (an attempt is made
after every event it carries was received, so only events as old as it can be). The id
sequences never give an id twice, so no newest row is kept. ``outbox_delivered`` counts the deliveries
ever made per destination; pruning leaves it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

import psycopg
from psycopg.rows import TupleRow

from capigate.store.base import PruneResult, Retention, cutoff_ms
from capigate.store.inspector import MINUTE_MS
from capigate.store.postgres.inspector import prune_inspector

__all__ = ["CHUNK", "prune"]

Connection = psycopg.AsyncConnection[TupleRow]
Connect = Callable[[], AbstractAsyncContextManager[Connection]]  # a pool's ``connection``

CHUNK: Final = 2000  # rows per transaction
_START: Final = -(2**63)

# One lock per PostgreSQL schema, held to the end of the transaction.
_LOCK: Final = "SELECT pg_try_advisory_xact_lock(hashtext('capigate-prune:' || coalesce(current_schema(), '')))"

# The next chunk of events received before the cutoff, from ``from`` on, oldest first: those
# received up to the ``limit``-th one's time (ties included: a chunk ends between two
# milliseconds, so the received_at index alone serves it, with no sort). Those no pending or
# dead outbox run holds go, with the runs left with no event (a run's events arrived in one
# request, at one time: one chunk holds them all). Returns how many went and the time the
# chunk ended at, NULL if it held the last ones.
_EVENTS: Final = """
WITH edge AS (
    SELECT received_at FROM events
    WHERE received_at >= %(from)s AND received_at < %(before)s
    ORDER BY received_at OFFSET %(offset)s LIMIT 1
), old AS (
    SELECT id FROM events
    WHERE received_at >= %(from)s AND received_at < %(before)s
        AND received_at <= coalesce((SELECT received_at FROM edge), %(before)s)
), held AS (
    SELECT old.id, o.first_id, o.state FROM old CROSS JOIN LATERAL (
        SELECT first_id, last_id, state FROM outbox WHERE first_id <= old.id ORDER BY first_id DESC LIMIT 1
    ) o WHERE o.last_id >= old.id
), gone AS (
    DELETE FROM events e USING old
    WHERE e.id = old.id AND NOT EXISTS (SELECT 1 FROM held h WHERE h.id = e.id AND h.state <> 'delivered')
    RETURNING e.id
), runs AS (
    DELETE FROM outbox o USING held h
    WHERE o.first_id = h.first_id AND h.state = 'delivered' AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.id BETWEEN o.first_id AND o.last_id AND e.id NOT IN (SELECT id FROM gone)
    )
)
SELECT (SELECT count(*) FROM gone), (SELECT received_at FROM edge)
"""

# The attempts the runs the outbox holds pending or dead list, through its partial indexes.
_HELD: Final = "SELECT unnest(attempt_ids) FROM outbox WHERE state = '{state}'"
_KEPT: Final = _HELD.format(state="pending") + " UNION " + _HELD.format(state="dead")


async def prune(connect: Connect, now_ms: int, retention: Retention) -> PruneResult:
    """``connect`` lends autocommit connections; nothing pruned (all zero) if another node
    holds the lock."""
    keys_before = cutoff_ms(now_ms, retention.dedupe_days)
    journal_before = cutoff_ms(now_ms, retention.journal_days)
    async with connect() as conn, conn.transaction():
        if not await _locked(conn):
            return PruneResult(dedupe_keys=0, requests=0, events=0)
        keys = await conn.execute("DELETE FROM dedupe_keys WHERE seen_at < %s", (keys_before,))
        old = await conn.execute("DELETE FROM requests WHERE received_at < %s", (journal_before,))
        await conn.execute(
            "DELETE FROM request_minutes WHERE minute < %s", (journal_before - journal_before % MINUTE_MS,)
        )
        over = await conn.execute(
            "DELETE FROM requests WHERE id <= (SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET %s)",
            (max(0, retention.journal_max_rows),),
        )
        await prune_inspector(conn, journal_before, cutoff_ms(now_ms, retention.event_days))
    result = PruneResult(dedupe_keys=keys.rowcount, requests=old.rowcount + over.rowcount, events=0)
    before = cutoff_ms(now_ms, retention.event_days)
    if before > 0:  # 0: kept for ever
        # Read before the events go: an event held then may be delivered and pruned since,
        # but one not held then (delivered) can never be held again.
        async with connect() as conn:
            kept = {attempt_id for (attempt_id,) in await (await conn.execute(_KEPT)).fetchall()}
        result.events = await _prune_events(connect, before)
        await _prune_attempts(connect, before, kept)
    return result


async def _locked(conn: Connection) -> bool:
    row = await (await conn.execute(_LOCK)).fetchone()
    return row is not None and bool(row[0])


async def _prune_events(connect: Connect, before: int) -> int:
    deleted, start = 0, _START
    while True:
        async with connect() as conn, conn.transaction():
            if not await _locked(conn):
                return deleted
            params = {"from": start, "before": before, "offset": CHUNK - 1}
            row = await (await conn.execute(_EVENTS, params)).fetchone()
        if row is None:
            return deleted
        gone, edge = row
        deleted += int(gone)
        if edge is None:
            return deleted
        start = edge + 1


async def _prune_attempts(connect: Connect, before: int, kept: set[int]) -> None:
    """Attempts by id, a chunk per transaction, up to the first one made since ``before``."""
    after = 0
    while True:
        async with connect() as conn, conn.transaction():
            if not await _locked(conn):
                return
            chunk = await (
                await conn.execute("SELECT id, at FROM attempts WHERE id > %s ORDER BY id LIMIT %s", (after, CHUNK))
            ).fetchall()
            doomed = [attempt_id for attempt_id, at in chunk if at < before and attempt_id not in kept]
            if doomed:
                await conn.execute("DELETE FROM attempts WHERE id = ANY(%s)", (doomed,))
        if len(chunk) < CHUNK or any(at >= before for _, at in chunk):
            return
        after = chunk[-1][0]
