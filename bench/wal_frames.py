"""Which B-trees a commit writes: the WAL frames of an in-process run, counted by table and index.

    .venv/bin/python -m bench.wal_frames [--workload w2-axon|w1] [--requests N] [--concurrency 64] [--out PATH]

A commit writes every page it changed into the WAL, one frame each (a 24-byte header and the
page): the writer's ``pwrite`` calls, the checksums SQLite computes and the bytes each fsync
flushes follow the frames, and a page is written whole however little of it changed. Each
table and index a request touches is at least one frame a commit; this says which of them
cost how many.

The gateway app runs as ``bench.in_process`` runs it (the bench's bodies, a real SQLite store
with ``synchronous = full``, the journal), with two differences that let the WAL file hold
every frame of the run: the writer is the thread (``[store] writer = "thread"``, so that its
connection is opened in this process) and no checkpoint runs (neither SQLite's automatic one
nor the store's checkpointer: after a checkpoint the next commit writes over the WAL's first
frames). The frames are then read from the WAL, and ``dbstat`` names the B-tree of each page.
Group sizes differ from a run with the writer process: read the figures per commit and per
request together. The run counts its warm-up too (``bench.in_process.measure`` sends
min(N, 500) requests before the N measured): ``--requests 2000`` journals 2,500. The row
``sqlite_schema`` is page 1, which holds the database's header (its size in pages): every
commit that grows the file writes it. Results: ``bench/results/wal-frames-<workload>.md`` and
``.json`` (``--out PATH``: ``PATH.md`` and ``PATH.json``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sqlite3
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvloop

from bench.bodies import write_body_sets
from bench.cli import positive_int

RESULTS = Path(__file__).resolve().parent / "results"
_WAL_HEADER = 32
_FRAME_HEADER = 24


def wal_frames(wal: Path) -> tuple[list[int], int]:
    """The page number of each frame in ``wal`` (a WAL file never checkpointed), and the
    number of commits (frames that end a transaction). Only the frames' headers are read: a
    W1 run's WAL is a quarter of a gigabyte."""
    size = wal.stat().st_size
    with wal.open("rb") as f:
        (page_size,) = struct.unpack(">I", f.read(_WAL_HEADER)[8:12])
        pages: list[int] = []
        commits = 0
        for offset in range(_WAL_HEADER, size - _FRAME_HEADER - page_size + 1, _FRAME_HEADER + page_size):
            f.seek(offset)
            page, size_after_commit = struct.unpack(">II", f.read(8))
            pages.append(page)
            commits += size_after_commit != 0
    return pages, commits


