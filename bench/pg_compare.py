"""W1 and W2 on SQLite (one gateway) and on PostgreSQL (one and two gateways on one database),
in one run, with the same bodies and load generator as bench/run.py; writes bench/results/pg.md.

    .venv/bin/python -m bench.pg_compare [--duration 15] [--workloads w1,w2-axon]
        [--url postgresql://postgres@127.0.0.1:5432/test]

Two gateways are two `capigate serve` processes on their own ports, each driven by its own
wrk with half the connections, at the same time; their figures are summed (latencies: the
worse of the two). Each PostgreSQL phase uses a fresh schema, dropped afterwards; beside the
HTTP figures it reports the PostgreSQL server's CPU (its whole process tree, so whatever else
used the server then is in it too), the WAL written per second and the bytes on disk per
event: the figures the deployment guide sizes a server from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.bodies import TOKEN, BodySet, write_body_sets
from bench.cli import positive_int
from bench.phases import WORKLOADS, LoadSettings, Workload
from bench.phases import _wrk as wrk  # the same wrk invocation and parsing as bench/run.py
from bench.procstat import TreeSampler, cpu_model
from bench.servers import CONFIG_TOML, HOST, REPO, ServerError, free_port, stop_server

RESULTS = Path(__file__).resolve().parent / "results"
TITLES = {"w1": "W1: 100 events/request", "w2-axon": "W2: 1 event/request"}
SETTLE_S = 2.0


@dataclass(frozen=True, slots=True)
class Setup:
    store: str  # "sqlite" | "postgresql"
    nodes: int


def _exe() -> str:
    beside = Path(sys.executable).parent / "capigate"
    found = str(beside) if beside.exists() else shutil.which("capigate")
    if found is None:
        raise ServerError("no `capigate` executable next to this Python or on PATH (pip install -e .)")
    return found


def _start(db: str, workdir: Path, port: int) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "capigate.toml"
    config.write_text(CONFIG_TOML)
    cmd = [_exe(), "serve", "--config", str(config), "--db", db, "--host", HOST, "--port", str(port), "--workers", "1"]
    log = workdir / "capigate.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"capigate exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise ServerError(f"capigate did not become ready:\n{log.read_text(errors='replace')[-2000:]}")


def _distinct(bodies: BodySet, tag: str, root: Path) -> BodySet:
    """A copy of ``bodies`` whose dedupe_ids cannot meet the original's: two wrk processes
    number their requests alike, and would otherwise send each other's dedupe_ids."""
    directory = root / f"{bodies.name}-{tag}"
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(bodies.count):
        text = bodies.path(i).read_text()
        (directory / bodies.path(i).name).write_text(text.replace(f"{TOKEN}-", f"{TOKEN}-{tag}-"))
    return BodySet(bodies.name, directory, bodies.count, bodies.events_per_request, bodies.mean_bytes)


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_pid(url: str) -> int | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    try:
        return int((Path(row[0]) / "postmaster.pid").read_text().split()[0]) if row else None
    except (OSError, ValueError, IndexError):
        return None  # the server runs elsewhere: no CPU figure


