"""Where a request's time and CPU go over HTTP: inside the app or around it, and on which thread.

    bench/run.sh anatomy [--workload w2|w1|w1-shop] [--duration 10] [--rounds 3] [--targets capigate,ceiling-rsgi] [--ref REF]

The peer run (``bench/run.sh peer``) says how many W2 requests a second capigate answers; this
says why not more. Each target is started as the peer run starts it and driven by the same wrk
(the peer run's W2 lead-gen bodies, or its W1 batches of 100 with ``--workload w1``; 2 threads,
64 connections); rounds rotate the order. ``--workload w1-shop`` sends ``bench/run.sh``'s own W1
batches instead (purchase and page_view events with email, phone and items, ~835-byte
payloads, to a pixel of the ``standard`` profile): capigate and the empty app only. For each round:

- **client latency**: wrk's percentiles, from the request's first byte sent to the answer read;
- **in-app latency** (capigate targets): the journal's ``latency_ms`` of the requests answered in
  the round, from the moment the app took the request to its journal entry (the answer is sent
  just before), so client minus in-app is the time spent in granian, the kernel and wrk;
- **CPU per request, by thread**: user and system time of every thread of the target's process
  tree over the round (from ``/proc/PID/task/TID/stat``), divided by the requests answered: the
  worker's event loop (its main thread), its other threads (granian's runtime), capigate's
  SQLite writer process, the server process;
- **waiting for a CPU, by thread**: the time each role's threads were runnable but not running
  (``/proc/PID/task/TID/schedstat``). A thread under 100 % of a core is not what limits the
  rate unless it waits for one: on 2 cores shared with wrk, every busy thread does.

Results: ``bench/results/anatomy.md`` and ``anatomy.json`` (``anatomy-w1.*`` for W1, and so on). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import peer
from bench.bodies import write_body_sets, write_lead_gen_sets
from bench.cli import non_negative_int, positive_int
from bench.phases import LoadSettings, Workload, _wrk
from bench.procstat import CLOCK_TICKS, cpu_model, machine_busy_pct, machine_line, native_status, tree_pids
from bench.servers import REPO, stop_server

__all__ = ["main"]

PERCENTILES = (50, 90, 99)
SHOP_PATH = "/v1/event?pixel_id=px_shop"


@dataclass(frozen=True, slots=True)
class ThreadTimes:
    role: str
    user_s: float
    system_s: float
    waiting_s: float | None = None  # runnable but not running (/proc/PID/task/TID/schedstat)


def _role(pid: int, tid: int, root: int, parents: dict[int, int]) -> str:
    """What a thread is, told by where its process sits in the tree and whether it is the main thread."""
    if pid == root:
        return "server process"
    if parents.get(pid) == root:
        return "worker: event loop" if tid == pid else "worker: other threads"
    return "writer process"


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def thread_times(root: int) -> dict[tuple[int, int], ThreadTimes]:
    """Every thread of the tree under ``root``, with its CPU so far."""
    pids = tree_pids(root)
    parents = {pid: _parent(pid) for pid in pids}
    out: dict[tuple[int, int], ThreadTimes] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            tid = int(task.name)
            role = _role(pid, tid, root, parents)
            out[pid, tid] = ThreadTimes(
                role, int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS, _waiting_s(task)
            )
    return out


def _waiting_s(task: Path) -> float | None:
    """Seconds the thread has been runnable without a CPU; None where the kernel keeps no schedstat."""
    try:
        return int((task / "schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def cpu_by_role(
    before: dict[tuple[int, int], ThreadTimes], after: dict[tuple[int, int], ThreadTimes], seconds: float
) -> dict[str, dict[str, float]]:
    """Each role's user and system CPU over the window, and the time its threads were runnable
    but waited for a CPU, in % of one core (of the round's time, summed over the role's threads)."""
    shares: dict[str, dict[str, float]] = defaultdict(lambda: {"user_pct": 0.0, "system_pct": 0.0})
    for key, end in after.items():
        start = before.get(key, ThreadTimes(end.role, 0.0, 0.0, 0.0))
        shares[end.role]["user_pct"] += 100 * (end.user_s - start.user_s) / seconds
        shares[end.role]["system_pct"] += 100 * (end.system_s - start.system_s) / seconds
        if end.waiting_s is not None and start.waiting_s is not None:
            share = shares[end.role]
            share["waiting_pct"] = share.get("waiting_pct", 0.0) + 100 * (end.waiting_s - start.waiting_s) / seconds
    return {role: {k: round(v, 1) for k, v in share.items()} for role, share in sorted(shares.items())}


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    return {str(p): round(values[min(len(values) - 1, len(values) * p // 100)], 3) for p in PERCENTILES}


def in_app_latency(db: Path, since_ms: int, until_ms: int) -> dict[str, Any]:
    """The journal's latency of the 200s received in the window (the journal is written a few
    milliseconds after each answer: read once the round's load has ended)."""
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(
            "SELECT latency_ms FROM requests WHERE status = 200 AND received_at BETWEEN ? AND ?",
            (since_ms, until_ms),
        ).fetchall()
    finally:
        con.close()
    return {"requests": len(rows), "latency_ms": _percentiles([r[0] for r in rows])}


