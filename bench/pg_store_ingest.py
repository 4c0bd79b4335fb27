"""Events per second through ``PostgresStore.ingest`` (and SQLite's, for comparison): batches
of 100 ~600-byte events, or single events, from many concurrent coroutines.

    .venv/bin/python -m bench.pg_store_ingest [--events 200000] [--coroutines 64] [--batch 100]
        [--writers 1] [--dedupe-ids ordered|random] [--url postgresql://postgres@127.0.0.1:5432/test]

Each PostgreSQL run uses a fresh schema, dropped afterwards. ``--dedupe-ids random``: version 4
UUIDs rather than ids numbered in order (``bench.store_ingest`` says what that changes).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import psycopg

from bench.cli import positive_int
from bench.store_ingest import make_batches
from capigate.store import NewEvent, PostgresStore, RequestRecord


def rebatch(batches: list[list[NewEvent]], size: int) -> list[list[NewEvent]]:
    flat = [e for b in batches for e in b]
    return [flat[i : i + size] for i in range(0, len(flat), size)]


async def run(store: PostgresStore, batches: list[list[NewEvent]], coroutines: int, journal: bool) -> str:
    await store.open()
    pending = iter(enumerate(batches))

    async def worker() -> None:
        for n, batch in pending:  # the workers share one iterator: each batch is taken once
            await store.ingest(batch, request_id=f"r{n}", received_at_ms=1_700_000_000_000 + n)
            if journal:
                record = RequestRecord(
                    request_id=f"r{n}", received_at=1_700_000_000_000 + n, api="axon", source="px",
                    method="POST", path="/v1/event", status=200, client_ip="203.0.113.7",
                    user_agent="bench", latency_ms=1.0, events_received=len(batch), events_stored=len(batch),
                )  # fmt: skip
                await store.record_requests([record])

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(coroutines)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await store.close()
    events = sum(len(b) for b in batches)
    stats = store.stats
    return (
        f"{events / elapsed:>10,.0f} events/s, {len(batches) / elapsed:>8,.0f} batches/s  "
        f"({events:,} events in {elapsed:.2f} s, {stats.groups:,} commits, "
        f"{stats.jobs / max(stats.groups, 1):.1f} jobs per commit, {cpu:.2f} s client CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive_int, default=200_000)
    parser.add_argument("--coroutines", type=positive_int, default=64)
    parser.add_argument("--batch", type=positive_int, default=100)
    parser.add_argument("--writers", type=positive_int, default=1)
    parser.add_argument("--journal", action="store_true", help="also journal each batch, as the gateway does")
    parser.add_argument("--dedupe-ids", choices=("ordered", "random"), default="ordered")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    random_ids = args.dedupe_ids == "random"
    batches = rebatch(make_batches(args.events, seed=uuid.uuid4().hex, random_ids=random_ids), args.batch)
    schema = f"capigate_bench_{uuid.uuid4().hex[:8]}"
    try:
        store = PostgresStore(args.url, schema=schema, writers=args.writers)
        line = asyncio.run(run(store, batches, args.coroutines, args.journal))
        print(f"batch {args.batch}, {args.coroutines} coroutines, {args.writers} writer(s): {line}")
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