def _wal_lsn(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return int(row[0]) if row else 0


def _pg_counts(url: str, schema: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True, options=f"-c search_path={schema}") as conn:

        def one(sql: str) -> Any:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None

        return {
            "event_rows": one("SELECT count(*) FROM events"),
            "journal_rows": one("SELECT count(*) FROM requests"),
            "bytes": one(
                "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            ),
        }


def _sqlite_counts(db: Path) -> dict[str, Any]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        journal = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
    return {"event_rows": events, "journal_rows": journal, "bytes": size}


# --- one phase ----------------------------------------------------------------------------


def run_phase(
    setup: Setup,
    work: Workload,
    bodies: BodySet,
    *,
    duration_s: int,
    connections: int,
    url: str,
    options: str,
    tmp: Path,
) -> dict[str, Any]:
    result: dict[str, Any] = {"store": setup.store, "nodes": setup.nodes, "workload": work.key}
    schema = f"capigate_bench_{uuid.uuid4().hex[:8]}"
    workdir = tmp / f"{work.key}-{setup.store}-{setup.nodes}"
    sep = "&" if "?" in url else "?"
    db = f"{url}{sep}schema={schema}{'&' + options if options else ''}"
    db = db if setup.store == "postgresql" else str(workdir / "capigate.db")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = [free_port() for _ in range(setup.nodes)]
        for i, port in enumerate(ports):
            procs.append(_start(db, workdir / f"node{i}", port))
        sets = [bodies] + [_distinct(bodies, f"n{i}", tmp / "bodies-extra") for i in range(1, setup.nodes)]
        node_samplers = [TreeSampler(p.pid) for p in procs]
        pg_pid = _pg_pid(url) if setup.store == "postgresql" else None
        pg_sampler = TreeSampler(pg_pid) if pg_pid else None
        wal0 = _wal_lsn(url) if setup.store == "postgresql" else 0
        for sampler in [*node_samplers, *([pg_sampler] if pg_sampler else [])]:
            sampler.start()
        settings = LoadSettings(threads=2, connections=connections // setup.nodes, rate_rps=0, workers=1)
        loads: list[dict[str, Any]] = [{} for _ in ports]
        errors: list[str] = []

        def drive(i: int) -> None:
            try:
                loads[i] = wrk(ports[i], work, sets[i], duration_s, settings)
            except Exception as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=drive, args=(i,)) for i in range(setup.nodes)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        for sampler in [*node_samplers, *([pg_sampler] if pg_sampler else [])]:
            sampler.stop()
        if errors:
            return result | {"error": errors[0]}
        result["load"] = _sum(loads)
        result["gateway_cpu_pct"] = round(sum(s.summary().get("cpu_pct", 0.0) for s in node_samplers), 1)
        result["gateway_rss_mib"] = round(sum(s.summary().get("rss_max_mib", 0.0) for s in node_samplers), 1)
        result["machine_busy_pct"] = node_samplers[0].summary().get("machine_busy_pct")
        result["steal_pct"] = node_samplers[0].summary().get("steal_pct")
        if pg_sampler is not None:
            result["pg_cpu_pct"] = pg_sampler.summary().get("cpu_pct")
        if setup.store == "postgresql":
            result["wal_mib_per_s"] = round((_wal_lsn(url) - wal0) / elapsed / 2**20, 2)
    except Exception as exc:
        return result | {"error": str(exc)}
    finally:
        for proc in procs:
            stop_server(proc)
    counts = _pg_counts(url, schema) if setup.store == "postgresql" else _sqlite_counts(Path(db))
    if setup.store == "postgresql":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    result["stored"] = counts
    return result


def _sum(loads: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {
        key: round(sum(load[key] for load in loads), 1)
        for key in ("requests", "ok_requests", "rps", "events_per_s", "non_2xx", "socket_errors")
    }
    for q in ("50", "99"):
        total[f"p{q}_ms"] = max(load["latency_ms"][q] for load in loads)
    return total


# --- the report ---------------------------------------------------------------------------


def render(meta: dict[str, Any], phases: list[dict[str, Any]]) -> str:
    lines = ["# capigate on SQLite and PostgreSQL: one and two gateway processes", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta.items()]
    lines += [
        "",
        "| workload | store | gateways | req/s | events/s | p50 ms | p99 ms | errors | gateway CPU % | "
        "PostgreSQL CPU % | machine busy % | WAL MiB/s | rows stored | bytes/event on disk |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in phases:
        head = f"| {TITLES[p['workload']]} | {p['store']} | {p['nodes']} |"
        if "load" not in p:
            lines.append(f"{head} failed: {str(p.get('error', '')).splitlines()[0][:200]} |")
            continue
        load, stored = p["load"], p["stored"]
        per_event = stored["bytes"] / stored["event_rows"] if stored.get("event_rows") else None
        lines.append(
            f"{head} {load['rps']:,.0f} | {load['events_per_s']:,.0f} | {load['p50_ms']:.1f} | {load['p99_ms']:.1f} "
            f"| {load['non_2xx'] + load['socket_errors']:.0f} | {p['gateway_cpu_pct']:.0f} "
            f"| {_maybe(p.get('pg_cpu_pct'))} | {_maybe(p.get('machine_busy_pct'))} | {_maybe(p.get('wal_mib_per_s'), 2)} "
            f"| {stored['event_rows']:,} | {_maybe(per_event)} |"
        )
    lines += [
        "",
        "req/s and events/s: 2xx answers per second, summed over the gateways. p50/p99: wrk's, the worse",
        "of the two wrk processes for two gateways. CPU %: 100 = one core; the gateways' process trees",
        "summed; PostgreSQL's whole server. WAL MiB/s: pg_current_wal_lsn() over the phase. bytes/event:",
        "every table and index of the schema (SQLite: the db file and its WAL) over the events stored,",
        "request journal included.",
        "",
    ]
    return "\n".join(lines)


def _maybe(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=positive_int, default=15, help="seconds per phase")
    parser.add_argument("--workloads", default="w1,w2-axon", help="comma-separated: w1, w2-axon")
    parser.add_argument("--setups", default="sqlite:1,postgresql:1,postgresql:2", help="store:gateways, ...")
    parser.add_argument("--connections", type=positive_int, default=64, help="wrk connections in all")
    parser.add_argument(
        "--url", default=os.environ.get("CAPIGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    )
    parser.add_argument("--store-options", default="", help="capigate's URL options, e.g. writers=1")
    parser.add_argument("--out", type=Path, default=RESULTS / "pg.md")
    args = parser.parse_args(argv)
    chosen = [w for w in WORKLOADS if w.key in args.workloads.split(",") and w.key in TITLES]
    setups = [Setup(store, int(n)) for store, n in (item.split(":") for item in args.setups.split(","))]
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="capigate-pgbench-"))
    try:
        bodies = write_body_sets(tmp / "bodies", batches=300, singles=1000, population=50_000)
        phases = []
        for work in chosen:
            for setup in setups:
                time.sleep(SETTLE_S)
                print(f"pg_compare: {work.key} / {setup.store} x{setup.nodes}: {args.duration}s ...", flush=True)
                phase = run_phase(
                    setup, work, bodies[work.bodies], duration_s=args.duration, connections=args.connections,
                    url=args.url, options=args.store_options, tmp=tmp,
                )  # fmt: skip
                print("pg_compare:   " + json.dumps({k: v for k, v in phase.items() if k != "workload"}), flush=True)
                phases.append(phase)
        with psycopg.connect(args.url, autocommit=True) as conn:
            row = conn.execute("SELECT version()").fetchone()
        meta = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "machine": f"{cpu_model()}, {os.cpu_count()} CPUs, shared by wrk, the gateways and PostgreSQL",
            "postgresql": (row[0] if row else "?").split(" on ")[0],
            "load": f"wrk, 2 threads per process, {args.connections} connections in all, {args.duration} s per phase",
            "gateway": "`capigate serve --workers 1` per process; SQLite synchronous=full; PostgreSQL synchronous_commit=on",
            "store options": args.store_options or "defaults",
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(meta, phases))
        args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "phases": phases}, indent=1) + "\n")
        print(f"pg_compare: wrote {args.out}")
        return 1 if any("error" in p for p in phases) else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
