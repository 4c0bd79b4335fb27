"""GET /api/quality on a million events, on SQLite and on PostgreSQL: times, as ratios.

    .venv/bin/python -m bench.quality [--events 1000000] [--backend sqlite|postgresql|both]

Fills a fresh store through ``Store.ingest`` (so the match-key rollup is written as the gateway
writes it): a million events over seven days, in batches of 100, across six sources and six
event names, with a dozen combinations of match keys and 2 % duplicates. Then times, median
of several warm runs, what the endpoint does (``query_quality`` and ``quality_report``) over
the last 24 hours and over the whole week, against a reference measured in the same run: the
naive answer, a count of the window's events per source and name from the events table (what
a report without the rollup would have to read, before even decoding a payload). Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.cli import positive_int
from capigate.events import NewEvent
from capigate.inspector.quality import quality_report, report_window
from capigate.matchkeys import DEDUPE_BIT
from capigate.store import PostgresStore, SQLiteStore, Store

DAY_MS = 86_400_000
SOURCES = ["px_shop", "px_leads", "px_forms", "px_app", "px_web", "px_eu"]
NAMES = ["purchase", "page_view", "add_to_cart", "generate_lead", "view_item", "sign_up"]
BATCH = 100
PAYLOAD = b'{"name":"purchase","user_data":{"email":"' + b"a" * 64 + b'","esi":"web"},"data":{"value":30}}'
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def masks(rng: random.Random) -> list[int]:
    """A dozen shapes of user_data, as a handful of client integrations would send."""
    out = []
    for _ in range(12):
        mask = DEDUPE_BIT if rng.random() < 0.8 else 0
        for position in range(10):
            if rng.random() < 0.4:
                mask |= rng.choice((1, 2, 3)) << (2 * position)
        out.append(mask)
    return out


async def fill(store: Store, n: int, now_ms: int) -> float:
    rng = random.Random(11)
    shapes = masks(rng)
    start = now_ms - 7 * DAY_MS
    step = 7 * DAY_MS / (n / BATCH)
    began = time.perf_counter()
    recent: list[str] = []
    pending: list[Awaitable[Any]] = []
    for b in range(n // BATCH):
        events = []
        for _ in range(BATCH):
            if recent and rng.random() < 0.02:
                dedupe = rng.choice(recent)  # a duplicate
            else:
                dedupe = uuid.uuid4().hex
                recent = [*recent[-50:], dedupe]
            source = SOURCES[b % len(SOURCES)]
            events.append(
                NewEvent(
                    api="axon",
                    source=source,
                    name=rng.choice(NAMES),
                    event_time_ms=now_ms,
                    dedupe_id=dedupe,
                    payload=PAYLOAD,
                    match_keys=rng.choice(shapes),
                )
            )
        pending.append(store.ingest(events, request_id=f"r{b}", received_at_ms=int(start + b * step)))
        if len(pending) >= 32:  # several requests in flight, as a busy gateway has: group commits
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    return time.perf_counter() - began


async def median_ms(fn: Callable[[], Awaitable[Any]], runs: int = 7) -> float:
    await fn()  # warm
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def naive(store: Store, since: int, until: int) -> None:
    """The window's events per source and name, from the events table."""
    sql = "SELECT source, name, count(*) FROM events WHERE received_at >= {p} AND received_at < {p} GROUP BY 1, 2"
    if isinstance(store, SQLiteStore):
        await store._readers.run(lambda conn: conn.execute(sql.format(p="?"), (since, until)).fetchall())
    else:
        assert isinstance(store, PostgresStore)

        async def run(conn: Any) -> Any:
            return await (await conn.execute(sql.format(p="%s"), (since, until))).fetchall()

        await store._with_conn(run)


async def measure(store: Store, n: int) -> None:
    now = int(time.time() * 1000)
    await store.open()
    try:
        seconds = await fill(store, n, now)
        print(f"  filled {n} events in {seconds:.1f} s ({n / seconds:,.0f} events/s through Store.ingest)")
        for label, window in (("24 hours", DAY_MS), ("7 days", 7 * DAY_MS)):
            since, until = report_window(now - window, now)

            async def report(since: int = since, until: int = until) -> None:
                quality_report(await store.query_quality(None, since_ms=since, until_ms=until), since, until)

            async def events(since: int = since, until: int = until) -> None:
                await naive(store, since, until)

            q = await median_ms(report)
            e = await median_ms(events, runs=3)
            print(
                f"  {label}: /api/quality {q:.2f} ms; counting the window's events per source and name "
                f"{e:.1f} ms (the report takes {q / e:.3f} of that)"
            )
    finally:
        await store.close()


async def rollup_cost(n: int) -> None:
    """SQLite ingest of ``n`` events with the rollup, then without it (its writes made no-ops),
    alternated twice, each on a fresh file: the rollup's share of ingest."""
    from capigate.store.sqlite import inspector

    written = inspector.add_quality
    times: dict[bool, list[float]] = {True: [], False: []}
    for with_rollup in (True, False, True, False):
        inspector.add_quality = written if with_rollup else (lambda cur, counts: None)
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "ingest.db", synchronous="OFF")
            await store.open()
            try:
                times[with_rollup].append(await fill(store, n, int(time.time() * 1000)))
            finally:
                await store.close()
    inspector.add_quality = written
    on, off = min(times[True]), min(times[False])
    print(f"  ingest of {n} events: {on:.2f} s with the rollup, {off:.2f} s without ({on / off:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive_int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--ingest-events", type=positive_int, default=100_000, help="for the rollup's share of ingest (SQLite)"
    )
    args = parser.parse_args()
    if args.backend in ("sqlite", "both") and args.ingest_events:
        print("SQLite ingest, with and without the rollup")
        asyncio.run(rollup_cost(args.ingest_events))
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            print(f"SQLite ({args.events} events)")
            asyncio.run(measure(SQLiteStore(Path(tmp) / "bench.db", synchronous="OFF"), args.events))
    if args.backend in ("postgresql", "both"):
        import psycopg

        schema = f"bench_quality_{uuid.uuid4().hex[:8]}"
        print(f"PostgreSQL ({args.events} events, schema {schema})")
        try:
            asyncio.run(measure(PostgresStore(PG_URL, schema=schema), args.events))
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