WORKLOADS: dict[str, Workload] = {
    **peer.WORKLOADS,
    "w1-shop": Workload(
        "w1-shop", "W1: 100 shop events/request (bench/run.sh's W1)", "w1-shop", SHOP_PATH, peer.HEADER, "wrk"
    ),
}


def measure(
    target: peer.Target, db: Path | None, sets: Any, seconds: int, settings: LoadSettings, workload: str = "w2"
) -> dict[str, Any]:
    work = WORKLOADS[workload]
    before = thread_times(target.proc.pid)
    since_ms, t0 = time.time_ns() // 1_000_000, time.monotonic()
    load = _wrk(target.port, work, sets[work.bodies], seconds, settings)
    elapsed = time.monotonic() - t0
    after = thread_times(target.proc.pid)
    until_ms = time.time_ns() // 1_000_000
    cpu = cpu_by_role(before, after, elapsed)
    answered = load["ok_requests"] / load["duration_s"] if load["duration_s"] else 0.0
    per_request = {
        role: round((share["user_pct"] + share["system_pct"]) * 1e4 / answered, 1) if answered else 0.0
        for role, share in cpu.items()
    }
    result = {"load": load, "cpu_pct": cpu, "cpu_us_per_request": per_request}
    if db is not None:
        time.sleep(0.5)  # the journal buffer's last flush
        result["in_app"] = in_app_latency(db, since_ms, until_ms)
    return result


