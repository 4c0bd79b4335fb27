"""Settles from several nodes at once on PostgreSQL: their row locks are taken in one order, so
they never deadlock, and a deadlock PostgreSQL reports anyway is retried, not lost.

The races are made deterministic with connections of the test's own that hold a run's lock
while the settles queue behind it (``pg_blocking_pids`` says when they do)."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import msgspec
import psycopg
import pytest

from capigate.store import AttemptOutcome, EventQuery, NewEvent, PostgresStore
from capigate.store.postgres.runs import CUT
from tests.storekit import PG_URL, run

T0 = 1_700_000_000_000
DEST = "http://127.0.0.1:9/upstream"

pytestmark = pytest.mark.postgresql

Holder = psycopg.AsyncConnection[tuple[object, ...]]


def event(n: int) -> NewEvent:
    return NewEvent(
        api="axon", source="px1", name="purchase", event_time_ms=T0 + n, dedupe_id=None,
        payload=msgspec.json.encode({"n": n}), destination=DEST,
    )  # fmt: skip


def outcome(event_id: int, result: Literal["delivered", "dead"], at_ms: int) -> AttemptOutcome:
    status = 200 if result == "delivered" else 400
    return AttemptOutcome(event_id=event_id, destination=DEST, at_ms=at_ms, result=result, status=status)


async def holder(schema: str) -> Holder:
    conn: Holder = await psycopg.AsyncConnection.connect(PG_URL, options=f"-c search_path={schema}")
    return conn


async def backend_pid(conn: Holder) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    assert row is not None
    return int(str(row[0]))


async def blocked_by(watcher: Holder, pids: list[int], count: int) -> list[int]:
    """Waits until ``count`` backends wait for a lock one of ``pids`` holds; returns them."""
    for _ in range(400):
        rows = await (
            await watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE pg_blocking_pids(pid) && %s::int[] ORDER BY pid", (pids,)
            )
        ).fetchall()
        if len(rows) >= count:
            return [int(str(pid)) for (pid,) in rows]
        await asyncio.sleep(0.025)
    raise AssertionError(f"fewer than {count} backends ever waited for {pids}")


async def two_runs(a: PostgresStore) -> tuple[list[int], list[int]]:
    """Two requests of ten events each (two runs), leased to node ``a``."""
    await a.ingest([event(i) for i in range(10)], request_id="r1", received_at_ms=T0)
    await a.ingest([event(i) for i in range(10, 20)], request_id="r2", received_at_ms=T0)
    leased = [d.event_id for d in await a.claim(DEST, owner="a", limit=20, now_ms=T0, lease_ms=60_000)]
    return leased[:10], leased[10:]


def test_two_settles_that_wait_for_a_cut_run_and_for_each_other_both_finish(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Node a settles the tail of run 1 and all of run 2; a cut of run 1 (a third connection)
    makes it wait, then a fourth connection's lock on run 2. Meanwhile node b settles the same
    events (a lease taken over): it sees run 1's cut-off tail at once and locks it, then waits
    for run 2. Had a locked the tail after run 2, as it found it only after, each would wait
    for the other."""

    async def scenario() -> None:
        a, b = PostgresStore(PG_URL, schema=schema), PostgresStore(PG_URL, schema=schema)
        await asyncio.gather(a.open(), b.open())
        cutter, locker, watcher = await holder(schema), await holder(schema), await holder(schema)
        try:
            run1, run2 = await two_runs(a)
            await watcher.set_autocommit(True)
            await cutter.execute("SELECT 1 FROM outbox WHERE first_id = %s FOR UPDATE", (run1[0],))
            await cutter.execute(CUT, {"first": run1[0], "at": run1[5]})
            await locker.execute("SELECT 1 FROM outbox WHERE first_id = %s FOR UPDATE", (run2[0],))
            settled = run1[5:] + run2
            by_a = asyncio.ensure_future(a.settle([outcome(i, "delivered", T0 + 1) for i in settled], owner="a"))
            await blocked_by(watcher, [await backend_pid(cutter)], 1)
            await cutter.commit()
            [settler_a] = await blocked_by(watcher, [await backend_pid(locker)], 1)
            by_b = asyncio.ensure_future(b.settle([outcome(i, "dead", T0 + 2) for i in settled], owner="b"))
            await blocked_by(watcher, [await backend_pid(locker), settler_a], 2)
            await locker.commit()
            await asyncio.wait_for(asyncio.gather(by_a, by_b), timeout=30)

            states = {e.id: e.status for e in (await a.query_events(EventQuery(limit=100)))[0]}
            assert [states[i] for i in run1] == ["pending"] * 5 + ["delivered"] * 5
            assert [states[i] for i in run2] == ["delivered"] * 10
            for i in settled:  # b's late outcome is recorded, a's moved the event
                assert sorted(t.result for t in await a.query_attempts(i)) == ["dead", "delivered"]
            [depth] = await a.outbox_depths()
            assert (depth.pending, depth.delivered, depth.dead) == (5, 15, 0)
        finally:
            for conn in (cutter, locker, watcher):
                await conn.close()
            await asyncio.gather(a.close(), b.close())

    with caplog.at_level(logging.WARNING, logger="capigate.store"):
        run(scenario())
    assert [r.getMessage() for r in caplog.records if r.name == "capigate.store"] == []  # no deadlock to retry


def test_a_settle_postgresql_picks_as_a_deadlock_victim_is_run_again(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection of the test's own locks run 2, then run 1 after the settle took it: a real
    deadlock, which the settle (the first to wait, so the first to look) is chosen to end."""

    async def scenario() -> None:
        a = PostgresStore(PG_URL, schema=schema)
        await a.open()
        rival, watcher = await holder(schema), await holder(schema)
        try:
            run1, run2 = await two_runs(a)
            await watcher.set_autocommit(True)
            await rival.execute("SET deadlock_timeout = '20s'")  # so the settle finds the deadlock
            await rival.execute("SELECT 1 FROM outbox WHERE first_id = %s FOR UPDATE", (run2[0],))
            settle = asyncio.ensure_future(a.settle([outcome(i, "delivered", T0 + 1) for i in run1 + run2], owner="a"))
            await blocked_by(watcher, [await backend_pid(rival)], 1)
            await rival.execute("SELECT 1 FROM outbox WHERE first_id = %s FOR UPDATE", (run1[0],))
            await rival.rollback()
            await asyncio.wait_for(settle, timeout=30)

            states = {e.id: e.status for e in (await a.query_events(EventQuery(limit=100)))[0]}
            assert [states[i] for i in run1 + run2] == ["delivered"] * 20
            assert [len(await a.query_attempts(i)) for i in run1 + run2] == [1] * 20
            [depth] = await a.outbox_depths()
            assert (depth.pending, depth.delivered, depth.dead) == (0, 20, 0)
        finally:
            for conn in (rival, watcher):
                await conn.close()
            await a.close()

    with caplog.at_level(logging.WARNING, logger="capigate.store"):
        run(scenario())
    [retried] = [r.getMessage() for r in caplog.records if r.name == "capigate.store"]
    assert retried.startswith("settle: deadlock detected")
