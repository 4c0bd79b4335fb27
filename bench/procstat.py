"""RSS and CPU of a server's whole process tree, sampled from /proc once a second.

granian runs a supervisor process and one process per worker, so a server's memory is the sum
over the tree rooted at the process the harness started.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Sample",
    "TreeSampler",
    "children_cpu_s",
    "cpu_model",
    "cpu_s",
    "machine_busy_pct",
    "machine_line",
    "tree_pids",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_pids(root: int) -> list[int]:
    pids: list[int] = []
    todo = [root]
    while todo and len(pids) < 10_000:
        pid = todo.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                continue
    return pids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def children_cpu_s() -> float:
    """The CPU seconds of this process's descendants (the store's writer process), to the
    nanosecond where the kernel keeps schedstat (utime and stime count 10 ms ticks)."""
    total = 0.0
    for pid in tree_pids(os.getpid())[1:]:
        try:
            total += sum(int(t.read_text().split()[0]) for t in Path(f"/proc/{pid}/task").glob("*/schedstat")) / 1e9
        except (OSError, ValueError, IndexError):
            total += cpu_s(pid)
    return total


def _machine_ticks() -> tuple[int, int, int]:
    """(total, idle + iowait, steal) jiffies over all CPUs, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4], fields[7]


def cpu_model() -> str:
    """The CPU's name with its family and model ("AMD EPYC (family 25, model 17)"): a virtual
    machine's name alone can be the same for hosts a core apart by 2x, and the hosts change."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or "unknown"
    name = fields.get("model name") or platform.processor() or "unknown"
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def machine_line(result: Mapping[str, Any]) -> str:
    """A results page's machine line, from the run's ``cpu`` (``cpu_model``, absent from the
    runs before it) and ``busy_before_pct`` (``machine_busy_pct``)."""
    cpu = result.get("cpu", "unknown CPU")
    line = f"- **machine**: {cpu}, {os.cpu_count()} CPUs, shared; busy before the run: {result['busy_before_pct']} %"
    if "native" in result:  # absent from the runs before capigate/native.py
        line += f"\n- **compiled modules** (`capigate native status`, this tree): {result['native']}"
    return line


def native_status() -> str:
    """Whether this tree's capigate runs its hot modules compiled (capigate/native.py). A
    ``capigate@REF`` tree runs them only where its sources match the build."""
    try:
        from capigate.native import status
    except ImportError:  # a tree before capigate/native.py
        return "not in this tree (before capigate/native.py)"
    return status()


def machine_busy_pct(window_s: float) -> float:
    """How busy the whole machine is (% of all CPUs) over the next ``window_s`` seconds:
    measured while nothing of ours runs, it shows other people's load."""
    total0, idle0, _ = _machine_ticks()
    time.sleep(window_s)
    total1, idle1, _ = _machine_ticks()
    total = max(total1 - total0, 1)
    return round(100 * (total - (idle1 - idle0)) / total, 1)


@dataclass(slots=True)
class Sample:
    t_s: float  # seconds since the sampler started
    rss_mib: float
    cpu_s: float  # CPU seconds used so far by the processes alive now
    processes: int


@dataclass
class TreeSampler:
    """Samples a process tree every ``interval_s`` on a daemon thread until ``stop()``."""

    root: int
    interval_s: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _t0: float = 0.0
    _machine0: tuple[int, int, int] = (0, 0, 0)
    _machine1: tuple[int, int, int] = (0, 0, 0)

    def sample(self) -> Sample:
        pids = tree_pids(self.root)
        rss = sum(_rss_kib(p) for p in pids) / 1024
        cpu = sum(cpu_s(p) for p in pids)
        sample = Sample(round(time.monotonic() - self._t0, 2), round(rss, 1), cpu, len(pids))
        self.samples.append(sample)
        return sample

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._machine0 = _machine_ticks()
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._machine1 = _machine_ticks()
        self.sample()
        return self.samples

    def summary(self) -> dict[str, float]:
        """RSS at start/end/max (MiB), the tree's mean CPU use (% of one core), and the whole
        machine's busy and steal shares (% of all CPUs: steal is time the hypervisor gave
        to other guests, a sign of a noisy host)."""
        if not self.samples:
            return {}
        first, last = self.samples[0], self.samples[-1]
        elapsed = max(last.t_s - first.t_s, 1e-9)
        total, idle, steal = (b - a for a, b in zip(self._machine0, self._machine1, strict=True))
        total = max(total, 1)
        return {
            "machine_busy_pct": round(100 * (total - idle) / total, 1),
            "steal_pct": round(100 * steal / total, 1),
            "rss_start_mib": first.rss_mib,
            "rss_end_mib": last.rss_mib,
            "rss_max_mib": max(s.rss_mib for s in self.samples),
            "cpu_pct": round(100 * (last.cpu_s - first.cpu_s) / elapsed, 1),
            "samples": len(self.samples),
        }
