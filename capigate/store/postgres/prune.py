"""Pruning on PostgreSQL: the dedupe keys, the journal (its entries with their per-minute
totals, refused bodies and keys), the match-key rollups, the events and the attempts, each a
chunk per transaction, each transaction under the prune lock.

One node prunes at a time: each transaction first tries the advisory lock, and a node that
finds it taken stops (the node holding it is pruning). Chunks keep the row locks, the WAL of
one transaction and the time a replica lags behind small, however much a first prune finds
(a first prune after a retention was shortened, a node back after weeks): no transaction
deletes more than ``CHUNK`` rows of a table, but for rows sharing one time (``_edge``).
Each transaction takes a connection from the pool and gives it back: a long first prune holds
none between them, so the reads and leases waiting for one wait for one transaction at most.

The rules are the SQLite store's (sqlite/prune.py): an event goes by age, with its outbox run
once the run holds no other event, unless its run is pending or dead; an attempt goes by age
unless a run the outbox held pending or dead when the prune began lists it (an attempt is made
after every event it carries was received, so only events as old as it can be). The id
sequences never give an id twice, so no newest row is kept. ``outbox_delivered`` counts the deliveries
ever made per destination; pruning leaves it alone. Each transaction of the journal leaves it
as the whole prune would at a cutoff of its own (``_prune_journal``), so the overview's
per-minute totals never lose a minute whose entries are still there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

import psycopg
from psycopg.rows import TupleRow

from capigate.store.base import PruneResult, Retention, cutoff_ms
from capigate.store.inspector import DAY_MS, HOUR_MS, MINUTE_MS

__all__ = ["CHUNK", "prune"]

Connection = psycopg.AsyncConnection[TupleRow]
Connect = Callable[[], AbstractAsyncContextManager[Connection]]  # a pool's ``connection``

CHUNK: Final = 2000  # rows per transaction
_START: Final = -(2**63)

# One lock per PostgreSQL schema, held to the end of the transaction.
# A node's probe row not written for this long is a node gone (stopped, or restarted under a
# new pid): a live one writes it again at its next probe.
_NODE_GONE_MS: Final = DAY_MS
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
    """``connect`` lends autocommit connections. Nothing pruned (all zero) if another node
    holds the lock; if one takes it between two transactions, what was pruned until then."""
    result = PruneResult(dedupe_keys=0, requests=0, events=0)
    events_before = cutoff_ms(now_ms, retention.event_days)
    try:
        async with _chunk(connect) as conn:  # a row each node (host:pid) ever ran, restarts included
            await conn.execute("DELETE FROM capigate_nodes WHERE seen_at < %s", (now_ms - _NODE_GONE_MS,))
        await _prune_keys(connect, cutoff_ms(now_ms, retention.dedupe_days), result)
        await _prune_journal(connect, cutoff_ms(now_ms, retention.journal_days), retention.journal_max_rows, result)
        if events_before > 0:  # 0: kept for ever
            await _prune_rollups(connect, events_before)
            # Read before the events go: an event held then may be delivered and pruned since,
            # but one not held then (delivered) can never be held again.
            async with connect() as conn:
                kept = {attempt_id for (attempt_id,) in await (await conn.execute(_KEPT)).fetchall()}
            await _prune_events(connect, events_before, result)
            await _prune_attempts(connect, events_before, kept)
    except _Taken:
        pass
    return result


class _Taken(Exception):
    """Another node holds the prune lock: it is pruning, so this one stops."""


@asynccontextmanager
async def _chunk(connect: Connect) -> AsyncIterator[Connection]:
    """One transaction of the prune, on a pooled connection, under the lock (``_Taken`` if
    another node holds it)."""
    async with connect() as conn, conn.transaction():
        if not await _locked(conn):
            raise _Taken
        yield conn


async def _locked(conn: Connection) -> bool:
    row = await (await conn.execute(_LOCK)).fetchone()
    return row is not None and bool(row[0])


async def _edge(conn: Connection, table: str, column: str, before: int, step: int) -> int:
    """Where the next chunk of ``table``'s rows whose ``column`` is under ``before`` ends (the
    rows under it go): ``before`` if at most ``CHUNK`` are left, else the ``CHUNK+1``-th's
    value, so that at most ``CHUNK`` go. Only if more than ``CHUNK`` share the oldest value
    do they all go at once (``step`` past it: a value's unit), or no chunk would ever end.
    ``column`` leads an index of ``table``, which reads ``CHUNK`` entries of it."""
    row = await (await conn.execute(_edge_sql(table, column), {"before": before})).fetchone()
    if row is None or row[1] is None:
        return before
    oldest, nth = row
    return int(nth) if nth > oldest else int(oldest) + step


def _edge_sql(table: str, column: str) -> str:
    return (
        f"SELECT (SELECT min({column}) FROM {table} WHERE {column} < %(before)s), "
        f"(SELECT {column} FROM {table} WHERE {column} < %(before)s ORDER BY {column} OFFSET {CHUNK} LIMIT 1)"
    )


async def _prune_keys(connect: Connect, before: int, result: PruneResult) -> None:
    """The dedupe keys seen before ``before``, oldest first."""
    while True:
        async with _chunk(connect) as conn:
            edge = await _edge(conn, "dedupe_keys", "seen_at", before, 1)
            result.dedupe_keys += (await conn.execute("DELETE FROM dedupe_keys WHERE seen_at < %s", (edge,))).rowcount
        if edge == before:
            return


async def _prune_journal(connect: Connect, before: int, max_rows: int, result: PruneResult) -> None:
    """The journal entries received before ``before``, then those over ``max_rows`` (the
    oldest ids), each chunk's transaction with the bodies and keys of the requests gone.

    The per-minute totals go with the entries by age: each transaction prunes both as the
    whole prune does at a cutoff of its own, the chunk's ``edge``, which moves on to ``before``:
    the entries received before it, the minutes ending by then. A minute whose entries are
    left keeps its totals, which the overview reads, so they go no sooner than its last entry.
    The entries over ``max_rows`` go, their minutes keep counting them (the overview's totals
    outlive the journal's size)."""
    edge, extras_done = _START, False
    while edge != before:
        async with _chunk(connect) as conn:
            edge = min(
                await _edge(conn, "requests", "received_at", before, 1),
                await _edge(conn, "request_minutes", "minute", before, MINUTE_MS),
            )
            old = await conn.execute("DELETE FROM requests WHERE received_at < %s", (edge,))
            await conn.execute("DELETE FROM request_minutes WHERE minute < %s", (edge - edge % MINUTE_MS,))
            result.requests += old.rowcount
            extras_done = await _prune_extras(conn, edge)
    last = None
    while True:
        async with _chunk(connect) as conn:
            if last is None:  # the newest entry over the limit, once: entries come in id order
                row = await (await conn.execute(_OVER, (max(0, max_rows),))).fetchone()
                last = row[0] if row is not None else _START
            over = await conn.execute(_OVER_CHUNK, {"last": last, "chunk": CHUNK})
            result.requests += over.rowcount
            extras_done = await _prune_extras(conn, before)
        if over.rowcount < CHUNK:
            break
    while not extras_done:
        async with _chunk(connect) as conn:
            extras_done = await _prune_extras(conn, before)


# The id of the newest journal entry over the limit (the limit counts the newest).
_OVER: Final = "SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET %s"
_OVER_CHUNK: Final = (
    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE id <= %(last)s ORDER BY id LIMIT %(chunk)s)"
)


async def _prune_extras(conn: Connection, before: int) -> bool:
    """A chunk of the refused bodies and request keys of the entries gone: those received
    before the oldest entry left, and before ``before`` (the entries pruned by age) if none
    is left. True if none is left."""
    row = await (await conn.execute("SELECT min(received_at) FROM requests")).fetchone()
    oldest = row[0] if row is not None else None
    bound = before if oldest is None else max(before, oldest)
    edge = min(
        await _edge(conn, "request_bodies", "received_at", bound, 1),
        await _edge(conn, "request_keys", "received_at", bound, 1),
    )
    await conn.execute("DELETE FROM request_bodies WHERE received_at < %s", (edge,))
    await conn.execute("DELETE FROM request_keys WHERE received_at < %s", (edge,))
    return edge == bound


async def _prune_rollups(connect: Connect, before: int) -> None:
    """The match-key rollups of the hours and days that ended before ``before``, a chunk of
    each table per transaction."""
    tables = (("event_quality", "hour", HOUR_MS), ("event_quality_days", "day", DAY_MS))
    done = False
    while not done:
        done = True
        async with _chunk(connect) as conn:
            for table, unit, size in tables:
                end = before - before % size
                edge = await _edge(conn, table, unit, end, size)
                await conn.execute(f"DELETE FROM {table} WHERE {unit} < %s", (edge,))
                done = done and edge == end


async def _prune_events(connect: Connect, before: int, result: PruneResult) -> None:
    start = _START
    while True:
        async with _chunk(connect) as conn:
            params = {"from": start, "before": before, "offset": CHUNK - 1}
            row = await (await conn.execute(_EVENTS, params)).fetchone()
        if row is None:
            return
        gone, edge = row
        result.events += int(gone)
        if edge is None:
            return
        start = edge + 1


async def _prune_attempts(connect: Connect, before: int, kept: set[int]) -> None:
    """Attempts by id, a chunk per transaction, up to the first one made since ``before``."""
    after = 0
    while True:
        async with _chunk(connect) as conn:
            chunk = await (
                await conn.execute("SELECT id, at FROM attempts WHERE id > %s ORDER BY id LIMIT %s", (after, CHUNK))
            ).fetchall()
            doomed = [attempt_id for attempt_id, at in chunk if at < before and attempt_id not in kept]
            if doomed:
                await conn.execute("DELETE FROM attempts WHERE id = ANY(%s)", (doomed,))
        if len(chunk) < CHUNK or any(at >= before for _, at in chunk):
            return
        after = chunk[-1][0]
