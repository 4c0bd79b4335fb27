"""Events per second through ``SQLiteStore.ingest``: batches of 100 ~600-byte events from many
concurrent coroutines, for synchronous FULL and NORMAL.

    .venv/bin/python -m bench.store_ingest [--events 300000] [--coroutines 64] [--dir DIR] [--writer process]
        [--dedupe-ids ordered|random] [--slices N]
    .venv/bin/python -m bench.store_ingest --processes 2 [--rounds 2] ...

With ``--writer process`` the store runs its writer in a child process, as ``capigate serve``
does, and the line also gives the CPU per event of that process and of the sending one (the
event loop's side: encoding the batches down the pipe), from /proc.

The events' ``dedupe_id``s are ordered by default (``<run>-<n>``, as the HTTP bench's load
generator numbers them): each key lands beside the one before in the dedupe-key index.
``--dedupe-ids random`` sends version 4 UUIDs, as many clients make them (``crypto.randomUUID``):
each key then lands on its own page of that index, which the commit writes whole. ``--slices N``
prints a line for each Nth of the run, so the cost can be read as the database grows, with
its ingests' p99 and max latency (16 coroutines always waiting: a saturated store's). Random
keys go to a table of recent keys that moves into the index once it holds 100,000
(``capigate/store/sqlite/dedupe.py``): a run of fewer events never shows that flush.

The database is created in DIR (default: a temporary directory under the current one, so the
figures reflect the disk the gateway would use, not a tmpfs); it is removed afterwards.

With ``--processes N``, N processes (as ``capigate serve --workers N`` runs) each open their
own store on one file and ingest their share of the events at once, with the lock file that
queues their writers and without it (``process_lock=False``: they wait in SQLite's busy
handler), alternately, ``--rounds`` times each. It prints the throughput of all of them and
the latency of one ingest (p50, p99, max). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from bench.cli import positive_int
from bench.procstat import children_cpu_s
from capigate.store import NewEvent, SQLiteStore

BATCH = 100
PAYLOAD_BYTES = 600


def events_in_batches(text: str) -> int:
    """An --events count: whole batches of BATCH events."""
    events = positive_int(text)
    if events % BATCH:
        raise argparse.ArgumentTypeError(f"{text!r}: give a multiple of {BATCH} (the events go in batches of {BATCH})")
    return events


def add_dedupe_ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dedupe-ids",
        choices=("ordered", "random"),
        default="ordered",
        help="ordered: numbered in order, as the HTTP bench sends them; random: version 4 UUIDs, as many clients do",
    )


def in_slices(batches: list[list[NewEvent]], slices: int) -> Iterator[tuple[int, list[list[NewEvent]]]]:
    """(the first batch's index, the batches) of each of ``slices`` parts of ``batches``, in order."""
    size = -(-len(batches) // slices)
    for start in range(0, len(batches), size):
        yield start, batches[start : start + size]


def make_batches(total: int, seed: str, *, random_ids: bool = False) -> list[list[NewEvent]]:
    batches = []
    for b in range(total // BATCH):
        batch = []
        for i in range(BATCH):
            n = b * BATCH + i
            dedupe_id = str(uuid.uuid4()) if random_ids else f"{seed}-{n}"
            body = {
                "name": "purchase",
                "event_id": dedupe_id,
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
                    dedupe_id=dedupe_id,
                    payload=payload,
                )
            )
        batches.append(batch)
    return batches


async def ingest_all(store: SQLiteStore, batches: list[list[NewEvent]], workers: int) -> list[float]:
    """Ingest every batch from ``workers`` coroutines; returns each ingest's latency in seconds."""
    pending = iter(enumerate(batches))
    latencies: list[float] = []

    async def worker() -> None:
        for n, batch in pending:  # the workers share one iterator: each batch is taken once
            started = time.perf_counter()
            await store.ingest(batch, request_id=f"r{n}", received_at_ms=1_700_000_000_000 + n)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return latencies


async def run(
    path: Path, synchronous: str, batches: list[list[NewEvent]], workers: int, writer_process: bool = False,
    slices: int = 1,
) -> None:  # fmt: skip
    store = SQLiteStore(path, synchronous=synchronous, writer_process=writer_process)
    await store.open()
    for start, part in in_slices(batches, slices):
        started, cpu_started, writer_started = time.perf_counter(), time.process_time(), children_cpu_s()
        groups, jobs = store.stats.groups, store.stats.jobs
        latencies = sorted(await ingest_all(store, part, workers))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        writer_cpu = children_cpu_s() - writer_started
        groups, jobs = store.stats.groups - groups, store.stats.jobs - jobs
        events = len(part) * BATCH
        split = (
            f"; CPU an event: writer process {writer_cpu / events * 1e6:.2f} µs, sending process {cpu / events * 1e6:.2f} µs"
            if writer_process
            else ""
        )
        stored = f" [{start * BATCH + events:,} stored]" if slices > 1 else ""
        print(
            f"synchronous={synchronous:<6} {events / elapsed:>10,.0f} events/s  "
            f"({events:,} events in {elapsed:.2f} s, {groups:,} commits, "
            f"{jobs / max(groups, 1):.1f} batches per commit, {cpu:.2f} s CPU in this process{split}){stored}  "
            f"ingest p99 {latencies[max(0, math.ceil(len(latencies) * 0.99) - 1)] * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms",
            flush=True,
        )
    await store.close()


# --- several processes on one file ---------------------------------------------------------


def one_process(
    path: str, synchronous: str, lock: bool, events: int, seed: str, workers: int, random_ids: bool,
    writer_process: bool, start: Any,
) -> Any:  # fmt: skip
    """In a process of its own: (first ingest's start, last one's end, latencies, groups, jobs)."""
    batches = make_batches(events, seed, random_ids=random_ids)

    async def go() -> tuple[float, float, list[float], int, int]:
        store = SQLiteStore(path, synchronous=synchronous, process_lock=lock, writer_process=writer_process)
        await store.open()
        start.wait()  # every process has opened its store: they begin together
        began = time.monotonic()  # one clock for every process
        latencies = await ingest_all(store, batches, workers)
        ended = time.monotonic()
        await store.close()
        return began, ended, latencies, store.stats.groups, store.stats.jobs

    return asyncio.run(go())


def run_processes(args: argparse.Namespace, synchronous: str, lock: bool) -> None:
    ctx = multiprocessing.get_context("spawn")
    processes, events = args.processes, args.events
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="capigate-bench-") as tmp, ctx.Manager() as manager:
        start = manager.Event()
        path = str(Path(tmp) / "bench.db")
        options = (args.coroutines, args.dedupe_ids == "random", args.writer == "process", start)
        with ctx.Pool(processes) as pool:
            runs = [
                pool.apply_async(one_process, (path, synchronous, lock, events // processes, f"p{p}", *options))
                for p in range(processes)
            ]
            time.sleep(1.0 + 0.5 * processes)  # let every process build its batches and open its store
            start.set()
            results = [r.get() for r in runs]
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    groups, jobs = sum(r[3] for r in results), sum(r[4] for r in results)
    total = len(latencies) * BATCH
    p50, p99 = statistics.quantiles(latencies, n=100)[49], statistics.quantiles(latencies, n=100)[98]
    print(
        f"synchronous={synchronous:<6} lock={'file' if lock else 'none':<4} {total / elapsed:>10,.0f} events/s  "
        f"ingest p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:7.1f} ms  max {latencies[-1] * 1000:7.1f} ms  "
        f"({groups:,} commits, {jobs / max(groups, 1):.1f} batches per commit)"
    )


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.slices > args.events // BATCH:
        parser.error(f"--slices {args.slices}: more slices than batches ({args.events // BATCH})")
    if args.processes > 1 and args.slices > 1:
        parser.error("--slices reads one process's run; with --processes, leave it out")
    random_ids = args.dedupe_ids == "random"
    print(
        f"{BATCH} events of {PAYLOAD_BYTES} bytes per batch, {args.coroutines} coroutines per process, "
        f"dedupe ids {args.dedupe_ids}, writer {args.writer}"
    )
    for synchronous in ("FULL", "NORMAL") if args.synchronous == "both" else (args.synchronous.upper(),):
        if args.processes > 1:
            for r in range(args.rounds):  # alternating, since the machine's speed drifts
                for lock in (True, False) if r % 2 == 0 else (False, True):
                    run_processes(args, synchronous, lock)
            continue
        batches = make_batches(args.events, seed=synchronous, random_ids=random_ids)
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="capigate-bench-") as tmp:
            db = Path(tmp) / "bench.db"
            asyncio.run(run(db, synchronous, batches, args.coroutines, args.writer == "process", args.slices))
    print(f"cpus: {os.cpu_count()}, processes: {args.processes}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],  # the first paragraph, rewrapped
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=events_in_batches, default=300_000, help="events in all, a multiple of 100")
    parser.add_argument("--coroutines", type=positive_int, default=64, help="ingesting at once, per process")
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where the database is made")
    parser.add_argument("--processes", type=positive_int, default=1, help="stores on one file, a process each")
    parser.add_argument("--rounds", type=positive_int, default=2, help="with --processes: runs of each lock setting")
    parser.add_argument(
        "--writer",
        choices=("thread", "process"),
        default="thread",
        help="process: the writer in a child process, as capigate serve runs it, with its CPU an event",
    )
    add_dedupe_ids(parser)
    parser.add_argument(
        "--slices", type=positive_int, default=1, help="one process: a line for each Nth of the run, as the file grows"
    )
    parser.add_argument("--synchronous", choices=("full", "normal", "both"), default="both", help="which runs")
    return parser


if __name__ == "__main__":
    main()
