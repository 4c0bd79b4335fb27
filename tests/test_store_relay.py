"""The outbox under a real relay, on both backends: a ``RelayRunner`` on the store, sending to
a local upstream (tests/upstream.py) that refuses any Axon batch holding a bad event."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator

import msgspec
import psycopg

from capigate.config import RelaySettings
from capigate.relay import RelayRunner, Target
from capigate.store import EventQuery, NewEvent, PostgresStore, SQLiteStore, Store
from tests.storekit import PG_URL, run
from tests.upstream import Reply, Seen, Upstream

BATCHES, BATCH_SIZE = 30, 10


def axon_event(n: int) -> NewEvent:
    body = {
        "name": "page_view",
        "event_time": 1_700_000_000_000 + n,
        "event_source_url": "https://shop.example.com/",
        "dedupe_id": f"e{n}",
        "user_data": {"client_ip_address": "203.0.113.7", "client_user_agent": "UA", "esi": "web", "client_id": "c"},
    }
    return NewEvent(
        api="axon",
        source="px1",
        name="page_view",
        event_time_ms=1_700_000_000_000 + n,
        dedupe_id=f"e{n}",
        payload=msgspec.json.encode(body),
        destination="axon:px1",
    )


def refuse_bad(seen: Seen) -> Reply | None:
    """400 naming the position of each bad event (every tenth), as the real API does."""
    positions = [i for i, e in enumerate(seen.events) if int(e["dedupe_id"][1:]) % BATCH_SIZE == 7]
    if not positions:
        return None
    problems = [{"path": f"events[{i}].user_data", "code": "invalid", "message": "no"} for i in positions]
    return Reply(400, json.dumps({"error": "invalid_batch", "problems": problems}).encode())


@contextlib.contextmanager
def a_busy_neighbour(store: Store, held_s: float = 0.15, free_s: float = 0.1) -> Iterator[None]:
    """Another writer on the same database (another node's prune, a migration) that takes the
    attempts table for ``held_s`` every ``held_s + free_s``: settles queue behind it, so that
    one settle carries outcomes that would otherwise have gone one by one."""
    stop = threading.Event()

    def hold() -> None:
        while not stop.wait(free_s):
            if isinstance(store, SQLiteStore):
                with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as conn:
                    conn.execute("BEGIN IMMEDIATE")
                    stop.wait(held_s)
                    conn.execute("ROLLBACK")
            else:
                assert isinstance(store, PostgresStore)
                with psycopg.connect(PG_URL, options=f"-c search_path={store.schema}") as conn:
                    conn.execute("LOCK TABLE attempts IN EXCLUSIVE MODE")
                    stop.wait(held_s)
                    conn.rollback()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_after_a_split_batch_each_good_event_is_delivered_once_and_each_bad_one_dead_once(store: Store) -> None:
    """Rule: one settle may carry a "split" and the final outcome of the same event; the final
    one (the last) decides the event's state, on every backend."""
    settings = msgspec.convert(
        {
            "batch_size": BATCH_SIZE,
            "concurrency": 16,
            "timeout_s": 2.0,
            "backoff_base_s": 0.05,
            "poll_interval_s": 0.05,
        },
        RelaySettings,
    )
    with Upstream() as up:
        up.script = refuse_bad
        destination = Target(name="axon:px1", api="axon", source="px1", url=up.url, api_key="k", settings=settings)

        async def relay_backlog() -> None:
            events = [axon_event(n) for n in range(BATCHES * BATCH_SIZE)]
            for start in range(0, len(events), BATCH_SIZE):
                await store.ingest(
                    events[start : start + BATCH_SIZE], request_id=f"r{start}", received_at_ms=time.time_ns() // 10**6
                )
            with a_busy_neighbour(store):
                async with RelayRunner(store, destinations=[destination]):
                    # An event left pending by mistake is sent again once its lease (2 x timeout_s
                    # + 5 s) ends: waiting for none pending waits for those repeats too.
                    deadline = time.monotonic() + 40
                    while (await store.outbox_depths())[0].pending and time.monotonic() < deadline:
                        await asyncio.sleep(0.1)

        run(relay_backlog())
        delivered = collections.Counter(up.dedupe_ids(answered_with=200))
        refused = collections.Counter(up.dedupe_ids(answered_with=400))

    good = {f"e{n}" for n in range(BATCHES * BATCH_SIZE) if n % BATCH_SIZE != 7}
    bad = {f"e{n}" for n in range(BATCHES * BATCH_SIZE) if n % BATCH_SIZE == 7}
    assert set(delivered) == good
    repeated = {dedupe_id: n for dedupe_id, n in delivered.items() if n > 1}
    assert repeated == {}, f"{len(repeated)} good events delivered more than once"
    assert set(refused) >= bad
    (depth,) = run(store.outbox_depths())
    assert (depth.pending, depth.delivered, depth.dead) == (0, len(good), len(bad))
    dead, _ = run(store.query_events(EventQuery(status="dead", limit=100)))
    assert {e.dedupe_id for e in dead} == bad
    for event in dead:
        results = [a.result for a in run(store.query_attempts(event.id))]
        assert results.count("dead") == 1 and results[-1] == "dead"
    delivered_events, _ = run(store.query_events(EventQuery(status="delivered", limit=1000)))
    for event in delivered_events:
        results = [a.result for a in run(store.query_attempts(event.id))]
        assert results.count("delivered") == 1 and results[-1] == "delivered", (event.dedupe_id, results)
