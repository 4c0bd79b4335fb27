"""Render a run's results (the dict that run.py also saves as JSON) as markdown tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.phases import WORKLOADS
from bench.servers import CEILINGS

__all__ = ["render"]

TITLES = {w.key: w.title for w in WORKLOADS}
QUARTERS = (0.0, 0.25, 0.5, 0.75, 1.0)
NOISY_BACKGROUND_PCT = 15.0
NOISY_STEAL_PCT = 5.0
NOISY_LAG_MS = 20.0
# What each row is compared with, and how the columns name it: the ASGI ceiling, which the
# benchmark targets are defined against, then the RSGI one (the interface capigate serves).
REFERENCES = (("ceiling", "ceiling"), ("ceiling-rsgi", "RSGI ceiling"))
# A compared figure: its name in the column header, how to read it from a phase's "load",
# and whether its ratio is shown as a percentage (else as a multiple).
Compared = tuple[str, Callable[[dict[str, Any]], float | None], bool]


def _n(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(ours: float | None, ceiling: float | None, *, percent: bool) -> str:
    if not ours or not ceiling:
        return "—"
    return f"{100 * ours / ceiling:.1f} %" if percent else f"{ours / ceiling:.2f}x"


def _rss(process: dict[str, Any]) -> str:
    if not process:
        return "—"
    return f"{process['rss_start_mib']:.0f} → {process['rss_end_mib']:.0f} ({process['rss_max_mib']:.0f})"


def _cpu(process: dict[str, Any]) -> str:
    if not process:
        return "—"
    server, machine = process["cpu_pct"], process["machine_busy_pct"]
    return f"{server:.0f} · {machine:.0f} · {process['steal_pct']:.1f}"


def _rps(load: dict[str, Any]) -> float | None:
    rps: float | None = load.get("rps")
    return rps


def _p99(load: dict[str, Any]) -> float | None:
    p99: float | None = load.get("latency_ms", {}).get("99")
    return p99


RPS: Compared = ("req/s", _rps, True)
P99: Compared = ("p99", _p99, False)


def _load_table(
    phases: list[dict[str, Any]],
    mode: str,
    headers: list[str],
    cells: Callable[[dict[str, Any]], list[str]],
    compared: list[Compared],
) -> list[str]:
    """The rows of ``mode``'s phases: workload, server, ``cells(phase)``, then each compared
    figure's ratio to each reference's (same workload, same run), reference by reference."""
    vs = [f"{name} vs {label}" for _, label in REFERENCES for name, _, _ in compared]
    rows = [
        "| " + " | ".join(["workload", "server", *headers, *vs]) + " |",
        "|---|---|" + "--:|" * (len(headers) + len(vs)),
    ]
    by = {(p["workload"], p["target"]): p for p in phases}
    for (key, target), p in by.items():
        if p["mode"] != mode:
            continue
        if "load" not in p:
            rows.append(f"| {TITLES[key]} | {target} | failed: {_first_line(p)} |")
            continue
        references = [by.get((key, ref), {}).get("load", {}) for ref, _ in REFERENCES]
        ratios = [
            _ratio(figure(p["load"]), figure(ref), percent=percent)
            for ref in references
            for _, figure, percent in compared
        ]
        rows.append("| " + " | ".join([TITLES[key], target, *cells(p), *ratios]) + " |")
    return rows


def _throughput(phases: list[dict[str, Any]]) -> list[str]:
    headers = [
        "req/s",
        "events/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "non-2xx",
        "socket errors",
        "RSS MiB start → end (max)",
        "CPU %: server · machine · steal",
    ]

    def cells(p: dict[str, Any]) -> list[str]:
        load, lat = p["load"], p["load"]["latency_ms"]
        return [
            _n(load["rps"]),
            _n(load["events_per_s"]),
            *(_n(lat[q], 2) for q in ("50", "90", "99", "max")),
            str(load["non_2xx"]),
            str(load["socket_errors"]),
            _rss(p["process"]),
            _cpu(p["process"]),
        ]

    return _load_table(phases, "wrk", headers, cells, [RPS, P99])


def _fixed_rate(phases: list[dict[str, Any]]) -> list[str]:
    headers = [
        "target req/s",
        "achieved req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "service p99 ms",
        "errors",
        "unfinished",
        "RSS MiB start → end (max)",
        "CPU %: server · machine · steal",
        "generator lag p99 ms",
        "generator CPU %",
    ]

    def cells(p: dict[str, Any]) -> list[str]:
        load, lat = p["load"], p["load"]["latency_ms"]
        bound = "≥ " if load["unfinished"] else ""
        return [
            _n(load["target_rps"], 0),
            _n(load["achieved_rps"]),
            *(bound + _n(lat.get(q), 2) for q in ("50", "90", "99", "99.9", "max")),
            _n(load["service_ms"].get("99"), 2),
            str(load["errors"]),
            str(load["unfinished"]),
            _rss(p["process"]),
            _cpu(p["process"]),
            _n(load["generator_lag_ms"].get("99"), 2),
            _n(load["generator_cpu_pct"]),
        ]

    return _load_table(phases, "rate", headers, cells, [P99])


def _storage(phases: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| workload | events received | stored | duplicates | stored % | duplicate % |"
        " rows in `events` | 2xx answers x events/request | tables |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for p in phases:
        store = p.get("store")
        if not store:
            continue
        if "error" in store:
            rows.append(f"| {TITLES[p['workload']]} | {store['error']} |")
            continue
        tables = ", ".join(f"{k}: {v:,}" for k, v in store["tables"].items())
        rows.append(
            f"| {TITLES[p['workload']]} | {_n(store.get('received'), 0)} "
            f"| {_n(store.get('stored'), 0)} | {_n(store.get('duplicates'), 0)} "
            f"| {_n(store.get('stored_pct'), 2)} | {_n(store.get('duplicate_pct'), 2)} "
            f"| {_n(store.get('event_rows'), 0)} | {store['acknowledged_events']:,} | {tables} |"
        )
    return rows


def _memory(phases: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| workload | server | seconds | RSS MiB at 0 % · 25 % · 50 % · 75 % · 100 % of the phase |"
        " growth over the second half, MiB/min |",
        "|---|---|--:|---|--:|",
    ]
    for p in phases:
        series: list[float] = p.get("rss_series_mib", [])
        if len(series) < 2:
            continue
        quarters = " · ".join(f"{series[round(q * (len(series) - 1))]:.0f}" for q in QUARTERS)
        half = series[len(series) // 2 :]
        slope = (half[-1] - half[0]) / max(len(half) - 1, 1) * 60  # one sample a second
        rows.append(f"| {TITLES[p['workload']]} | {p['target']} | {len(series) - 1} | {quarters} | {slope:+.1f} |")
    return rows


def _warnings(phases: list[dict[str, Any]]) -> list[str]:
    """What makes this run's figures less trustworthy, phase by phase."""
    out = []
    for p in phases:
        name = f"{TITLES[p['workload']]} / {p['target']}"
        background = p.get("background_busy_pct", 0.0)
        if background > NOISY_BACKGROUND_PCT:
            out.append(
                f"- {name}: the machine was already {background:.0f} % busy before the phase "
                "started (someone else's load): its figures are low."
            )
        steal = p.get("process", {}).get("steal_pct", 0.0)
        if steal > NOISY_STEAL_PCT:
            out.append(f"- {name}: the hypervisor took {steal:.1f} % of the CPUs (steal).")
        load = p.get("load", {})
        lag = load.get("generator_lag_ms", {}).get("99", 0.0)
        if lag > NOISY_LAG_MS:
            out.append(
                f"- {name}: the load generator ran {lag:.0f} ms late at p99: the machine, not "
                "only the server, limited this phase."
            )
        if p["target"] in CEILINGS and load.get("achieved_rps", 1e9) < 0.98 * load.get("target_rps", 0):
            out.append(
                f"- {name}: even the empty app could not hold {load['target_rps']:,.0f} req/s "
                "here: this rate is beyond this machine, so compare latencies with care."
            )
    hashes = {p["code_hash"] for p in phases if "code_hash" in p}
    if len(hashes) > 1:
        out.append(
            f"- capigate's source changed during the run ({len(hashes)} versions, see "
            "`code_hash` in the run's JSON): its phases did not all measure the same code."
        )
    return out


