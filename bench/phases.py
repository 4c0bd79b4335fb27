"""One measured phase: a fresh server, one workload, RSS/CPU sampled, results as a dict."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bodies import BodySet, run_token
from bench.procstat import TreeSampler, machine_busy_pct
from bench.servers import (
    AF_HEADER,
    AF_PATH,
    AXON_HEADER,
    AXON_PATH,
    HOST,
    REPO,
    capigate_code_hash,
    die_with_harness,
    free_port,
    start_server,
    stop_server,
)

__all__ = ["WORKLOADS", "LoadSettings", "Workload", "run_phase"]

BACKGROUND_WINDOW_S = 2.0  # also lets the previous phase's sockets and processes go
LUA = Path(__file__).resolve().parent / "wrk_rotate.lua"


@dataclass(frozen=True, slots=True)
class Workload:
    key: str
    title: str
    bodies: str  # which BodySet
    path: str
    header: tuple[str, str]
    mode: str  # "wrk": closed loop, as fast as it goes; "rate": open loop at a fixed rate


WORKLOADS = (
    Workload("w1", "W1 Axon, 100-event batches", "w1", AXON_PATH, AXON_HEADER, "wrk"),
    Workload("w2-axon", "W2 Axon, 1 event/request", "w2-axon", AXON_PATH, AXON_HEADER, "wrk"),
    Workload("w2-af", "W2 AppsFlyer, 1 event/request", "w2-af", AF_PATH, AF_HEADER, "wrk"),
    Workload("rate-axon", "W2 Axon at a fixed rate", "w2-axon", AXON_PATH, AXON_HEADER, "rate"),
    Workload("rate-af", "W2 AppsFlyer at a fixed rate", "w2-af", AF_PATH, AF_HEADER, "rate"),
)


@dataclass(frozen=True, slots=True)
class LoadSettings:
    threads: int
    connections: int
    rate_rps: float
    workers: int


def _tagged_json(output: str, tag: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(tag + " "):
            parsed: dict[str, Any] = json.loads(line[len(tag) + 1 :])
            return parsed
    raise RuntimeError(f"no {tag} line in the load generator's output:\n{output[-2000:]}")


def _run(cmd: list[str], timeout_s: float) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=REPO, preexec_fn=die_with_harness)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def _wrk(port: int, work: Workload, bodies: BodySet, duration_s: int, s: LoadSettings) -> dict[str, Any]:
    cmd = [
        "wrk",
        f"-t{s.threads}",
        f"-c{s.connections}",
        f"-d{duration_s}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        f"http://{HOST}:{port}",
        "--",
        str(bodies.directory),
        str(bodies.count),
        work.path,
        *work.header,
        run_token(),
    ]
    raw = _tagged_json(_run(cmd, duration_s + 60), "WRK_JSON")
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["status"]
    return {
        "requests": raw["requests"],
        "ok_requests": ok,
        "rps": round(raw["requests"] / seconds, 1),
        "events_per_s": round(ok * bodies.events_per_request / seconds, 1),
        "non_2xx": raw["status"],
        "socket_errors": raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        "latency_ms": {k: v / 1000 for k, v in raw["percentiles_us"].items()}
        | {"mean": raw["latency_mean_us"] / 1000, "max": raw["latency_max_us"] / 1000},
        "duration_s": round(seconds, 2),
    }


def _rate(port: int, work: Workload, bodies: BodySet, duration_s: int, s: LoadSettings) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--port",
        str(port),
        "--rate",
        str(s.rate_rps),
        "--duration",
        str(duration_s),
        "--connections",
        str(s.connections),
        "--bodies",
        str(bodies.directory),
        "--count",
        str(bodies.count),
        "--path",
        work.path,
        "--header",
        "=".join(work.header),
    ]
    raw = _tagged_json(_run(cmd, duration_s + 60), "LOADGEN_JSON")
    raw["ok_requests"] = raw["answered"] - raw["errors"]
    raw["events_per_s"] = raw["achieved_rps"]
    return raw


def store_stats(db: Path, acknowledged_events: int) -> dict[str, Any]:
    """Count what capigate stored: rows in its ``events`` table and, from its request journal
    (a table with ``events_received/stored/duplicate`` columns), what it says it received,
    stored and dropped as duplicates. Lists every table's row count too."""
    if not db.exists():
        return {"error": f"no database at {db}"}
    out: dict[str, Any] = {"acknowledged_events": acknowledged_events, "tables": {}}
    wanted = {"events_received", "events_stored", "events_duplicate"}
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for name in names:
            out["tables"][name] = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            columns = {r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')}
            if wanted <= columns:
                row = conn.execute(
                    f'SELECT sum(events_received), sum(events_stored), sum(events_duplicate) FROM "{name}"'
                ).fetchone()
                received, stored, duplicates = (v or 0 for v in row)
                out |= {"received": received, "stored": stored, "duplicates": duplicates}
                if received:
                    out["stored_pct"] = round(100 * stored / received, 2)
                    out["duplicate_pct"] = round(100 * duplicates / received, 2)
    if "events" in out["tables"]:
        out["event_rows"] = out["tables"]["events"]
    return out


def run_phase(
    target: str,
    work: Workload,
    bodies: BodySet,
    *,
    duration_s: int,
    settings: LoadSettings,
    workdir: Path,
) -> dict[str, Any]:
    """Start ``target`` fresh, drive ``work`` at it, and return the figures (or the error)."""
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"target": target, "workload": work.key, "mode": work.mode}
    result["background_busy_pct"] = machine_busy_pct(BACKGROUND_WINDOW_S)
    if target == "capigate":
        result["code_hash"] = capigate_code_hash()
    port = free_port()
    try:
        proc = start_server(target, port=port, workers=settings.workers, workdir=workdir)
    except Exception as exc:
        return result | {"error": str(exc)}
    sampler = TreeSampler(proc.pid)
    try:
        sampler.start()
        drive = _wrk if work.mode == "wrk" else _rate
        result["load"] = drive(port, work, bodies, duration_s, settings)
    except Exception as exc:
        result["error"] = str(exc)
    finally:
        sampler.stop()
        stop_server(proc)
    result["process"] = sampler.summary()
    result["rss_series_mib"] = [s.rss_mib for s in sampler.samples]
    if target == "capigate" and "load" in result:
        acknowledged = result["load"]["ok_requests"] * bodies.events_per_request
        result["store"] = store_stats(workdir / "capigate.db", acknowledged)
    return result
