"""Slow connections: how many hostile connections one worker survives while a probe stays fast.

    .venv/bin/python -m bench.slow_connections [--steps 0,500,1000,2000] [--hold 15]
        [--mode trickle|silent] [--max-connections N] [--json FILE]

One `capigate serve` (1 worker, SQLite) on 127.0.0.1. For each step, an attacker process opens N
connections and keeps them: ``trickle`` sends a request line and then one header line every
2 s (a slowloris: the header timeout cuts each one, and it reconnects at once); ``silent``
connects and sends nothing (the idle reaper cuts it, and it reconnects). Meanwhile a probe
opens a fresh connection every 20 ms and sends ``GET /healthz``; its p50/p99/max latency (a
probe that fails or takes over 5 s counts as 5000 ms) and its failures are reported per step,
with step 0 (no attacker) as the reference measured in the same run. A worker "survives" N
while the probe's p99 stays under 50 ms. Everything stays on 127.0.0.1; the loops are bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cli import positive_float, positive_int
from bench.servers import CONFIG_TOML, HOST, REPO, die_with_harness, free_port, stop_server

PROBE_INTERVAL_S = 0.02
PROBE_TIMEOUT_S = 5.0
TRICKLE_EVERY_S = 2.0
SURVIVES_P99_MS = 50.0


async def _hold_one(port: int, mode: str, stop: float, counts: dict[str, int]) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            counts["refused"] += 1
            await asyncio.sleep(0.5)
            continue
        counts["open"] += 1
        try:
            if mode == "trickle":
                writer.write(b"POST /v1/event?pixel_id=px_bench HTTP/1.1\r\nHost: bench\r\n")
            i = 0
            while time.monotonic() < stop:
                try:
                    if await asyncio.wait_for(reader.read(1), TRICKLE_EVERY_S) == b"":
                        break  # the server closed it
                except TimeoutError:
                    pass
                if mode == "trickle":
                    writer.write(f"X-Slow-{i}: y\r\n".encode())
                    await writer.drain()
                    i += 1
        except OSError:
            pass
        finally:
            counts["open"] -= 1
            counts["cut"] += 1
            writer.close()


async def attack(port: int, count: int, mode: str, seconds: float) -> None:
    counts = {"open": 0, "cut": 0, "refused": 0}
    stop = time.monotonic() + seconds

    async def report() -> None:
        while time.monotonic() < stop:
            print(json.dumps(counts), flush=True)
            await asyncio.sleep(1.0)

    reporter = asyncio.create_task(report())
    tasks = []
    for n in range(count):
        tasks.append(asyncio.create_task(_hold_one(port, mode, stop, counts)))
        if n % 50 == 49:
            await asyncio.sleep(0.05)  # ~1000 connections a second
    await asyncio.gather(reporter, *tasks, return_exceptions=True)


def probe_once(port: int) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT_S)
    try:
        conn.request("GET", "/healthz")
        if conn.getresponse().status != 200:
            return -1.0
    except OSError:
        return -1.0
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000.0


def probe(port: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    failures = 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        ms = probe_once(port)
        if ms < 0:
            failures += 1
            ms = PROBE_TIMEOUT_S * 1000
        latencies.append(ms)
        time.sleep(PROBE_INTERVAL_S)
    latencies.sort()
    return {
        "probes": len(latencies),
        "failures": failures,
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "max_ms": round(latencies[-1], 2),
    }


def start_capigate(workdir: Path, port: int, max_connections: int | None) -> subprocess.Popen[bytes]:
    config = workdir / "capigate.toml"
    cap = f"max_connections = {max_connections}\n" if max_connections else ""
    config.write_text(CONFIG_TOML.replace("[server]\n", f"[server]\n{cap}", 1))
    log = (workdir / "capigate.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "capigate",
            "serve",
            "--config",
            str(config),
            "--db",
            str(workdir / "c.db"),
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-relay",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,
        preexec_fn=die_with_harness,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if probe_once(port) >= 0:
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"capigate did not start: see {workdir / 'capigate.log'}")


def run_step(port: int, count: int, mode: str, hold_s: float) -> dict[str, Any]:
    attacker = None
    if count:
        ramp_s = count / 1000 + 3.0
        attacker = subprocess.Popen(
            [sys.executable, "-m", "bench.slow_connections", "--attacker", f"{port}:{count}:{mode}:{ramp_s + hold_s}"],
            stdout=subprocess.PIPE,
            cwd=REPO,
            preexec_fn=die_with_harness,
        )
        time.sleep(ramp_s)
    figures = probe(port, hold_s)
    held = None
    if attacker is not None:
        out, _ = attacker.communicate(timeout=hold_s + 60)
        lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        held = max((line["open"] for line in lines), default=0)
    return {"connections": count, "held_at_once": held, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="0,250,500,1000,2000")
    parser.add_argument("--hold", type=positive_float, default=15.0)
    parser.add_argument("--mode", choices=("trickle", "silent"), default="trickle")
    parser.add_argument("--max-connections", type=positive_int, help="[server] max_connections (default: capigate's)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--attacker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attacker:
        port, count, mode, seconds = args.attacker.split(":")
        asyncio.run(attack(int(port), int(count), mode, float(seconds)))
        return
    port = free_port()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="capigate-slow-") as tmp:
        server = start_capigate(Path(tmp), port, args.max_connections)
        try:
            for count in (int(s) for s in args.steps.split(",")):
                step = run_step(port, count, args.mode, args.hold)
                results.append(step)
                print(json.dumps(step), flush=True)
        finally:
            stop_server(server)
    reference = results[0]["p99_ms"] if results and results[0]["connections"] == 0 else None
    survived = [r["connections"] for r in results if float(r["p99_ms"]) < SURVIVES_P99_MS and not r["failures"]]
    summary = {
        "mode": args.mode,
        "max_connections": args.max_connections,
        "reference_p99_ms": reference,
        "survives": max(survived, default=None),
        "steps": results,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "steps"}))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
