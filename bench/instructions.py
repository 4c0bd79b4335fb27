"""The in-process limits of issue 16 counted in instructions, not seconds (valgrind's callgrind).

    .venv/bin/python -m bench.instructions [--ref REV ...] [--batches N] [--singles N]

A count of instructions is the same whatever else the machine is doing (two runs agree
within about 1 %), where the CPU seconds of ``bench.in_process --ratios`` swing with the load
of a shared 2-core machine: this is the A/B to trust for a small change. Each figure is the
difference between two runs of a child process under ``valgrind --tool=callgrind``, one doing
the work and one doing none of it, so interpreter start-up, imports and set-up cancel out.
Every thread of the child counts (the SQLite writer's included), in user space only: the
kernel's part of a commit (write, fsync) and waits are not instructions, so the CPU-time
ratios of ``bench.in_process --ratios`` stay the measure of the targets. Measured, on the bench's W1
``purchase`` batches (plain email and phone, 1-3 items) and W2 bodies (bench/ratios.py):

- ``typed decode``: ``msgspec.json.decode`` into the wire Structs (``AxonBatch``), the limit;
- ``decode + rules``: ``check_body``, the typed path with its rules and hashing;
- ``decode + rules lead-gen``: the same on the peer run's W1 bodies (100 lead-gen events a
  batch, the ``lead_gen`` profile), what one worker's event loop spends most of a W1 request on;
- ``whole app W1``: the gateway app in-process (``bench.in_process.measure``: rules, SQLite
  store with ``synchronous = full``, journal, response), per event;
- ``whole app W2``: the same, one event per request, per request;
- ``request path W2``: of that run, only what the event loop runs inside the app's
  ``__call__`` (the request's own path: reading it, the handler, the rules, the journal
  entry, the answer; not the writer's commits nor the loop's polling), counted with
  callgrind's ``--toggle-collect``. The whole-app counts move by up to 5 % between runs of one
  tree (how many requests a group commit takes depends on the threads' timing, even under
  valgrind); this one does not. It needs the app compiled (``capigate native build``): a tree
  run as Python gives none;
- ``request path W2 RSGI``: the same, but the requests enter by the app's ``__rsgi__``, as
  granian (``capigate serve``) calls it, with a stand-in for granian's protocol object
  (``bench.in_process.RsgiExchange``): ASGI's reading of the body and sending of the answer
  are not what a served gateway runs;
- ``writer W2``: the SQLite writer's group transactions of W2 requests, the writer's half
  of a request (``whole app W2`` counts both halves, its groups as the threads' timing makes
  them): their ingests 16 to a group, their journal entries 128 to a flush, each group
  committed by the compiled ``writer._transact`` (counted with ``--toggle-collect``; a tree run
  as Python gives none), with SQLite set up as in the writer process. Two counts of one build
  agree exactly;
- ``writer W1 lead-gen``: the same for the peer run's W1 bodies (100 lead-gen events a batch,
  the ``lead_gen`` profile), ten batches to a group, per event.

``--ref`` counts the tree of a git commit too (its ``capigate`` package, with this tree's
bench). Results: ``bench/results/instructions.md`` and ``.json``. Needs valgrind.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from bench.cli import positive_int
from bench.refs import archive, ref_env

RESULTS = Path(__file__).resolve().parent / "results" / "instructions"
REPO = Path(__file__).resolve().parent.parent
_COLLECTED = re.compile(rb"Collected : ([0-9]+)")
# kind -> (what it counts per, the bodies it reads)
KINDS: dict[str, tuple[str, str]] = {
    "typed decode": ("event", "purchases"),
    "decode + rules": ("event", "purchases"),
    "decode + rules lead-gen": ("event", "lead-w1"),
    "whole app W1": ("event", "purchases"),
    "whole app W2": ("request", "w2"),
    "request path W2": ("request", "w2"),
    "request path W2 RSGI": ("request", "w2"),
    "writer W2": ("request", "w2"),
    "writer W1 lead-gen": ("event", "lead-w1"),
}
# The compiled GatewayApp.__call__'s body (mypyc names a coroutine's body so): entered again
# at each resumption, so the count holds no other request's work done while it awaits.
_REQUEST_PATH = "*app_____call___3_GatewayApp_gen_____mypyc_generator_helper__"
_RSGI_REQUEST_PATH = "*app_____rsgi___3_GatewayApp_gen_____mypyc_generator_helper__"  # __rsgi__'s
# The compiled SQLite writer's group transaction: BEGIN, the group's jobs, COMMIT.
_WRITER_GROUP = "CPyDef_writer____transact"
# ``writer W2``'s groups: ingests a group commit takes (the writer's thread of ``whole app W2``
# counted as much a request as groups of 16 do), and journal entries a flush writes.
_GROUP_INGESTS = 16
_JOURNAL_FLUSH = 128
# ``writer W1 lead-gen``'s groups: the peer run's 100-event lead-gen batches, ten to a group
# (writer._MAX_GROUP_EVENTS), their journal entries flushed after each group.
_GROUP_BATCHES = 10


def _child(kind: str, count: int, bodies_dir: Path) -> None:
    """Does ``kind``'s work on ``count`` bodies (0: only the set-up)."""
    import msgspec
    import uvloop

    bodies = [p.read_bytes() for p in sorted((bodies_dir / KINDS[kind][1]).iterdir())]
    if not kind.startswith(("whole app", "request path", "writer")):  # these make each id unique
        bodies = [body.replace(b"@@RQ@@", b"r") for body in bodies]  # an "@" would go the slow path
    warm = _WARM_UP[KINDS[kind][0]]
    # Both runs warm up alike (caches, phonenumbers' metadata, first pages), so that only
    # the steady work of ``count`` bodies makes the difference; nothing is stored here:
    # ids may repeat.
    cycled = [bodies[n % len(bodies)] for n in range(warm + count)]
    if kind == "typed decode":
        from capigate.axon.schema import AxonBatch

        decode: Callable[[bytes], object] = msgspec.json.Decoder(AxonBatch).decode
        for body in cycled:
            decode(body)
    elif kind == "writer W2":
        _write_groups(bodies, warm, count)
    elif kind == "writer W1 lead-gen":
        _write_groups(bodies, warm, count, "lead_gen", per_group=_GROUP_BATCHES, per_flush=_GROUP_BATCHES)
    elif kind.startswith("decode + rules"):
        from bench.ratios import _checker

        check = _checker("lead_gen" if kind.endswith("lead-gen") else "standard")
        for n, body in enumerate(cycled):
            check(body, n)
    else:
        with tempfile.TemporaryDirectory(prefix="capigate-instructions-") as tmp:
            concurrency = 16 if kind == "whole app W1" else 64
            uvloop.run(_serve(Path(tmp), bodies, warm, count, concurrency, kind.endswith("RSGI")))


