"""bench/threads.py serves the peer run's load and splits the gateway's CPU by thread (its
figures are the bench's, not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_threads_bench_finds_the_event_loop_and_the_writer_under_both_workloads() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.threads", "--seconds", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| W")]
    for workload in ("W1", "W2"):
        roles = {cells[3].strip() for cells in rows if cells[1].strip().startswith(workload)}
        assert {"worker: its event loop (main thread)", "SQLite writer process"} <= roles, done.stdout
