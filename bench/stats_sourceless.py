"""The inspector overview's stats query on a journal holding many requests that name no source.

    .venv/bin/python -m bench.stats_sourceless [--requests 1000000] [--sourceless 100000] [--pg URL]

Fills a fresh store through its own ``record_requests`` (so with whatever per-minute totals
this capigate keeps) with ``--requests`` journal entries over seven days, ``--sourceless`` of
them naming no source (Axon and AppsFlyer calls without their id, logins, unknown paths,
spread evenly), then times ``query_stats`` as the overview calls it for the last 1 h, 24 h and
7 d (bucket: the window / 60; the median of several runs, warm cache). Run it with
``--sourceless 0`` too: the difference is what the sourceless requests add. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bench.cli import non_negative_int, positive_int
from capigate.store import PostgresStore, RequestRecord, SQLiteStore, Store

DAY_MS = 86_400_000
SOURCES = ["px_shop", "px_leads", "px_forms", "com.example.shop", "id123456789", "com.example.orders"]
SOURCELESS = [("axon", "/v1/event"), ("appsflyer", "/inappevent/"), ("inspector", "/login"), ("unknown", "/x")]
CHUNK = 5_000


def records(n: int, sourceless: int, now_ms: int) -> list[RequestRecord]:
    start, step = now_ms - 7 * DAY_MS, 7 * DAY_MS / n
    every = n // sourceless if sourceless else 0
    out = []
    for i in range(n):
        if every and i % every == 0 and i // every < sourceless:
            api, path = SOURCELESS[(i // every) % len(SOURCELESS)]
            source = None
        else:
            api, path, source = "axon", "/v1/event", SOURCES[i % len(SOURCES)]
        out.append(
            RequestRecord(
                request_id=f"r{i}",
                received_at=int(start + i * step),
                api=api,
                source=source,
                method="POST",
                path=path,
                status=200 if source else 400,
                client_ip="127.0.0.1",
                user_agent="bench/1.0",
                latency_ms=1.0,
                events_received=1 if source else 0,
                events_stored=1 if source else 0,
                events_duplicate=0,
            )
        )
    return out


async def measure(store: Store, n: int, sourceless: int, runs: int) -> list[tuple[str, float]]:
    now_ms = time.time_ns() // 1_000_000
    await store.open()
    try:
        all_records = records(n, sourceless, now_ms)
        started = time.perf_counter()
        for at in range(0, n, CHUNK):
            await store.record_requests(all_records[at : at + CHUNK])
        print(f"filled {n:,} requests ({sourceless:,} naming no source) in {time.perf_counter() - started:.1f} s")
        out = []
        for label, window in (("1 h", 3_600_000), ("24 h", DAY_MS), ("7 d", 7 * DAY_MS)):
            samples = []
            for _ in range(runs):
                began = time.perf_counter()
                await store.query_stats(None, since_ms=now_ms - window, until_ms=now_ms, bucket_ms=window // 60)
                samples.append((time.perf_counter() - began) * 1000)
            out.append((f"stats, {label}", statistics.median(samples)))
        return out
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=positive_int, default=1_000_000)
    parser.add_argument("--sourceless", type=non_negative_int, default=100_000)
    parser.add_argument("--runs", type=positive_int, default=7)
    parser.add_argument("--pg", metavar="URL", help="a PostgreSQL URL (a fresh schema): measure there, not on SQLite")
    args = parser.parse_args()
    schema = f"stats_bench_{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory() as tmp:
        store: Store = PostgresStore(args.pg, schema=schema) if args.pg else SQLiteStore(Path(tmp) / "bench.db")
        try:
            for label, ms in asyncio.run(measure(store, args.requests, args.sourceless, args.runs)):
                print(f"{label:<16} {ms:8.1f} ms")
        finally:
            if args.pg:
                with psycopg.connect(args.pg, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
