"""capigate side by side with a peer: Prism 5 mocking the seed OpenAPI of the lead-gen API.

    bench/run.sh peer [--rounds 3] [--duration 10] [--targets prism,capigate,ceiling-rsgi]
                      [--workers 1] [--db postgresql://...] [--ref 861060e]

Every target is started once and kept running; then, round after round, the same wrk sends
the same lead-gen bodies (valid for the seed OpenAPI and for capigate's ``lead_gen`` profile,
every ``dedupe_id`` unique) to each target in turn: W1 (100 events per request, events/s) and
W2 (1 event per request, req/s). The order of the targets rotates every round, so a noisy
neighbour hurts each of them alike; ratios are taken within a round and their median quoted.

Targets: ``prism`` (installed by this script into ``bench/.node`` with npm; ``prism-quiet``:
the same, logging errors only), ``capigate`` (this
tree), ``capigate@REF`` (the tree of git commit REF, run from a ``git archive`` copy: the A/B
of a change), ``capigate-2w`` (this tree with 2 workers, for the scaling; ``--workers`` sets the
others'), ``ceiling-rsgi`` (the empty RSGI app). Prism validates each request against the
OpenAPI (400 when invalid, 401 without a bearer key) and answers 200 with no body; it stores
nothing. Nothing leaves 127.0.0.1.
Results: ``bench/results/peer.md`` and ``peer.json``; then, unless ``--no-ratios``, the in-process
limits (``python -m bench.in_process --ratios``) of this tree and of each ``--ref``, twice,
alternated, in ``bench/results/peer-in-process*.md``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bodies import BodySet, write_lead_gen_sets
from bench.cli import non_negative_int, positive_int
from bench.phases import LoadSettings, Workload, _wrk
from bench.procstat import TreeSampler, cpu_model, machine_busy_pct, machine_line, native_status
from bench.refs import archive, ref_env
from bench.servers import CEILINGS, HOST, REPO, die_with_harness, free_port, stop_server

PEER_DIR = Path(__file__).resolve().parent / "peer"
SPEC = PEER_DIR / "applovin-capi-lead-gen.openapi.yaml"
NODE_DIR = Path(__file__).resolve().parent / ".node"
PRISM = NODE_DIR / "node_modules" / ".bin" / "prism"
PRISM_PACKAGE = "@stoplight/prism-cli@5"
LEAD_PATH = "/v1/event?pixel_id=px_lead"
HEADER = ("Authorization", "Bearer k")
CONFIG_TOML = """\
[server]
admin_token = "adm-bench"

[[axon.pixels]]
pixel_id = "px_lead"
api_key = "k"
profile = "lead_gen"

