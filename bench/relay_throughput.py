"""Relay throughput: Axon events per second from a SQLite (or PostgreSQL) outbox to a local upstream.

    .venv/bin/python -m bench.relay_throughput [--events 300000] [--concurrency 4] [--dir DIR] [--pg URL]

N events (~530-byte payloads, as the gateway stores them) are pre-loaded into a fresh store
(a SQLite file, or with ``--pg URL`` a fresh PostgreSQL schema, dropped afterwards),
queued for one Axon destination; a ``RelayRunner`` then relays them, 100 per request, to the
ceiling app (bench/ceiling_app.py: reads the body, answers 200) on granian, and the run
reports events/s from the first claim to the last outcome written. In the same run it
measures the upstream's own ceiling: the relay's HTTP client (capigate/relay/http1.py) with
the same concurrency and 100-event bodies, and no store, no claim, no settle. Everything
stays on 127.0.0.1; the database is created in DIR (default: a temporary directory under the
current one, the disk the gateway would use). ``--json FILE`` keeps the figures.

    .venv/bin/python -m bench.relay_throughput --clients [--rounds 3] [--ceiling-seconds 5]

compares the relay's hand-written client (capigate/relay/http1.py) with aiohttp (a well-kept
client with a C HTTP parser; ``pip install -e '.[bench]'``) on the same upstream, bodies and
concurrency, alternating A, B, A, B … so both see the same machine: events/s, and the client
process's CPU per 100-event request, each as a ratio of aiohttp's to http1's.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from bench.cli import positive_float, positive_int
from bench.servers import HOST, free_port, start_server, stop_server
from capigate.config import RelaySettings
from capigate.relay import RelayRunner, Target
from capigate.relay.http1 import UpstreamClient
from capigate.store import NewEvent, PostgresStore, SQLiteStore, Store

PIXEL = "px_bench"
DESTINATION = f"axon:{PIXEL}"
BATCH = 100


def event(n: int) -> NewEvent:
    body = {
        "name": "purchase",
        "event_time": 1_700_000_000_000 + n,
        "event_source_url": "https://shop.example.com/checkout",
        "dedupe_id": f"bench-{n}",
        "user_data": {
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
            "esi": "web",
            "email": f"{n:064x}",
            "phone": f"{n + 1:064x}",
        },
        "data": {
            "currency": "USD",
            "value": n % 997,
            "transaction_id": f"t-{n}",
            "items": [{"item_id": "sku-1", "price": n % 997, "quantity": 1}],
        },
    }
    return NewEvent(
        api="axon",
        source=PIXEL,
        name="purchase",
        event_time_ms=1_700_000_000_000 + n,
        dedupe_id=f"bench-{n}",
        payload=msgspec.json.encode(body),
        destination=DESTINATION,
    )


async def preload(store: Store, total: int) -> int:
    size = 0
    pending = iter(range(0, total, BATCH))

    async def worker() -> None:
        nonlocal size
        for start in pending:
            batch = [event(n) for n in range(start, min(start + BATCH, total))]
            size += sum(len(e.payload) for e in batch)
            await store.ingest(batch, request_id=f"r{start}", received_at_ms=time.time_ns() // 1_000_000)

    await asyncio.gather(*(worker() for _ in range(16)))
    return size // total


async def ceiling(url: str, concurrency: int, seconds: float) -> float:
    """Events/s the upstream takes from the same client with nothing else to do."""
    body = b'{"events":[' + b",".join(event(n).payload for n in range(BATCH)) + b"]}"
    client = UpstreamClient(url, connections=concurrency)
    headers = {"authorization": "k", "content-type": "application/json"}
    sent = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal sent
        while time.perf_counter() < deadline:
            response = await client.post(f"/v1/event?pixel_id={PIXEL}", headers, body)
            if response.status != 200:
                raise SystemExit(f"the upstream answered {response.status}")
            sent += BATCH

    started = time.perf_counter()
    try:
        await asyncio.gather(*(loop() for _ in range(concurrency)))
    finally:
        await client.aclose()
    return sent / (time.perf_counter() - started)


async def aiohttp_ceiling(url: str, concurrency: int, seconds: float) -> float:
    """``ceiling`` with aiohttp's client: one session, ``concurrency`` keep-alive connections."""
    aiohttp: Any = importlib.import_module("aiohttp")  # the [bench] extra, not installed for the tests

    body = b'{"events":[' + b",".join(event(n).payload for n in range(BATCH)) + b"]}"
    headers = {"authorization": "k", "content-type": "application/json"}
    sent = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def loop() -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                async with session.post(f"{url}/v1/event?pixel_id={PIXEL}", data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise SystemExit(f"the upstream answered {response.status}")
                sent += BATCH

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return sent / (time.perf_counter() - started)


def compare_clients(url: str, concurrency: int, seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """Both clients, alternated ``rounds`` times: median events/s and CPU ms per request."""
    runs: dict[str, list[tuple[float, float]]] = {"http1": [], "aiohttp": []}
    measure = {"http1": ceiling, "aiohttp": aiohttp_ceiling}
    for _ in range(rounds):
        for name, run in measure.items():
            cpu = time.process_time()
            rate = asyncio.run(run(url, concurrency, seconds))
            cpu_ms_per_request = (time.process_time() - cpu) * 1000 / (rate * seconds / BATCH)
            runs[name].append((rate, cpu_ms_per_request))
            print(f"  {name:8} {rate:>10,.0f} events/s  {cpu_ms_per_request:.3f} ms CPU per request", flush=True)
    return {
        name: {
            "events_per_s": statistics.median(r for r, _ in figures),
            "cpu_ms_per_request": statistics.median(c for _, c in figures),
        }
        for name, figures in runs.items()
    }


async def relay(
    path: Path, url: str, total: int, concurrency: int, synchronous: str, pg_url: str | None = None
) -> dict[str, float]:
    schema = f"relay_bench_{uuid.uuid4().hex[:12]}"
    store: SQLiteStore | PostgresStore = (
        PostgresStore(pg_url, schema=schema) if pg_url else SQLiteStore(path, synchronous=synchronous)
    )
    await store.open()
    try:
        payload_bytes = await preload(store, total)
        settings = RelaySettings(url=url, batch_size=BATCH, concurrency=concurrency, timeout_s=30.0)
        target = Target(name=DESTINATION, api="axon", source=PIXEL, url=url, api_key="k", settings=settings)
        runner = RelayRunner(store, destinations=[target])
        started, cpu_started = time.perf_counter(), time.process_time()
        await runner.start()
        worker = runner.workers[DESTINATION]
        while worker.stats.delivered < total:
            await asyncio.sleep(0.005)
        await runner.stop()  # waits for the last outcomes to be written
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        (depth,) = await store.outbox_depths()
        if (depth.delivered, depth.pending, depth.dead) != (total, 0, 0):
            raise SystemExit(f"the outbox does not agree: {depth}")
        return {
            "events_per_s": total / elapsed,
            "seconds": elapsed,
            "cpu_s": cpu,
            "requests": worker.stats.requests,
            "payload_bytes": payload_bytes,
            "commits": store.stats.groups,
        }
    finally:
        await store.close()
        if pg_url:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=positive_int, default=300_000)
    parser.add_argument("--concurrency", type=positive_int, default=4, help="upstream requests in flight")
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--ceiling-seconds", type=positive_float, default=5.0)
    parser.add_argument("--dir", type=Path, default=Path.cwd())
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--pg", metavar="URL", help="relay from a fresh schema of this PostgreSQL database instead")
    parser.add_argument("--clients", action="store_true", help="compare http1.py with aiohttp, then stop")
    parser.add_argument("--rounds", type=positive_int, default=3, help="alternations of the client comparison")
    args = parser.parse_args()
    if args.clients:
        main_clients(args)
        return
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="capigate-relay-bench-") as tmp:
        port = free_port()
        upstream = start_server("ceiling", port=port, workers=1, workdir=Path(tmp))
        url = f"http://{HOST}:{port}"
        try:
            top = asyncio.run(ceiling(url, args.concurrency, args.ceiling_seconds))
            got = asyncio.run(
                relay(Path(tmp) / "relay.db", url, args.events, args.concurrency, args.synchronous, args.pg)
            )
        finally:
            stop_server(upstream)
    print(
        f"relay: {got['events_per_s']:>10,.0f} Axon events/s  ({args.events:,} events of ~{got['payload_bytes']:.0f} "
        f"bytes in {got['seconds']:.2f} s, {got['requests']:,.0f} requests of <= {BATCH}, concurrency "
        f"{args.concurrency}, {'PostgreSQL' if args.pg else f'synchronous={args.synchronous}'}, "
        f"{got['commits']:,.0f} commits, "
        f"{got['cpu_s']:.2f} s CPU in the relay process)"
    )
    print(f"upstream ceiling: {top:>10,.0f} events/s  (same client, bodies and concurrency; no store)")
    print(f"relay / ceiling: {got['events_per_s'] / top:.0%}    cpus: {os.cpu_count()}")
    if args.json:
        figures = {**got, "ceiling_events_per_s": top, "events": args.events, "concurrency": args.concurrency}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def main_clients(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="capigate-relay-bench-") as tmp:
        port = free_port()
        upstream = start_server("ceiling", port=port, workers=1, workdir=Path(tmp))
        try:
            figures = compare_clients(f"http://{HOST}:{port}", args.concurrency, args.ceiling_seconds, args.rounds)
        finally:
            stop_server(upstream)
    mine, theirs = figures["http1"], figures["aiohttp"]
    print(
        f"aiohttp / http1: {theirs['events_per_s'] / mine['events_per_s']:.2f}x the events/s, "
        f"{theirs['cpu_ms_per_request'] / mine['cpu_ms_per_request']:.2f}x the CPU per request "
        f"(medians of {args.rounds} alternated runs of {args.ceiling_seconds:g} s, concurrency {args.concurrency}, "
        f"{BATCH}-event bodies; cpus: {os.cpu_count()})"
    )
    if args.json:
        args.json.write_text(json.dumps({**figures, "rounds": args.rounds, "concurrency": args.concurrency}, indent=2))


if __name__ == "__main__":
    main()