_WARM_UP = {"event": 20, "request": 300}  # bodies: batches of 100 events, or single-event requests


async def _serve(
    workdir: Path, bodies: list[bytes], warm: int, requests: int, concurrency: int, rsgi: bool = False
) -> None:
    """bench.in_process.measure's run, untimed: start-up, warm-up, ``requests``, shut-down."""
    from bench.in_process import _drive, worker_app

    app = worker_app(workdir, "thread")  # callgrind counts one process: the same writes, counted in it
    await app.startup()
    try:
        await _drive(app, bodies, warm, concurrency, rsgi=rsgi)
        await _drive(app, bodies, requests, concurrency, first=warm, rsgi=rsgi)
    finally:
        await app.shutdown()


def _write_groups(
    bodies: list[bytes],
    warm: int,
    count: int,
    profile: str = "standard",
    per_group: int = _GROUP_INGESTS,
    per_flush: int = _JOURNAL_FLUSH,
) -> None:
    """The SQLite writer's group transactions for ``warm + count`` requests (W2, or the peer
    run's W1 lead-gen batches with ``profile="lead_gen"``): ingests in groups of ``per_group``,
    their journal entries in flushes of ``per_flush``, each group committed as the writer commits it
    (``writer._transact``), SQLite set up as in the writer process. Fixed groups, where the
    whole app's depend on the threads' timing; the events and entries are made before."""
    from bench.ratios import _checker
    from capigate.kept import note_accepted
    from capigate.store.base import JournalRecord, WriterStats
    from capigate.store.sqlite.ingest import Batch
    from capigate.store.sqlite.jobs import IngestJob, RecordJob
    from capigate.store.sqlite.writer import QueuedJob, _transact, open_writer

    try:  # as the writer process does first, in a tree that does (memstatus.py)
        from capigate.store.sqlite.memstatus import without_memory_statistics
    except ImportError:
        pass
    else:
        without_memory_statistics()
    check, received_at = _checker(profile), time.time_ns() // 1_000_000
    ingests: list[QueuedJob] = []
    records: list[JournalRecord] = []
    for n in range(warm + count):
        events = check(bodies[n % len(bodies)].replace(b"@@RQ@@", b"w%d" % n), n).events  # type: ignore[attr-defined]
        batch = Batch(events, f"{received_at:x}{n:012x}", received_at)
        ingests.append(QueuedJob(IngestJob(batch), None, None, batch))  # type: ignore[arg-type]
        records.append(_journal_entry(batch, note_accepted(None, events, set(), dedupe_ids=False)))
    groups = [ingests[i : i + per_group] for i in range(0, len(ingests), per_group)]
    flushes = [records[i : i + per_flush] for i in range(0, len(records), per_flush)]
    # The requests made beforehand out of every collection: a full one walked them all, inside
    # the count or not as the allocations fell (9,000 a request of a change of 2,000), where the
    # writer holds only the group it commits.
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory(prefix="capigate-instructions-") as tmp:
        _lock, conn, opened = open_writer(Path(tmp) / "capigate.db", "FULL", 5_000, False)
        cur, stats = conn.cursor(), WriterStats()
        for n, group in enumerate(groups):
            _transact(cur, opened, stats, group[0], _drain_of(group))
            if (n + 1) % (per_flush // per_group) == 0 or n == len(groups) - 1:
                flush = flushes.pop(0) if flushes else []
                job = QueuedJob(RecordJob(flush), None, None, None)  # type: ignore[arg-type]
                _transact(cur, opened, stats, job, _drain_of([job]))
        conn.close()


def _drain_of(jobs: list[Any]) -> Callable[[Any], tuple[list[Any], bool]]:
    """What the writer's drain gives: ``jobs``, the whole group, and no stop."""
    return lambda first: (jobs, False)


def _journal_entry(batch: Any, keys: list[tuple[str, str]]) -> Any:
    from capigate.store.base import JournalRecord

    return JournalRecord(
        request_id=batch.request_id, received_at=batch.received_at_ms, api="axon", source="px_bench",
        method="POST", path="/v1/event", status=200, client_ip="127.0.0.1", user_agent="capigate-bench",
        latency_ms=1.25, events_received=1, events_stored=1, events_duplicate=0, problems=[], warnings=[],
        keys=keys,
    )  # fmt: skip


def _units(kind: str, count: int) -> int:
    return count * (100 if KINDS[kind][0] == "event" else 1)


def _count(kind: str, count: int, bodies_dir: Path, tree: Tree) -> int:
    """Instructions of a child doing ``kind`` on ``count`` bodies; it runs in the tree counted
    (``python -m`` puts its working directory first on the path)."""
    path = {
        "request path W2": _REQUEST_PATH, "request path W2 RSGI": _RSGI_REQUEST_PATH, "writer W2": _WRITER_GROUP,
        "writer W1 lead-gen": _WRITER_GROUP,
    }.get(kind)  # fmt: skip
    only = [f"--toggle-collect={path}"] if path else []
    command = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *only,
        sys.executable, "-m", "bench.instructions", "--child", kind, str(count), str(bodies_dir),
    ]  # fmt: skip
    env = {**tree.env, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, env=env, cwd=tree.cwd, capture_output=True, timeout=3600)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{kind} under callgrind failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return int(found.group(1))