# bench/run.sh anatomy --workload w1-shop: bench/run.sh's own W1 batches (purchase, page_view)
[[axon.pixels]]
pixel_id = "px_shop"
api_key = "k"
profile = "standard"
"""
WORKLOADS = {
    "w1": Workload("w1", "W1: 100 lead-gen events/request", "w1", LEAD_PATH, HEADER, "wrk"),
    "w2": Workload("w2", "W2: 1 lead-gen event/request", "w2", LEAD_PATH, HEADER, "wrk"),
}


_PG_SCHEMAS: list[str] = []  # created by the capigate targets on PostgreSQL, dropped at the end


def _drop_schemas(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for schema in _PG_SCHEMAS:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def install_prism() -> str:
    """Prism's version, after installing it into bench/.node with npm if it is not there."""
    if not PRISM.exists():
        NODE_DIR.mkdir(exist_ok=True)
        print(f"peer: installing {PRISM_PACKAGE} into {NODE_DIR} with npm", file=sys.stderr)
        subprocess.run(
            ["npm", "install", "--no-fund", "--no-audit", "--prefix", str(NODE_DIR), PRISM_PACKAGE], check=True
        )
    return subprocess.run([str(PRISM), "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _command(name: str, port: int, args: argparse.Namespace, workdir: Path) -> tuple[list[str], dict[str, str], Path]:
    """The command, its environment and its working directory (``python -m`` imports from it first)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if name in ("prism", "prism-quiet"):
        # prism: as installed (its default log level, as issue 16 measured it); prism-quiet logs
        # errors only: at its default level it writes a few lines per request, which costs
        # it most of its throughput (capigate's own journal stays on in both).
        quiet = ["--verboseLevel", "error"] if name == "prism-quiet" else []
        return [str(PRISM), "mock", "--host", HOST, "--port", str(port), *quiet, str(SPEC)], env, REPO
    if name in CEILINGS:
        interface, app = CEILINGS[name]
        granian = ["--interface", interface, "--host", HOST, "--port", str(port), "--workers", str(args.workers)]
        return [sys.executable, "-m", "granian", *granian, "--no-access-log", "--backlog", "2048", app], env, REPO
    config = workdir / "capigate.toml"
    config.write_text(CONFIG_TOML)
    cwd = REPO
    if "@" in name:
        cwd = archive(name.partition("@")[2], workdir)
        env |= ref_env(cwd)
    db = args.db or str(workdir / "capigate.db")
    if db.startswith("postgresql://"):
        sep = "&" if "?" in db else "?"
        schema = f"capigate_peer_{os.getpid()}_{port}"
        _PG_SCHEMAS.append(schema)
        db = f"{db}{sep}schema={schema}"
    workers = name.rpartition("-")[2].removesuffix("w") if name.endswith("w") else str(args.workers)
    serve = ["serve", "--config", str(config), "--db", db, "--host", HOST, "--port", str(port)]
    return [sys.executable, "-m", "capigate", *serve, "--workers", workers, "--no-relay"], env, cwd


def _accepts(port: int, body: bytes) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("POST", LEAD_PATH, body, {"Content-Type": "application/json", HEADER[0]: HEADER[1]})
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def start(name: str, args: argparse.Namespace, root: Path, probe: bytes) -> Target:
    workdir = root / name.replace("@", "-at-")
    workdir.mkdir(parents=True)
    port = free_port()
    cmd, env, cwd = _command(name, port, args, workdir)
    log = workdir / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
            start_new_session=True, preexec_fn=die_with_harness,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-2000:]}")
        if _accepts(port, probe):
            return Target(name, proc, port, log)
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(f"{name} did not accept a valid body within 60 s:\n{log.read_text(errors='replace')[-2000:]}")


def _measure(target: Target, work: Workload, bodies: BodySet, seconds: int, settings: LoadSettings) -> dict[str, Any]:
    sampler = TreeSampler(target.proc.pid)
    sampler.start()
    try:
        load = _wrk(target.port, work, bodies, seconds, settings)
    finally:
        sampler.stop()
    return load | {"cpu_pct": sampler.summary().get("cpu_pct")}


def _figure(load: dict[str, Any], key: str) -> float:
    return float(load["events_per_s"] if key == "w1" else load["rps"])


def _ratios(targets: list[Target], rounds: int) -> dict[str, dict[str, dict[str, Any]]]:
    """For each workload and each pair (capigate-like target, reference): the ratio of their
    figures in each round, and the median."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    references = [t for t in targets if not t.name.startswith("capigate")]
    ours = [t for t in targets if t.name.startswith("capigate")]
    pairs = [(a, b) for a in ours for b in references]
    pairs += [(a, b) for i, a in enumerate(ours) for b in ours[i + 1 :]]
    for key in WORKLOADS:
        for a, b in pairs:
            if key not in a.rounds or key not in b.rounds:
                continue
            per_round = [
                _figure(x, key) / _figure(y, key) if _figure(y, key) else 0.0
                for x, y in zip(a.rounds[key], b.rounds[key], strict=True)
            ][:rounds]
            out.setdefault(key, {})[f"{a.name} / {b.name}"] = {
                "per_round": [round(r, 3) for r in per_round],
                "median": round(statistics.median(per_round), 3),
            }
    return out


def render(result: dict[str, Any]) -> str:
    lines = [
        "# capigate side by side with a peer (Prism mocking the seed lead-gen OpenAPI)",
        "",
        f"- **date**: {result['started']} → {result['finished']}",
        machine_line(result),
        f"- **prism**: {result.get('prism_version', '—')}; **capigate workers**: {result['workers']}; "
        f"**store**: {result['store']}",
        f"- **load**: wrk {result['threads']} threads, {result['connections']} connections, "
        f"{result['duration_s']} s per target per workload per round, {result['rounds']} rounds, order rotated",
        f"- **command**: `{result['command']}`",
        "",
        "| workload | target | "
        + " | ".join(f"round {i + 1}" for i in range(result["rounds"]))
        + " | median | CPU % (median) | non-2xx |",
        "|---|---|" + "--:|" * (result["rounds"] + 3),
    ]
    for key, work in WORKLOADS.items():
        unit = "events/s" if key == "w1" else "req/s"
        for name, per_workload in result["targets"].items():
            runs = per_workload.get(key, [])
            if not runs:
                continue
            figures = [_figure(r, key) for r in runs]
            cpu = statistics.median(r.get("cpu_pct") or 0 for r in runs)
            errors = sum(r["non_2xx"] + r["socket_errors"] for r in runs)
            cells = " | ".join(f"{f:,.0f}" for f in figures)
            lines.append(
                f"| {work.title} ({unit}) | {name} | {cells} | {statistics.median(figures):,.0f} | {cpu:.0f} | {errors} |"
            )
    lines += ["", "| workload | ratio | per round | median |", "|---|---|---|--:|"]
    for key, pairs in result["ratios"].items():
        for pair, r in pairs.items():
            per = " · ".join(f"{x:.2f}" for x in r["per_round"])
            lines.append(f"| {WORKLOADS[key].title} | {pair} | {per} | **{r['median']:.2f}x** |")
    lines += [
        "",
        "W1 counts events/s (2xx answers x 100), W2 req/s. CPU %: the target's process tree, 100 = one core.",
        "Prism checks each request against the OpenAPI and answers; capigate also hashes, stores",
        "(SQLite `synchronous=full`, committed before the 200) and journals every request.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="prism,prism-quiet,capigate,ceiling-rsgi")
    parser.add_argument("--ref", action="append", default=[], help="also run capigate@REF (a git commit)")
    parser.add_argument("--workloads", default="w1,w2")
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--duration", type=positive_int, default=5)
    parser.add_argument("--warmup", type=non_negative_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--connections", type=positive_int, default=64)
    parser.add_argument("--workers", type=positive_int, default=1)
    parser.add_argument("--db", default=None, help="capigate's store (default: a fresh SQLite file)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "peer"))
    parser.add_argument("--no-ratios", action="store_true", help="skip the in-process ratios")
    args = parser.parse_args()
    names = [n for n in args.targets.split(",") if n] + [f"capigate@{r}" for r in args.ref]
    workloads = [WORKLOADS[k] for k in args.workloads.split(",")]
    settings = LoadSettings(args.threads, args.connections, 0.0, args.workers)
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": "bench/run.sh peer " + " ".join(sys.argv[1:]),
        "rounds": args.rounds, "duration_s": args.duration, "threads": args.threads,
        "connections": args.connections, "workers": args.workers,
        "store": "postgresql" if (args.db or "").startswith("postgresql://") else "sqlite",
        "busy_before_pct": machine_busy_pct(2.0),
        "cpu": cpu_model(),
        "native": native_status(),
    }  # fmt: skip
    if {"prism", "prism-quiet"} & set(names):
        result["prism_version"] = install_prism()
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="capigate-peer-") as tmp:
        root = Path(tmp)
        sets = write_lead_gen_sets(root / "bodies", batches=300, singles=1000, population=50_000)
        probe = sets["w2"].path(0).read_bytes().replace(b"@@RQ@@", b"probe")
        try:
            for name in names:
                targets.append(start(name, args, root, probe))
            for work in workloads:  # warm-up: imports, caches, the first pages of the db
                for t in targets:
                    _measure(t, work, sets[work.bodies], args.warmup, settings)
            for r in range(args.rounds):
                order = targets[r % len(targets) :] + targets[: r % len(targets)]
                for work in workloads:
                    for t in order:
                        load = _measure(t, work, sets[work.bodies], args.duration, settings)
                        t.rounds.setdefault(work.key, []).append(load)
                        print(f"round {r + 1} {work.key} {t.name}: {_figure(load, work.key):,.0f}", file=sys.stderr)
        finally:
            for t in targets:
                stop_server(t.proc)
            if _PG_SCHEMAS:
                _drop_schemas(args.db)
    result["targets"] = {t.name: t.rounds for t in targets}
    result["ratios"] = _ratios(targets, args.rounds)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out = Path(args.out).resolve()  # the in-process runs of a --ref run in its own tree
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(render(result))
    print(render(result))
    if not args.no_ratios:
        in_process_ratios(out, args.ref)


def in_process_ratios(out: Path, refs: list[str]) -> None:
    """``python -m bench.in_process --ratios`` for this tree, then for each commit of ``refs``
    (its capigate, this bench), alternated twice: ``{out}-in-process[-REF][-2].md``."""
    with tempfile.TemporaryDirectory(prefix="capigate-peer-ratios-") as tmp:
        trees = {ref: archive(ref, Path(tmp)) for ref in refs}
        for run in ("", "-2"):
            cmd = [sys.executable, "-m", "bench.in_process", "--ratios", "--out", f"{out}-in-process{run}"]
            subprocess.run(cmd, cwd=REPO, check=True)
            for ref, tree in trees.items():
                env = ref_env(tree, with_repo=True)
                cmd[-1] = f"{out}-in-process-{ref}{run}"
                subprocess.run(cmd, cwd=tree, env=env, check=True)


if __name__ == "__main__":
    main()
