"""bench/prune_keys.py runs and reports what it pruned (its figures are the bench's, not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_prune_keys_bench_prunes_every_key_it_stored_job_by_job() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.prune_keys", "--events", "5000"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("| this tree |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "5,000" and int(cells[2]) == 3, row  # 5,000 events walked 2,000 a job
