"""Where a served gateway's CPU goes, thread by thread, under the peer run's load.

    .venv/bin/python -m bench.threads [--seconds 10] [--out bench/results/threads]

Starts ``capigate serve`` (one worker, SQLite, as ``bench/run.sh peer`` does), sends the peer
run's W1 and W2 bodies with wrk (2 threads, 64 connections) and reads each thread's user and
kernel CPU time of the gateway's processes (``/proc/<pid>/task/<tid>/stat``) before and after:
the event loop's thread, the SQLite writer process, granian's threads. Whether the loop is
saturated or waits (a group commit, a CPU) is what tells which side bounds a workload. A
percentage is of one core over the measured seconds; the rates are this run's, not a peer's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import peer
from bench.bodies import write_lead_gen_sets
from bench.cli import positive_int
from bench.phases import LoadSettings, _wrk
from bench.procstat import cpu_model, machine_busy_pct, machine_line, native_status
from bench.servers import stop_server

_TICK = os.sysconf("SC_CLK_TCK")
_SETTINGS = LoadSettings(threads=2, connections=64, rate_rps=0.0, workers=1)
ThreadKey = tuple[int, int]  # (pid, tid)


def _children(pid: int) -> list[int]:
    """``pid`` and its descendants (the writer process is the server's child)."""
    found = [pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found += _children(int(entry))
    return found


def _times(pids: list[int]) -> dict[ThreadKey, tuple[str, int, int]]:
    """Each thread's (process command, user ticks, kernel ticks)."""
    found: dict[ThreadKey, tuple[str, int, int]] = {}
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            for tid in os.listdir(f"/proc/{pid}/task"):
                fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                found[pid, int(tid)] = (command, int(fields[11]), int(fields[12]))
        except OSError:
            continue
    return found


def _role(key: ThreadKey, command: str, server: int) -> str:
    pid, tid = key
    if "writer_child" in command:
        return "SQLite writer process" + ("" if pid == tid else f", thread {tid}")
    if pid == server:
        return f"capigate serve (the supervisor), thread {tid}"
    if pid == tid:
        return "worker: its event loop (main thread)"
    return f"worker: thread {tid} (granian's I/O, a helper)"


def measure(seconds: int) -> dict[str, Any]:
    args = argparse.Namespace(workers=1, db=None)
    out: dict[str, Any] = {
        "cpu": cpu_model(), "busy_before_pct": machine_busy_pct(2.0), "native": native_status(), "workloads": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="capigate-threads-") as tmp:
        root = Path(tmp)
        sets = write_lead_gen_sets(root / "bodies", batches=300, singles=1000, population=50_000)
        target = peer.start("capigate", args, root, sets["w1"].path(0).read_bytes())
        try:
            for key in ("w1", "w2"):
                work = peer.WORKLOADS[key]
                bodies = sets[work.bodies]
                _wrk(target.port, work, bodies, 3, _SETTINGS)  # warm-up
                pids = _children(target.proc.pid)
                before, started = _times(pids), time.monotonic()
                load = _wrk(target.port, work, bodies, seconds, _SETTINGS)
                after, elapsed = _times(pids), time.monotonic() - started
                rows = []
                for thread, (command, user, kernel) in after.items():
                    _, user0, kernel0 = before.get(thread, (command, user, kernel))
                    user_pct = (user - user0) / _TICK / elapsed * 100
                    kernel_pct = (kernel - kernel0) / _TICK / elapsed * 100
                    if user_pct + kernel_pct >= 0.5:
                        rows.append((_role(thread, command, target.proc.pid), user_pct, kernel_pct))
                rate = load["events_per_s"] if key == "w1" else load["rps"]
                out["workloads"][work.title] = {"rate": rate, "threads": sorted(rows, key=lambda r: -(r[1] + r[2]))}
        finally:
            stop_server(target.proc)
    return out


def render(result: dict[str, Any], command: str) -> str:
    lines = [
        "# Where a served gateway's CPU goes, by thread (`python -m bench.threads`)",
        "",
        machine_line(result),
        f"- **command**: `{command}`",
        "",
        "| workload | rate | thread | user % | kernel % | all % |",
        "|---|--:|---|--:|--:|--:|",
    ]
    for title, found in result["workloads"].items():
        for role, user, kernel in found["threads"]:
            lines.append(
                f"| {title} | {found['rate']:,.0f}/s | {role} | {user:.1f} | {kernel:.1f} | {user + kernel:.1f} |"
            )
    lines += ["", "A percentage is of one core over the measured seconds (wrk's own CPU is not shown)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=positive_int, default=10, help="of load per workload")
    parser.add_argument("--out", default=None, help="write OUT.md (default: print only)")
    args = parser.parse_args()
    text = render(measure(args.seconds), f"python -m bench.threads --seconds {args.seconds}")
    print(text, end="")
    if args.out:
        Path(f"{args.out}.md").write_text(text)


if __name__ == "__main__":
    main()
