"""Events per second through ``PostgresStore.ingest``: batches of 100 ~600-byte events (or of
``--batch`` events) from many concurrent coroutines, into a fresh schema dropped afterwards.

    .venv/bin/python -m bench.pg_store_ingest [--events 200000] [--coroutines 64] [--batch 100]
        [--writers 1] [--dedupe-ids ordered|random] [--slices N] [--journal]
        [--url postgresql://postgres@127.0.0.1:5432/test]

The events are ``bench.store_ingest``'s, which says what ``--dedupe-ids random`` changes;
``--slices N`` prints a line for each Nth of the run, as the tables grow.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import psycopg

from bench.cli import positive_int
from bench.store_ingest import add_dedupe_ids, events_in_batches, in_slices, make_batches
from capigate.store import NewEvent, PostgresStore, RequestRecord


def rebatch(batches: list[list[NewEvent]], size: int) -> list[list[NewEvent]]:
    flat = [e for b in batches for e in b]
    return [flat[i : i + size] for i in range(0, len(flat), size)]


async def run(store: PostgresStore, batches: list[list[NewEvent]], args: argparse.Namespace) -> None:
    await store.open()
    try:
        for start, part in in_slices(batches, args.slices):
            line = await _ingest(store, part, start, args.coroutines, args.journal)
            stored = f" [{sum(len(b) for b in batches[: start + len(part)]):,} stored]" if args.slices > 1 else ""
            print(
                f"batch {args.batch}, {args.coroutines} coroutines, {args.writers} writer(s): {line}{stored}",
                flush=True,
            )
    finally:
        await store.close()


async def _ingest(
    store: PostgresStore, batches: list[list[NewEvent]], first: int, coroutines: int, journal: bool
) -> str:
    pending = iter(enumerate(batches, first))
    groups, jobs = store.stats.groups, store.stats.jobs

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
    events = sum(len(b) for b in batches)
    groups, jobs = store.stats.groups - groups, store.stats.jobs - jobs
    return (
        f"{events / elapsed:>10,.0f} events/s, {len(batches) / elapsed:>8,.0f} batches/s  "
        f"({events:,} events in {elapsed:.2f} s, {groups:,} commits, "
        f"{jobs / max(groups, 1):.1f} jobs per commit, {cpu:.2f} s client CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--events", type=events_in_batches, default=200_000, help="events in all, a multiple of 100")
    parser.add_argument("--coroutines", type=positive_int, default=64, help="ingesting at once")
    parser.add_argument("--batch", type=positive_int, default=100, help="events an ingest")
    parser.add_argument("--writers", type=positive_int, default=1, help="the store's writer connections")
    parser.add_argument("--journal", action="store_true", help="also journal each batch, as the gateway does")
    add_dedupe_ids(parser)
    parser.add_argument("--slices", type=positive_int, default=1, help="a line for each Nth of the run")
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test", help="the server")
    args = parser.parse_args()
    random_ids = args.dedupe_ids == "random"
    batches = rebatch(make_batches(args.events, seed=uuid.uuid4().hex, random_ids=random_ids), args.batch)
    if args.slices > len(batches):
        parser.error(f"--slices {args.slices}: more slices than batches ({len(batches)})")
    print(f"dedupe ids {args.dedupe_ids}")
    schema = f"capigate_bench_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(run(PostgresStore(args.url, schema=schema, writers=args.writers), batches, args))
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
