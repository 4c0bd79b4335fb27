"""Events per second through ``SQLiteStore.ingest``: batches of 100 ~600-byte events from many
concurrent coroutines, for synchronous FULL and NORMAL.

    .venv/bin/python bench/store_ingest.py [--events 300000] [--coroutines 64] [--dir DIR]

The database is created in DIR (default: a temporary directory under the current one, so the
figures reflect the disk the gateway would use, not a tmpfs); it is removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import msgspec

from capigate.store import NewEvent, SQLiteStore

BATCH = 100
PAYLOAD_BYTES = 600


def make_batches(total: int, seed: str) -> list[list[NewEvent]]:
    batches = []
    for b in range(total // BATCH):
        batch = []
        for i in range(BATCH):
            n = b * BATCH + i
            body = {
                "name": "purchase",
                "event_id": f"{seed}-{n}",
                "user_data": {"em": "a" * 64, "ph": "b" * 64, "ip": "203.0.113.7"},
                "data": {"currency": "USD", "value": n % 997, "items": []},
            }
            payload = msgspec.json.encode(body)
            payload += b" " * (PAYLOAD_BYTES - len(payload))  # pad to the target size
            batch.append(
                NewEvent(
                    api="axon",
                    source=f"pixel-{n % 8}",
                    name="purchase",
                    event_time_ms=1_700_000_000_000 + n,
                    dedupe_id=f"{seed}-{n}",
                    payload=payload,
                )
            )
        batches.append(batch)
    return batches


async def run(path: Path, synchronous: str, batches: list[list[NewEvent]], workers: int) -> None:
    store = SQLiteStore(path, synchronous=synchronous)
    await store.open()
    pending = iter(enumerate(batches))

    async def worker() -> None:
        for n, batch in pending:  # the workers share one iterator: each batch is taken once
            await store.ingest(batch, request_id=f"r{n}", received_at_ms=1_700_000_000_000 + n)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await store.close()
    events = len(batches) * BATCH
    stats = store.stats
    print(
        f"synchronous={synchronous:<6} {events / elapsed:>10,.0f} events/s  "
        f"({events:,} events in {elapsed:.2f} s, {stats.groups:,} commits, "
        f"{stats.jobs / max(stats.groups, 1):.1f} batches per commit, {cpu:.2f} s CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--coroutines", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    args = parser.parse_args()
    print(f"{BATCH} events of {PAYLOAD_BYTES} bytes per batch, {args.coroutines} coroutines")
    for synchronous in ("FULL", "NORMAL"):
        batches = make_batches(args.events, seed=synchronous)
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="capigate-bench-") as tmp:
            asyncio.run(run(Path(tmp) / "bench.db", synchronous, batches, args.coroutines))
    print(f"cpus: {os.cpu_count()}")


if __name__ == "__main__":
    main()
