"""What pruning old dedupe keys costs the SQLite writer, job by job, here and at another commit.

    .venv/bin/python -m bench.prune_keys [--events 200000] [--ref REV ...]

Each tree stores ``--events`` events with a dedupe id (half random, half numbered in order;
1,000 a request, a minute apart) in a SQLite file of its own, then times each job of
``prune_keys`` up to a cutoff past all of them, on a writer connection (``synchronous =
NORMAL``), each job in its own transaction as the writer runs it: the first job's (which moves
the random keys' recent table into the index), the median and the longest of the others, and
all of them. Before schema 12 a job deleted a chunk of keys through their time index; since,
it walks a chunk of events and deletes their keys (capigate/store/sqlite/prune.py). Nothing is
asserted; the figures depend on the machine, so compare trees measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.cli import positive_int
from bench.refs import archive, ref_env

T0 = 1_700_000_000_000
_PER_REQUEST = 1000


def _child(path: Path, events: int) -> dict[str, Any]:
    """Run in the tree measured: store ``events``, then prune their keys job by job."""
    from capigate.store import NewEvent, SQLiteStore
    from capigate.store.sqlite import prune
    from capigate.store.sqlite.schema import connect_writer

    store = SQLiteStore(path)
    asyncio.run(store.open())
    for first in range(0, events, _PER_REQUEST):
        batch = [
            NewEvent(
                api="axon", source="px1", name="purchase", event_time_ms=T0, payload=b'{"name":"purchase"}',
                dedupe_id=uuid.uuid4().hex if n % 2 else f"seq-{n:09d}",
            )
            for n in range(first, min(first + _PER_REQUEST, events))
        ]  # fmt: skip
        asyncio.run(store.ingest(batch, request_id=f"r{first}", received_at_ms=T0 + first // _PER_REQUEST * 60_000))
    asyncio.run(store.close())
    conn = connect_writer(path, "NORMAL", 5_000)
    cur, jobs, deleted, done = conn.cursor(), [], 0, False
    before = T0 + (events // _PER_REQUEST + 1) * 60_000
    while not done:
        started = time.perf_counter()
        cur.execute("BEGIN IMMEDIATE")
        count, done = prune.prune_keys(cur, before)
        cur.execute("COMMIT")
        jobs.append((time.perf_counter() - started) * 1000)
        deleted += count
    conn.close()
    rest = jobs[1:] or jobs
    return {
        "keys": deleted, "jobs": len(jobs), "first_ms": jobs[0], "median_ms": statistics.median(rest),
        "max_ms": max(rest), "total_ms": sum(jobs),
    }  # fmt: skip


def _measure(env: dict[str, str], cwd: Path, events: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="capigate-prune-keys-") as tmp:
        command = [sys.executable, "-m", "bench.prune_keys", "--child", str(Path(tmp) / "p.db"), str(events)]
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=positive_int, default=200_000, help="events with a dedupe id per tree")
    parser.add_argument("--ref", action="append", default=[], help="also measure the tree of this git commit")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "EVENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(Path(args.child[0]), int(args.child[1]))))
        return
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="capigate-prune-keys-refs-") as tmp:
        trees = {"this tree": ({**os.environ, "PYTHONPATH": str(repo)}, repo)}
        for ref in args.ref:
            tree = archive(ref, Path(tmp))
            trees[ref] = (ref_env(tree, with_repo=True), tree)
        print("| tree | keys | jobs | first job ms | median job ms | longest job ms | all jobs ms |")
        print("|---|--:|--:|--:|--:|--:|--:|")
        for name, (env, cwd) in trees.items():
            r = _measure(env, cwd, args.events)
            print(
                f"| {name} | {r['keys']:,} | {r['jobs']} | {r['first_ms']:.1f} | {r['median_ms']:.1f} "
                f"| {r['max_ms']:.1f} | {r['total_ms']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
