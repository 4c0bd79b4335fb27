"""The inspector's queries on a SQLite store of a million events: times and query plans.

    .venv/bin/python -m bench.inspector_queries [--events 1000000] [--keep PATH]

Fills a fresh store by direct SQL (a million events over seven days across six sources, a
journal row per event (its name kept as the store keeps it, and its per-minute totals), an outbox row for half of them with 2% dead and 1% pending), then
times each query the page makes, through the store's own methods (the median of several
runs, warm cache), and prints the plan SQLite chose for each. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from bench.cli import positive_int
from capigate.store import EventQuery, RequestQuery, SQLiteStore
from capigate.store.sqlite import events_sql, requests_sql, stats_sql

DAY_MS = 86_400_000
SOURCES = ["px_shop", "px_leads", "px_forms", "com.example.shop", "id123456789", "com.example.orders"]
NAMES = ["purchase", "page_view", "add_to_cart", "generate_lead", "af_purchase", "view_item"]
PAYLOAD = b'{"name":"purchase","user_data":{"email":"' + b"a" * 64 + b'","esi":"web"},"data":{"value":30}}'
WARNINGS = b'[{"path":"events[0].dedupe_id","code":"missing_dedupe_id","message":"no dedupe_id"}]'


def fill(path: Path, n: int, now_ms: int) -> None:
    asyncio.run(_create(path))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    rng = random.Random(7)
    step = 7 * DAY_MS / n
    start = now_ms - 7 * DAY_MS

    def events() -> Iterator[tuple[Any, ...]]:
        for i in range(n):
            at = int(start + i * step)
            source = SOURCES[i % len(SOURCES)]
            tag = "inspector" if i % 5000 == 0 else None
            yield ("axon", source, NAMES[rng.randrange(len(NAMES))], at, at, f"d{i}", "pending", tag, f"r{i}", PAYLOAD)

    conn.executemany(
        "INSERT INTO events (api, source, name, event_time, received_at, dedupe_id, status, test_tag, request_id, "
        "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        events(),
    )
    # A block per event (one per request here), as the store keeps them (schema.BLOCKS_SCHEMA).
    conn.execute(
        "INSERT INTO event_blocks (first_id, last_id, source, received_at, request_id, stored, names) "
        "SELECT id, id, source, received_at, request_id, status = 'stored', json_array(name) FROM events"
    )
    conn.execute("INSERT INTO block_names (name, first_id, last_id) SELECT name, id, id FROM events")

    def journal() -> Iterator[tuple[Any, ...]]:
        for i in range(n):
            at = int(start + i * step)
            status = 400 if i % 50 == 0 else 200
            stored = 0 if status == 400 else 1
            warnings = WARNINGS if i % 10 == 0 else b"[]"
            yield (f"r{i}", at, "axon", SOURCES[i % len(SOURCES)], "POST", "/v1/event", status, "127.0.0.1",
                   "bench/1.0", 2.5, 1, stored, 0, b"[]", warnings, None)  # fmt: skip

    conn.executemany(
        "INSERT INTO requests (request_id, received_at, api, source, method, path, status, client_ip, user_agent, "
        "latency_ms, events_received, events_stored, events_duplicate, problems, warnings, test_tag) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        journal(),
    )
    _journal_names(conn)

    # The per-minute totals that record_request keeps beside each journal row.
    conn.execute(
        "INSERT INTO request_minutes SELECT received_at - received_at % 60000 AS m, coalesce(source, ''), "
        "api AS a, count(*), sum(status >= 400), sum(events_received), "
        "sum(events_stored), sum(events_duplicate), sum(json_array_length(CAST(warnings AS TEXT))) "
        "FROM requests GROUP BY m, source, a"
    )

    def outbox() -> Iterator[tuple[Any, ...]]:
        for event_id in range(1, n + 1, 2):
            roll = rng.random()
            state = "dead" if roll < 0.02 else "pending" if roll > 0.99 else "delivered"
            at = int(start + (event_id - 1) * step)
            yield event_id, event_id, f"axon:{SOURCES[(event_id - 1) % len(SOURCES)]}", state, at, at, at

    conn.executemany(  # one run (a request's events) per event here: the most rows a store can have
        "INSERT INTO outbox (first_id, last_id, destination, state, queued_at, next_attempt_at, arrived_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        outbox(),
    )
    conn.execute("COMMIT")
    conn.close()


def _journal_names(conn: sqlite3.Connection) -> None:
    """Each entry's name, its event's, kept as the store keeps it: on the row where it has the
    column (schema 9), else as a key row; one entry in 100,000 is named ``rare_event``."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    name = "CASE WHEN e.id % 100000 = 0 THEN 'rare_event' ELSE e.name END"
    if "name" in columns:
        conn.execute(f"UPDATE requests SET name = (SELECT {name} FROM events e WHERE e.id = requests.id)")
    else:
        conn.execute(
            f"INSERT INTO request_keys (kind, value, request_id, received_at) "
            f"SELECT 'name', {name}, r.request_id, r.received_at FROM requests r JOIN events e ON e.id = r.id"
        )


async def _create(path: Path) -> None:
    store = SQLiteStore(path)
    await store.open()
    await store.close()


