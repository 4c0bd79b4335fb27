"""Render a run's results (the dict that run.py also saves as JSON) as markdown tables."""

from __future__ import annotations

from typing import Any

from bench.phases import WORKLOADS

__all__ = ["render"]

TITLES = {w.key: w.title for w in WORKLOADS}
QUARTERS = (0.0, 0.25, 0.5, 0.75, 1.0)
NOISY_BACKGROUND_PCT = 15.0
NOISY_STEAL_PCT = 5.0
NOISY_LAG_MS = 20.0


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


def _by(phases: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["workload"], p["target"]): p for p in phases}


def _throughput(phases: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| workload | server | req/s | events/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx |"
        " socket errors | RSS MiB start → end (max) | CPU %: server · machine · steal |"
        " req/s vs ceiling |"
        " p99 vs ceiling |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    by = _by(phases)
    for (key, target), p in by.items():
        if p["mode"] != "wrk":
            continue
        if "load" not in p:
            rows.append(f"| {TITLES[key]} | {target} | failed: {_first_line(p)} |")
            continue
        load, lat = p["load"], p["load"]["latency_ms"]
        ceiling = by.get((key, "ceiling"), {}).get("load", {})
        rps_ratio = _ratio(load["rps"], ceiling.get("rps"), percent=True)
        p99_ratio = _ratio(lat["99"], ceiling.get("latency_ms", {}).get("99"), percent=False)
        rows.append(
            f"| {TITLES[key]} | {target} | {_n(load['rps'])} | {_n(load['events_per_s'])} "
            f"| {_n(lat['50'], 2)} | {_n(lat['90'], 2)} | {_n(lat['99'], 2)} "
            f"| {_n(lat['max'], 2)} | {load['non_2xx']} | {load['socket_errors']} "
            f"| {_rss(p['process'])} | {_cpu(p['process'])} | {rps_ratio} | {p99_ratio} |"
        )
    return rows


def _fixed_rate(phases: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| workload | server | target req/s | achieved req/s | p50 ms | p90 ms | p99 ms |"
        " p99.9 ms | max ms | service p99 ms | errors | unfinished | RSS MiB start → end (max) |"
        " CPU %: server · machine · steal | generator lag p99 ms | generator CPU % |"
        " p99 vs ceiling |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    by = _by(phases)
    for (key, target), p in by.items():
        if p["mode"] != "rate":
            continue
        if "load" not in p:
            rows.append(f"| {TITLES[key]} | {target} | failed: {_first_line(p)} |")
            continue
        load, lat = p["load"], p["load"]["latency_ms"]
        ceiling = by.get((key, "ceiling"), {}).get("load", {})
        p99_ratio = _ratio(lat.get("99"), ceiling.get("latency_ms", {}).get("99"), percent=False)
        bound = "≥ " if load["unfinished"] else ""
        rows.append(
            f"| {TITLES[key]} | {target} | {_n(load['target_rps'], 0)} "
            f"| {_n(load['achieved_rps'])} | {bound}{_n(lat.get('50'), 2)} "
            f"| {bound}{_n(lat.get('90'), 2)} | {bound}{_n(lat.get('99'), 2)} "
            f"| {bound}{_n(lat.get('99.9'), 2)} | {bound}{_n(lat.get('max'), 2)} "
            f"| {_n(load['service_ms'].get('99'), 2)} | {load['errors']} | {load['unfinished']} "
            f"| {_rss(p['process'])} | {_cpu(p['process'])} "
            f"| {_n(load['generator_lag_ms'].get('99'), 2)} | {_n(load['generator_cpu_pct'])} "
            f"| {p99_ratio} |"
        )
    return rows


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
        if p["target"] == "ceiling" and load.get("achieved_rps", 1e9) < 0.98 * load.get("target_rps", 0):
            out.append(
                f"- {name}: even the empty app could not hold {load['target_rps']:,.0f} req/s "
                "here: this rate is beyond this machine, so compare latencies with care."
            )
    hashes = {p["code_hash"] for p in phases if "code_hash" in p}
    if len(hashes) > 1:
        out.append(
            f"- capigate's source changed during the run ({len(hashes)} versions, see "
            "`code_hash` in latest.json): its phases did not all measure the same code."
        )
    return out


def _first_line(phase: dict[str, Any]) -> str:
    return str(phase.get("error", "no result")).splitlines()[0].replace("|", "\\|")


def render(results: dict[str, Any]) -> str:
    meta, phases = results["meta"], results["phases"]
    out = ["# capigate benchmark: latest run", ""]
    out += [f"- **{k}**: {v}" for k, v in meta.items()]
    out += ["", "## Throughput (wrk, closed loop)", "", *_throughput(phases)]
    out += [
        "",
        f"## Latency at a fixed rate ({_n(meta.get('fixed rate req/s'), 0)} req/s, "
        "open loop, measured from each request's due time)",
        "",
        *_fixed_rate(phases),
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
    out += ["", "Figures are explained in bench/README.md. Raw numbers: latest.json.", ""]
    return "\n".join(out)


def main() -> None:
    """Re-render a saved run: python -m bench.report bench/results/latest.json [OUT.md]."""
    import json
    import sys
    from pathlib import Path

    source = Path(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else source.with_suffix(".md")
    target.write_text(render(json.loads(source.read_text())))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