def per_unit(kind: str, count: int, bodies_dir: Path, tree: Tree) -> float:
    """Instructions per event or request of ``kind``: a run of ``count`` bodies less a run of none."""
    idle = _count(kind, 0, bodies_dir, tree)
    busy = _count(kind, count, bodies_dir, tree)
    return (busy - idle) / _units(kind, count)


def write_bodies(directory: Path) -> None:
    from bench.bodies import write_body_sets, write_lead_gen_sets
    from bench.ratios import _purchase_batches

    sets = write_body_sets(directory / "sets", batches=300, singles=1000, population=50_000)
    lead = write_lead_gen_sets(directory / "lead-sets", batches=60, singles=1, population=50_000)
    w1 = [sets["w1"].path(i).read_bytes() for i in range(sets["w1"].count)]
    for name, bodies in (
        ("purchases", _purchase_batches(w1, 100)),
        ("w2", [sets["w2-axon"].path(i).read_bytes() for i in range(sets["w2-axon"].count)]),
        ("lead-w1", [lead["w1"].path(i).read_bytes() for i in range(lead["w1"].count)]),
    ):
        (directory / name).mkdir()
        for i, body in enumerate(bodies):
            (directory / name / f"{i:05d}.json").write_bytes(body)


class Tree(NamedTuple):
    """A tree counted: where its child runs, with what environment."""

    cwd: Path
    env: dict[str, str]