def _median(rounds: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for r in rounds:
        value: Any = r
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return statistics.median(values) if values else None


def _cell(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def render(result: dict[str, Any]) -> str:
    lines = [
        f"# Anatomy of a {result['workload'].upper()} request over HTTP",
        "",
        f"- **date**: {result['started']} → {result['finished']}",
        machine_line(result),
        f"- **load**: wrk {result['threads']} threads, {result['connections']} connections, "
        f"{WORKLOADS[result['workload']].title}, "
        f"{result['duration_s']} s per target per round, {result['rounds']} rounds, order rotated; medians of the rounds",
        f"- **command**: `{result['command']}`",
        "",
        "| target | req/s | client p50 / p90 / p99 ms | in-app p50 / p90 / p99 ms | in-app share of p50 |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, rounds in result["targets"].items():
        client = [_median(rounds, "load", "latency_ms", str(p)) for p in PERCENTILES]
        inside = [_median(rounds, "in_app", "latency_ms", str(p)) for p in PERCENTILES]
        share = f"{inside[0] / client[0]:.0%}" if inside[0] is not None and client[0] else "—"
        lines.append(
            f"| {name} | {_cell(_median(rounds, 'load', 'rps'), 0)} | {' / '.join(_cell(c, 2) for c in client)} "
            f"| {' / '.join(_cell(c, 2) for c in inside)} | {share} |"
        )
    roles = sorted({role for rounds in result["targets"].values() for r in rounds for role in r["cpu_pct"]})
    lines += [
        "",
        "**CPU per answered request, by thread**: µs a request (user + system % of one core over the round).",
        "",
        "| target | " + " | ".join(roles) + " | all |",
        "|---|" + "--:|" * (len(roles) + 1),
    ]
    for name, rounds in result["targets"].items():
        cells = []
        for role in roles:
            user = _median(rounds, "cpu_pct", role, "user_pct")
            system = _median(rounds, "cpu_pct", role, "system_pct")
            us = _median(rounds, "cpu_us_per_request", role)
            cells.append("—" if us is None else f"{us:.0f} µs ({user:.0f} + {system:.0f} %)")
        total = statistics.median(sum(r["cpu_us_per_request"].values()) for r in rounds)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {total:.0f} µs |")
    lines += [
        "",
        "**Waiting for a CPU, by thread**: the time the threads of each role were runnable but waited for a CPU",
        "(% of the round, their threads summed; from /proc/PID/task/TID/schedstat).",
        "",
        "| target | " + " | ".join(roles) + " |",
        "|---|" + "--:|" * len(roles),
    ]
    for name, rounds in result["targets"].items():
        waits = [_median(rounds, "cpu_pct", role, "waiting_pct") for role in roles]
        lines.append(f"| {name} | " + " | ".join("—" if w is None else f"{w:.0f} %" for w in waits) + " |")
    lines += [
        "",
        "in-app: from the moment the app took the request to its journal entry, its answer sent just",
        "before; the rest of the client's latency is granian, the kernel and wrk. A thread well under",
        "100 % of a core does not bound the rate unless it waits for a CPU: on a machine shared with the",
        "load generator, that wait is the limit.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=tuple(WORKLOADS), default="w2")
    parser.add_argument("--targets", default="capigate,ceiling-rsgi")
    parser.add_argument("--ref", action="append", default=[], help="also run capigate@REF (a git commit)")
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--duration", type=positive_int, default=10)
    parser.add_argument("--warmup", type=non_negative_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--connections", type=positive_int, default=64)
    parser.add_argument("--out", default=None, help="results path without suffix (bench/results/anatomy[-w1])")
    args = parser.parse_args()
    names = [n for n in args.targets.split(",") if n] + [f"capigate@{r}" for r in args.ref]
    start_args = argparse.Namespace(db=None, workers=1)
    settings = LoadSettings(args.threads, args.connections, 0.0, 1)
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "bench/run.sh anatomy " + " ".join(sys.argv[1:]),
        "workload": args.workload, "rounds": args.rounds, "duration_s": args.duration, "threads": args.threads,
        "connections": args.connections, "busy_before_pct": machine_busy_pct(2.0), "cpu": cpu_model(), "native": native_status(),
    }  # fmt: skip
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="capigate-anatomy-") as tmp:
        root = Path(tmp)
        sets = write_lead_gen_sets(root / "bodies", batches=300, singles=1000, population=50_000)  # the peer run's
        if args.workload == "w1-shop":
            sets["w1-shop"] = write_body_sets(root / "shop", batches=300, singles=10, population=50_000)["w1"]
        probe = sets["w2"].path(0).read_bytes().replace(b"@@RQ@@", b"probe")
        targets: list[peer.Target] = []
        try:
            for name in names:
                targets.append(peer.start(name, start_args, root, probe))
            dbs = {
                t.name: root / t.name.replace("@", "-at-") / "capigate.db" if t.name.startswith("capigate") else None
                for t in targets
            }
            for t in targets:
                measure(t, None, sets, args.warmup, settings, args.workload)
            for r in range(args.rounds):
                for t in targets[r % len(targets) :] + targets[: r % len(targets)]:
                    figures = measure(t, dbs[t.name], sets, args.duration, settings, args.workload)
                    rounds[t.name].append(figures)
                    print(f"round {r + 1} {t.name}: {figures['load']['rps']:,.0f} req/s", file=sys.stderr)
        finally:
            for t in targets:
                stop_server(t.proc)
    result["targets"] = rounds
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    suffix = "" if args.workload == "w2" else f"-{args.workload}"
    out = Path(args.out) if args.out else REPO / "bench" / "results" / f"anatomy{suffix}"
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