def plans(path: Path, now_ms: int) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    hour = now_ms - 3_600_000
    queries = [
        ("requests, first page", requests_sql(RequestQuery(limit=50))),
        ("requests, status=400", requests_sql(RequestQuery(status=400, limit=50))),
        ("requests, status=200", requests_sql(RequestQuery(status=200, limit=50))),
        ("events, source", events_sql(EventQuery(source="px_shop", limit=50))),
        ("events, test_tag", events_sql(EventQuery(test_tag="inspector", limit=50))),
        ("events, dead", events_sql(EventQuery(status="dead", limit=50))),
        ("events, last hour", events_sql(EventQuery(since_ms=hour, limit=50))),
        *[(f"stats {i}, 24 h", q) for i, q in enumerate(stats_sql(None, now_ms - DAY_MS, now_ms, DAY_MS // 60))],
    ]
    out = []
    for label, (sql, params) in queries:
        steps = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        out.append((label, steps))
    conn.close()
    return out


async def timings(path: Path, now_ms: int, runs: int) -> list[tuple[str, float]]:
    store = SQLiteStore(path)
    await store.open()
    out: list[tuple[str, float]] = []
    conn = sqlite3.connect(path)
    request_id, received_at = conn.execute(
        "SELECT request_id, received_at FROM events WHERE id = ?", (n_half,)
    ).fetchone()
    conn.close()
    one_request = (request_id, received_at)

    async def timed(label: str, call: Callable[[], Awaitable[object]]) -> None:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            await call()
            samples.append((time.perf_counter() - started) * 1000)
        out.append((label, statistics.median(samples)))

    try:
        hour = now_ms - 3_600_000
        await timed("requests: first page (50)", lambda: store.query_requests(RequestQuery(limit=50)))
        await timed("requests: source", lambda: store.query_requests(RequestQuery(source="px_shop", limit=50)))
        await timed("requests: status=400", lambda: store.query_requests(RequestQuery(status=400, limit=50)))
        await timed("requests: status=200", lambda: store.query_requests(RequestQuery(status=200, limit=50)))
        await timed("requests: status 4xx", lambda: store.query_requests(RequestQuery(status_class=4, limit=50)))
        await timed("requests: status 2xx", lambda: store.query_requests(RequestQuery(status_class=2, limit=50)))
        await timed("requests: page 100 (cursor)", lambda: store.query_requests(RequestQuery(cursor=n_half, limit=50)))
        for label, name in (("common", "purchase"), ("1 in 100,000", "rare_event"), ("none", "no_such_event")):
            query = RequestQuery(keys=[("name", name)], limit=50)
            await timed(f"requests: name, {label}", partial(store.query_requests, query))
        await timed("events: first page (50)", lambda: store.query_events(EventQuery(limit=50)))
        await timed("events: source + name", lambda: store.query_events(EventQuery(source="px_shop", name="purchase")))
        await timed("events: test_tag (1 in 5,000)", lambda: store.query_events(EventQuery(test_tag="inspector")))
        await timed("events: last hour", lambda: store.query_events(EventQuery(since_ms=hour)))
        await timed("events: name", lambda: store.query_events(EventQuery(name="purchase")))
        await timed("events: name nobody sent", lambda: store.query_events(EventQuery(name="refund")))
        await timed(
            "events: source + last hour", lambda: store.query_events(EventQuery(source="px_shop", since_ms=hour))
        )
        await timed("events: status stored", lambda: store.query_events(EventQuery(status="stored")))
        await timed("events: a request's", lambda: store.query_events(EventQuery(request=one_request)))
        await timed("events: delivery dead", lambda: store.query_events(EventQuery(status="dead")))
        await timed("events: delivery pending", lambda: store.query_events(EventQuery(status="pending")))
        await timed("events: delivered", lambda: store.query_events(EventQuery(status="delivered")))
        await timed("event detail + attempts", lambda: _detail(store, n_half))
        for label, window in (("1 h", 3_600_000), ("24 h", DAY_MS), ("7 d", 7 * DAY_MS)):
            await timed(
                f"stats {label}, all sources",
                partial(store.query_stats, None, since_ms=now_ms - window, until_ms=now_ms, bucket_ms=window // 60),
            )
            await timed(
                f"stats {label}, one source",
                partial(
                    store.query_stats, "px_shop", since_ms=now_ms - window, until_ms=now_ms, bucket_ms=window // 60
                ),
            )
        await timed("outbox depths", store.outbox_depths)
    finally:
        await store.close()
    return out


async def _detail(store: SQLiteStore, event_id: int) -> None:
    await store.query_events(EventQuery(cursor=event_id + 1, limit=1))
    await store.query_attempts(event_id)


n_half = 500_000


def main() -> None:
    global n_half
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=positive_int, default=1_000_000)
    parser.add_argument("--runs", type=positive_int, default=5)
    parser.add_argument("--keep", type=Path, help="use (or create) this database file")
    args = parser.parse_args()
    n_half = args.events // 2
    now_ms = time.time_ns() // 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench.db"
        if not path.exists():
            started = time.perf_counter()
            fill(path, args.events, now_ms)
            size_mb = path.stat().st_size / 1e6
            print(
                f"filled {args.events:,} events + journal rows in {time.perf_counter() - started:.1f} s ({size_mb:.0f} MB)"
            )
        print("\n| query | median ms |\n|---|---:|")
        for label, ms in asyncio.run(timings(path, now_ms, args.runs)):
            print(f"| {label} | {ms:.1f} |")
        print("\nquery plans:")
        for label, steps in plans(path, now_ms):
            print(f"  {label}: {steps}")


if __name__ == "__main__":
    main()