def _first_line(phase: dict[str, Any]) -> str:
    return str(phase.get("error", "no result")).splitlines()[0].replace("|", "\\|")


def render(results: dict[str, Any], raw: str = "latest.json") -> str:
    """The run's tables; ``raw`` names the JSON file written beside them."""
    meta, phases = results["meta"], results["phases"]
    title = "latest run" if raw == "latest.json" else f"run {raw.removesuffix('.json')}"
    out = [f"# capigate benchmark: {title}", ""]
    out += [f"- **{k}**: {v}" for k, v in meta.items()]
    out += ["", "## Throughput (wrk, closed loop)", "", *_throughput(phases)]
    fixed_rate = _fixed_rate(phases)
    if len(fixed_rate) > 2:  # a row beyond the header: a fixed-rate workload ran
        out += [
            "",
            f"## Latency at a fixed rate ({_n(meta.get('fixed rate req/s'), 0)} req/s, "
            "open loop, measured from each request's due time)",
            "",
            *fixed_rate,
        ]
    out += ["", "## Memory over time (RSS of the server's process tree, sampled every second)", ""]
    out += _memory(phases)
    storage = _storage(phases)
    if len(storage) > 2:
        out += ["", "## What capigate stored (read from its SQLite db afterwards)", "", *storage]
    warnings = _warnings(phases)
    if warnings:
        out += ["", "## Warnings: noise and validity", "", *warnings]
    errors = [p for p in phases if "error" in p]
    if errors:
        out += ["", "## Errors", ""]
        for p in errors:
            out += [
                f"### {TITLES[p['workload']]} / {p['target']}",
                "",
                "```",
                str(p["error"]).strip(),
                "```",
                "",
            ]
    out += ["", f"Figures are explained in bench/README.md. Raw numbers: {raw}.", ""]
    return "\n".join(out)


def main() -> None:
    """Re-render a saved run: python -m bench.report bench/results/latest.json [OUT.md]."""
    import json
    import sys
    from pathlib import Path

    source = Path(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else source.with_suffix(".md")
    target.write_text(render(json.loads(source.read_text()), source.name))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