def _ref_tree(ref: str, root: Path) -> Tree:
    tree = archive(ref, root)  # compiled as this tree runs (bench/refs.py)
    return Tree(tree, ref_env(tree, with_repo=True))


def run(refs: list[str], batches: int, singles: int, kinds: list[str], repeat: bool = False) -> dict[str, Any]:
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt-get install valgrind)")
    counts = {kind: singles if KINDS[kind][0] == "request" else batches for kind in kinds}
    out: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "trees": {}}
    with tempfile.TemporaryDirectory(prefix="capigate-instructions-") as tmp:
        write_bodies(Path(tmp))
        this = Tree(REPO, {**os.environ, "PYTHONPATH": str(REPO)})
        trees = {"this tree": this} | {f"{ref}": _ref_tree(ref, Path(tmp)) for ref in refs}
        if repeat:  # how far two counts of the same tree differ
            trees["this tree, again"] = this
        for name, tree in trees.items():
            figures = {kind: per_unit(kind, count, Path(tmp), tree) for kind, count in counts.items()}
            out["trees"][name] = figures
            print(f"{name}: " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items()), flush=True)
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return out


def _figure(count: float) -> str:
    """A count, or what a count of nothing means: ``request path W2`` of a tree run as Python."""
    return f"{count:,.0f}" if count else "none (not compiled)"


def render(result: dict[str, Any]) -> str:
    trees: dict[str, dict[str, float]] = result["trees"]
    names = list(trees)
    lines = [
        "# In-process limits in instructions (`python -m bench.instructions`, valgrind callgrind)",
        "",
        f"- **date**: {result['started']} → {result['finished']}",
        "- each figure: instructions of a child process doing the work, less one doing none, per unit",
        "",
        "| measure | per | " + " | ".join(names) + " | " + " | ".join(f"{n}, x typed decode" for n in names) + " |",
        "|---|---|" + "--:|" * (2 * len(names)),
    ]
    measured = [kind for kind in KINDS if kind in trees[names[0]]]
    for kind in measured:
        unit = KINDS[kind][0]
        counts = " | ".join(_figure(trees[n][kind]) for n in names)
        ratios = " | ".join(
            f"{trees[n][kind] / trees[n]['typed decode']:.1f}x"
            if unit == "event" and "typed decode" in trees[n]
            else ""
            for n in names
        )
        lines.append(f"| {kind} | {unit} | {counts} | {ratios} |")
    base = names[0]
    for other in names[1:]:
        lines.append("")
        lines.append(
            f"{base} against {other}: "
            + ", ".join(
                f"{kind} {trees[base][kind] / trees[other][kind]:.3f}x" for kind in measured if trees[other][kind]
            )
            + " (below 1: fewer instructions)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", action="append", default=[], help="also count the tree of this git commit")
    parser.add_argument("--batches", type=positive_int, default=60, help="W1 purchase batches of 100 events per run")
    parser.add_argument("--singles", type=positive_int, default=2000, help="W2 requests per run")
    parser.add_argument("--kinds", default=",".join(KINDS), help="what to count, comma-separated")
    parser.add_argument("--repeat", action="store_true", help="count this tree twice (how far counts differ)")
    parser.add_argument("--out", default=None, help="results path without suffix")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "COUNT", "BODIES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), Path(args.child[2]))
        return
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown --kinds {unknown}; choose from {list(KINDS)}")
    result = run(args.ref, args.batches, args.singles, kinds, args.repeat)
    out = Path(args.out) if args.out else RESULTS
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