def page_owners(db: Path) -> dict[int, str]:
    """Each page's table or index, as the database (with its WAL) holds them now."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return dict(conn.execute("SELECT pageno, name FROM dbstat"))


@contextmanager
def _without_checkpoints() -> Iterator[list[sqlite3.Connection]]:
    """The store as it runs, less its checkpoints (the WAL then keeps every frame). The list
    it gives gets a connection that has read the database once the writer has opened it: as
    long as it is open, the writer's is not the last to close, which would copy the WAL back
    and delete it; close it once the WAL is read."""
    from bench.in_process import WRITER_ENV
    from capigate.store.sqlite import writer
    from capigate.store.sqlite.checkpoint import Checkpointer

    writer_names = vars(writer)  # the writer thread opens its connection with this module's connect_writer
    connect, start, stop = writer_names["connect_writer"], Checkpointer.start, Checkpointer.stop

    holders: list[sqlite3.Connection] = []

    def connect_without_checkpoints(path: Path, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(path, *args, **kwargs)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        holder = sqlite3.connect(path, check_same_thread=False)
        holder.execute("SELECT count(*) FROM sqlite_master").fetchall()  # its lock on the file stays
        holders.append(holder)
        return conn

    writer_names["connect_writer"] = connect_without_checkpoints
    Checkpointer.start = Checkpointer.stop = lambda self: None  # type: ignore[method-assign]
    writer_before = os.environ.get(WRITER_ENV)
    os.environ[WRITER_ENV] = "thread"
    try:
        yield holders
    finally:
        writer_names["connect_writer"] = connect
        Checkpointer.start, Checkpointer.stop = start, stop  # type: ignore[method-assign]
        if writer_before is None:
            del os.environ[WRITER_ENV]
        else:
            os.environ[WRITER_ENV] = writer_before


def run(workload: str, requests: int, concurrency: int) -> dict[str, Any]:
    from bench.in_process import measure, warm_up
    from bench.run import tool_version

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    command = f"python -m bench.wal_frames --workload {workload} --requests {requests} --concurrency {concurrency}"
    with tempfile.TemporaryDirectory(prefix="capigate-wal-frames-", dir=".") as tmp:
        workdir = Path(tmp)
        sets = write_body_sets(workdir / "bodies", batches=100, singles=1000, population=50_000)
        chosen = sets[workload]
        bodies = [chosen.path(i).read_bytes() for i in range(chosen.count)]
        with _without_checkpoints() as holders:
            uvloop.run(measure(workdir, bodies, requests, concurrency))
        db = workdir / "capigate.db"
        pages, commits = wal_frames(Path(f"{db}-wal"))
        owners = page_owners(db)
        for holder in holders:
            holder.close()
        with sqlite3.connect(db) as conn:
            (stored,) = conn.execute("SELECT count(*) FROM events").fetchone()
            (journaled,) = conn.execute("SELECT count(*) FROM requests").fetchone()
    by_tree = collections.Counter(owners.get(page, "(free page)") for page in pages)
    return {
        "started": started,
        "commit": tool_version(["git", "rev-parse", "--short", "HEAD"]),
        "command": command,
        "warm_up": warm_up(requests),
        "workload": workload,
        "events_per_request": chosen.events_per_request,
        "requests": journaled,
        "events": stored,
        "commits": commits,
        "frames": len(pages),
        "by_tree": dict(by_tree.most_common()),
    }


def render(result: dict[str, Any]) -> str:
    commits, frames = result["commits"], result["frames"]
    per_request = result["requests"] / commits
    lines = [
        f"# WAL frames by B-tree, {result['workload']} in-process (`python -m bench.wal_frames`)",
        "",
        f"- **date**: {result['started']}, commit {result['commit']}",
        f"- **command**: `{result['command']}`",
        f"- **run**: {result['requests']:,} requests (the first {result['warm_up']:,} the warm-up) of {result['events_per_request']} event(s), "
        f"{result['events']:,} events stored, {commits:,} commits ({per_request:.1f} requests a commit), "
        f"{frames:,} frames: **{frames / commits:.1f} a commit, {frames / result['requests']:.2f} a request**",
        "- the writer in a thread and no checkpoint, so that the WAL holds every frame (bench/wal_frames.py);"
        " `sqlite_schema` is page 1, the database's header, written by every commit that grows the file",
        "",
        "| table or index | frames a commit | share of the frames |",
        "|---|--:|--:|",
    ]
    once = 0  # the tables no request writes: created in the run's first commit, and left
    for tree, n in result["by_tree"].items():
        if n > 1:
            lines.append(f"| {tree} | {n / commits:.2f} | {100 * n / frames:.1f} % |")
        else:
            once += n
    if once:
        lines.append(f"| the {once} tables and indexes with one frame (created, then left) | {once / commits:.2f} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("w2-axon", "w1"), default="w2-axon", help="default: w2-axon")
    parser.add_argument(
        "--requests", type=positive_int, default=20_000, help="measured, after a warm-up (default: 20000)"
    )
    parser.add_argument("--concurrency", type=positive_int, default=64, help="requests at a time (default: 64)")
    parser.add_argument(
        "--out", default=None, help="writes PATH.md and PATH.json (default: bench/results/wal-frames-<workload>)"
    )
    args = parser.parse_args()
    out = Path(args.out) if args.out else RESULTS / f"wal-frames-{args.workload}"
    out.parent.mkdir(parents=True, exist_ok=True)  # before the run, not after it
    result = run(args.workload, args.requests, args.concurrency)
    Path(f"{out}.json").write_text(json.dumps(result, indent=2) + "\n")
    report = render(result)
    Path(f"{out}.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
