"""Benchmark capigate against the ceiling apps, in one run, and write bench/results/latest.md.

    bench/run.sh --target ceiling-only --quick     # harness smoke test, no capigate needed
    bench/run.sh --quick                           # ~4 min: every workload, 10 s each
    bench/run.sh                                   # full run: 300 s per capigate workload

For each workload, the ASGI ceiling app, the RSGI one and then capigate are started fresh (new
temp config and db, new loopback port), driven, sampled and stopped. See bench/README.md for
the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.bodies import write_body_sets
from bench.cli import positive_float, positive_int
from bench.phases import WORKLOADS, LoadSettings, run_phase
from bench.procstat import cpu_model, native_status
from bench.report import render
from bench.servers import CEILINGS, REPO, capigate_problem

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {
    "all": (*CEILINGS, "capigate"),
    "ceiling-only": tuple(CEILINGS),
    "capigate-only": ("capigate",),
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=list(TARGETS), default="all")
    p.add_argument("--quick", action="store_true", help="10 s per workload for every server")
    p.add_argument("--duration", type=positive_int, default=300, help="seconds per capigate workload")
    p.add_argument("--ceiling-duration", type=positive_int, default=60, help="seconds per workload, each ceiling")
    p.add_argument(
        "--workloads",
        default=",".join(w.key for w in WORKLOADS),
        help="comma-separated subset of: " + ", ".join(w.key for w in WORKLOADS),
    )
    p.add_argument("--workers", type=positive_int, default=1, help="server worker processes")
    p.add_argument("--threads", type=positive_int, default=2, help="wrk threads")
    p.add_argument("--connections", type=positive_int, default=64, help="connections per load generator")
    p.add_argument("--rate", type=positive_float, default=5000.0, help="fixed-rate workloads' req/s")
    p.add_argument("--batches", type=positive_int, default=300, help="distinct W1 bodies")
    p.add_argument("--singles", type=positive_int, default=1000, help="distinct W2 bodies (each API)")
    p.add_argument("--population", type=positive_int, default=50_000, help="distinct users")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.md")
    p.add_argument("--keep-tmp", action="store_true", help="keep bodies, configs, dbs, logs")
    args = p.parse_args(argv)
    if args.quick:
        args.duration = args.ceiling_duration = 10
    return args


def tool_version(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines and done.returncode in (0, 1) else "unknown"


def _machine(args: argparse.Namespace) -> dict[str, Any]:
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    try:
        granian = version("granian")
    except PackageNotFoundError:
        granian = "not installed"
    return {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "nproc": f"{len(os.sched_getaffinity(0))} (cpu_count {os.cpu_count()})",
        "cpu": cpu_model(),
        "native": native_status(),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "granian": granian,
        "capigate commit": tool_version(["git", "rev-parse", "--short", "HEAD"]),
        "server workers": args.workers,
        "wrk": f"{tool_version(['wrk', '-v']).split(' [')[0]}, {args.threads} threads, {args.connections} connections",
        "fixed rate req/s": args.rate,
        "durations": f"capigate {args.duration} s, each ceiling {args.ceiling_duration} s per workload",
        "bodies": f"W1 {args.batches} distinct 100-event batches, W2 {args.singles} distinct "
        f"bodies per API, users drawn from {args.population:,}",
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    targets = TARGETS[args.target]
    chosen = set(args.workloads.split(","))
    unknown = chosen - {w.key for w in WORKLOADS}
    if unknown:
        print(f"error: unknown workloads {sorted(unknown)}", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None and any(w.mode == "wrk" for w in WORKLOADS if w.key in chosen):
        print(
            "error: wrk is not installed: run bench/run.sh, or apt-get install -y wrk",
            file=sys.stderr,
        )
        return 2
    problem = capigate_problem() if "capigate" in targets else None
    if problem:
        print(
            f"error: cannot benchmark capigate: {problem}.\n"
            "       Run `bench/run.sh --target ceiling-only` to test the harness alone.",
            file=sys.stderr,
        )
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="capigate-bench-"))
    print(f"bench: temp dir {tmp}", flush=True)
    try:
        t0 = time.monotonic()
        body_sets = write_body_sets(
            tmp / "bodies", batches=args.batches, singles=args.singles, population=args.population
        )
        print(
            f"bench: wrote bodies in {time.monotonic() - t0:.1f}s: "
            + ", ".join(f"{b.name} {b.count}x~{b.mean_bytes}B" for b in body_sets.values()),
            flush=True,
        )
        settings = LoadSettings(args.threads, args.connections, args.rate, args.workers)
        meta = _machine(args)
        phases = []
        for work in (w for w in WORKLOADS if w.key in chosen):
            for target in targets:
                duration = args.ceiling_duration if target in CEILINGS else args.duration
                print(f"bench: {work.key} / {target}: {duration}s ...", flush=True)
                phase = run_phase(
                    target,
                    work,
                    body_sets[work.bodies],
                    duration_s=duration,
                    settings=settings,
                    workdir=tmp / f"{work.key}-{target}",
                )
                print("bench:   " + _one_line(phase), flush=True)
                phases.append(phase)
        meta["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        results = {"meta": meta, "phases": phases}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(render(results, args.out.with_suffix(".json").name))
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
        print(f"bench: wrote {args.out} and {args.out.with_suffix('.json').name}")
        return 1 if any("error" in p for p in phases) else 0
    finally:
        if args.keep_tmp:
            print(f"bench: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _one_line(phase: dict[str, Any]) -> str:
    if "load" not in phase:
        return "FAILED: " + str(phase.get("error", "")).splitlines()[0]
    load, lat = phase["load"], phase["load"]["latency_ms"]
    rps = load.get("rps", load.get("achieved_rps"))
    return (
        f"{rps:,.0f} req/s, p99 {lat.get('99', 0):.2f} ms, "
        f"RSS max {phase['process'].get('rss_max_mib', 0):.0f} MiB"
        + (f", ERROR {phase['error'].splitlines()[0]}" if "error" in phase else "")
    )


if __name__ == "__main__":
    sys.exit(main())
