"""The benchmark of issue 16 runs: `bench/run.sh peer` (capigate beside an empty app, here;
Prism needs npm and minutes) and the in-process ratios. Nothing is asserted about speed."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from bench.procstat import cpu_model, machine_line, native_status
from tests.storekit import PG_URL

REPO = Path(__file__).resolve().parent.parent


def test_bench_peer_alternates_rounds_and_writes_the_ratio_table(tmp_path: Path) -> None:
    out = tmp_path / "peer"
    cmd = ["bench/run.sh", "peer", "--rounds", "2", "--duration", "1", "--warmup", "1"]
    cmd += ["--targets", "capigate,ceiling-rsgi", "--no-ratios", "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    for workload in ("w1", "w2"):
        runs = result["targets"]["capigate"][workload]
        assert len(runs) == 2 and all(r["non_2xx"] == 0 and r["ok_requests"] > 0 for r in runs)
        assert len(result["ratios"][workload]["capigate / ceiling-rsgi"]["per_round"]) == 2
    assert "capigate / ceiling-rsgi" in out.with_suffix(".md").read_text()
    assert f"**machine**: {cpu_model()}, " in out.with_suffix(".md").read_text()  # the hosts change


def test_in_process_ratios_measure_the_typed_decode_and_the_w2_pieces(tmp_path: Path) -> None:
    out = tmp_path / "ratios"
    cmd = [sys.executable, "-m", "bench.in_process", "--ratios", "--quick", "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    w1 = result["w1_purchase"]
    assert w1["typed_decode_us_per_event"] > 0 and w1["ratio_process"] > 1
    assert set(result["w2"]["pieces_us"]) == {
        "request object",
        "decode + rules + hashing",
        "journal record + metrics",
        "response",
    }


def test_in_process_measure_sends_new_events_after_its_warm_up(tmp_path: Path) -> None:
    """The measured requests came after a warm-up that numbered its requests from 0 too: every
    measured W1 event was a duplicate of a warm-up one, and the W1 ratio measured a writer that
    stored nothing. Each request's events are now new, warm-up or not."""
    import sqlite3

    import uvloop

    from bench.bodies import write_body_sets
    from bench.in_process import measure

    sets = write_body_sets(tmp_path / "bodies", batches=2, singles=5, population=50)
    bodies = [sets["w1"].path(i).read_bytes() for i in range(sets["w1"].count)]
    collector = gc.get_threshold(), gc.get_freeze_count()
    uvloop.run(measure(tmp_path, bodies, 6, 2))  # a warm-up of 6 requests, then 6 measured
    with sqlite3.connect(tmp_path / "capigate.db") as db:
        stored, duplicates = db.execute("SELECT sum(events_stored), sum(events_duplicate) FROM requests").fetchone()
    assert (stored, duplicates) == (12 * 100, 0)
    # It set the app up as a serve worker (garbage.settle), and gave this process its collector back.
    assert (gc.get_threshold(), gc.get_freeze_count()) == collector


def test_a_saved_run_names_its_own_raw_file_and_leaves_out_empty_tables() -> None:
    """Every run of bench/run.sh saved under another name called itself "latest run", sent the
    reader to latest.json (another run) and showed the fixed-rate table with no row."""
    from bench.report import render

    results = REPO / "bench" / "results"
    closed = render(json.loads((results / "rss-w1-300s-gc.json").read_text()), "rss-w1-300s-gc.json")
    assert closed.startswith("# capigate benchmark: run rss-w1-300s-gc\n")
    assert "Raw numbers: rss-w1-300s-gc.json." in closed
    assert "Latency at a fixed rate" not in closed  # no fixed-rate workload in that run
    fixed = render(json.loads((results / "rate-1000.json").read_text()), "rate-1000.json")
    assert "## Latency at a fixed rate" in fixed and "| W2 Axon at a fixed rate | capigate |" in fixed
    latest = render(json.loads((results / "latest.json").read_text()))
    assert latest.startswith("# capigate benchmark: latest run\n") and "Raw numbers: latest.json." in latest


def test_load_runs_against_one_server_send_no_dedupe_id_twice(tmp_path: Path) -> None:
    """The peer bench keeps each server through its warm-up and every round, and each wrk run
    numbered its requests from 1 again: from the second run on, capigate measured duplicates.
    wrk's script and loadgen now prefix each run's ids with a token of their own."""
    import sqlite3

    from bench.bodies import write_body_sets
    from bench.phases import WORKLOADS, LoadSettings, _wrk
    from bench.servers import free_port, start_server, stop_server

    sets = write_body_sets(tmp_path / "bodies", batches=1, singles=20, population=50)
    w2 = next(w for w in WORKLOADS if w.key == "w2-axon")
    port = free_port()
    proc = start_server("capigate", port=port, workers=1, workdir=tmp_path)
    try:
        runs = [_wrk(port, w2, sets["w2-axon"], 1, LoadSettings(1, 4, 0.0, 1)) for _ in range(2)]
    finally:
        stop_server(proc)
    assert all(r["ok_requests"] > 0 for r in runs)
    with sqlite3.connect(tmp_path / "capigate.db") as db:
        stored, duplicates = db.execute("SELECT sum(events_stored), sum(events_duplicate) FROM requests").fetchone()
    assert stored >= sum(r["ok_requests"] for r in runs) and duplicates == 0


@pytest.mark.timeout(900)  # valgrind runs ~50x slower than Python; on a loaded machine 120 s was not enough
def test_instructions_count_the_same_work_alike_and_the_rules_above_the_decode(tmp_path: Path) -> None:
    """bench/run.sh instructions: counted twice, the typed decode gives the same figure (the
    point of counting instructions on a loaded machine), and the rules cost more than it."""
    out = tmp_path / "instructions"
    cmd = ["bench/run.sh", "instructions", "--kinds", "typed decode,decode + rules", "--batches", "3", "--repeat"]
    done = subprocess.run([*cmd, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    trees = json.loads(out.with_suffix(".json").read_text())["trees"]
    first, again = trees["this tree"], trees["this tree, again"]
    assert abs(first["typed decode"] / again["typed decode"] - 1) < 0.02, (first, again)
    assert first["decode + rules"] > 2 * first["typed decode"] > 0
    assert "x typed decode" in out.with_suffix(".md").read_text()


def test_anatomy_splits_a_w2_request_into_in_app_and_around_and_its_cpu_by_thread(tmp_path: Path) -> None:
    """bench/run.sh anatomy: the journal's in-app latency of the round's answers, and the CPU of
    capigate's event loop and writer process; the empty app has neither journal nor writer."""
    out = tmp_path / "anatomy"
    cmd = ["bench/run.sh", "anatomy", "--rounds", "2", "--duration", "1", "--warmup", "1", "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    targets = json.loads(out.with_suffix(".json").read_text())["targets"]
    for figures in targets["capigate"]:
        assert figures["load"]["ok_requests"] > 0 and figures["load"]["non_2xx"] == 0
        assert figures["in_app"]["requests"] > 0
        assert figures["in_app"]["latency_ms"]["50"] <= figures["in_app"]["latency_ms"]["99"]
        assert {"worker: event loop", "writer process"} <= set(figures["cpu_us_per_request"])
        assert figures["cpu_us_per_request"]["worker: event loop"] > 0
        assert figures["cpu_pct"]["worker: event loop"]["waiting_pct"] >= 0  # schedstat: runnable, no CPU
    for figures in targets["ceiling-rsgi"]:
        assert "in_app" not in figures and "writer process" not in figures["cpu_us_per_request"]
    assert "| capigate |" in out.with_suffix(".md").read_text()
    assert "runnable but waited for a CPU" in out.with_suffix(".md").read_text()
    assert f"**machine**: {cpu_model()}, " in out.with_suffix(".md").read_text()


@pytest.mark.parametrize(
    ("workload", "title"),
    [("w1", "100 lead-gen events/request"), ("w1-shop", "100 shop events/request")],
    ids=["lead-gen", "shop"],
)
def test_anatomy_of_w1_batches_reports_the_batches_and_the_writer_process(
    tmp_path: Path, workload: str, title: str
) -> None:
    """bench/run.sh anatomy --workload w1: the peer run's batches of 100 events (w1-shop:
    bench/run.sh's own, to a standard pixel), each answered 200 and journaled, with the CPU of
    the writer process that stores them."""
    out = tmp_path / f"anatomy-{workload}"
    cmd = ["bench/run.sh", "anatomy", "--workload", workload, "--targets", "capigate", "--rounds", "1"]
    cmd += ["--duration", "1", "--warmup", "1", "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["workload"] == workload
    (figures,) = result["targets"]["capigate"]
    assert figures["load"]["ok_requests"] > 0 and figures["load"]["non_2xx"] == 0
    assert figures["in_app"]["requests"] > 0
    assert figures["cpu_us_per_request"]["writer process"] > 0
    assert f"# Anatomy of a {workload.upper()} request over HTTP" in out.with_suffix(".md").read_text()
    assert title in out.with_suffix(".md").read_text()


def test_wal_frames_names_the_b_trees_a_one_event_request_writes(tmp_path: Path) -> None:
    out = tmp_path / "new" / "frames-0.5"  # a directory to make, a dot that is no suffix
    cmd = [sys.executable, "-m", "bench.wal_frames", "--requests", "300", "--concurrency", "16", "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "new" / "frames-0.5.json").read_text())
    assert result["requests"] == result["events"] == result["warm_up"] + 300 and result["commits"] > 1
    assert sum(result["by_tree"].values()) == result["frames"]
    for tree in ("events", "dedupe_keys", "requests", "request_minutes"):  # each request writes these
        assert result["by_tree"][tree] > 1, tree
    assert "frames a commit" in (tmp_path / "new" / "frames-0.5.md").read_text()


def test_store_ingest_splits_the_cpu_of_an_event_between_the_writer_process_and_the_sender(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.store_ingest", "--events", "3000", "--coroutines", "4", "--writer", "process",
         "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("synchronous=")]
    assert len(lines) == 2, done.stdout
    for line in lines:
        writer, sender = (float(x) for x in re.findall(r"(?:writer process|sending process) ([0-9.]+) µs", line))
        assert writer > sender > 0, line  # the writer stores; the sender only encodes


def test_store_ingest_sends_random_dedupe_ids_as_uuids_and_reads_the_run_in_slices(tmp_path: Path) -> None:
    from bench.store_ingest import make_batches

    ordered = [e.dedupe_id for b in make_batches(300, "s") for e in b]
    assert ordered == [f"s-{n}" for n in range(300)]
    random_ids = [str(e.dedupe_id) for b in make_batches(300, "s", random_ids=True) for e in b]
    assert len(set(random_ids)) == 300
    assert all(uuid.UUID(d).version == 4 and str(uuid.UUID(d)) == d for d in random_ids)
    assert random_ids != sorted(random_ids)  # no order for the index to follow
    done = subprocess.run(
        [sys.executable, "-m", "bench.store_ingest", "--events", "3000", "--coroutines", "4", "--writer", "process",
         "--dedupe-ids", "random", "--slices", "3", "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    for mode in ("FULL", "NORMAL"):
        lines = [line for line in done.stdout.splitlines() if line.startswith(f"synchronous={mode}")]
        assert [re.search(r"\[([0-9,]+) stored\]", line).group(1) for line in lines] == ["1,000", "2,000", "3,000"]  # type: ignore[union-attr]
        assert all("(1,000 events in" in line for line in lines), lines


def test_pg_store_ingest_sends_random_dedupe_ids_and_reads_the_run_in_slices() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.pg_store_ingest", "--events", "600", "--coroutines", "2", "--dedupe-ids",
         "random", "--slices", "3", "--url", PG_URL],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("dedupe ids random\n"), done.stdout
    lines = [line for line in done.stdout.splitlines() if "events/s" in line]
    assert [re.search(r"\[([0-9,]+) stored\]", line).group(1) for line in lines] == ["200", "400", "600"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("tool", "argument", "says"),
    [
        ("bench.store_ingest", ["--events", "150"], "give a multiple of 100"),
        ("bench.pg_store_ingest", ["--events", "150"], "give a multiple of 100"),
        ("bench.store_ingest", ["--events", "200", "--slices", "3"], "more slices than batches (2)"),
        ("bench.store_ingest", ["--processes", "2", "--slices", "2"], "with --processes, leave it out"),
    ],
)
def test_store_benches_refuse_a_run_they_cannot_make_as_asked(tool: str, argument: list[str], says: str) -> None:
    """A count of events not in whole batches was rounded down (50 ended in a ZeroDivisionError's
    cousin, a range step of 0), and --slices was dropped silently with --processes."""
    done = subprocess.run([sys.executable, "-m", tool, *argument], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert says in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("tool", "argument"),
    [
        ("bench.in_process", ["--requests", "0"]),
        ("bench.wal_frames", ["--requests", "-5"]),
        ("bench.anatomy", ["--duration", "0"]),
        ("bench.peer", ["--rounds", "0"]),
        ("bench.loadgen", ["--port", "1", "--count", "1", "--rate", "nan"]),
        ("bench.store_ingest", ["--events", "many"]),
    ],
)
def test_bench_tools_refuse_a_count_with_nothing_to_measure(tool: str, argument: list[str]) -> None:
    """A count or duration below 1 ended a run dividing by zero, after its set-up; argparse
    now refuses it at once, naming the argument (bench/cli.py)."""
    done = subprocess.run([sys.executable, "-m", tool, *argument], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"argument {argument[-2]}:" in done.stderr and "Traceback" not in done.stderr


def test_a_result_page_says_whether_the_tree_ran_its_rules_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ref's tree from before capigate/native.py is named as such (an in-process run of one
    ended in an ImportError), and the page's machine lines carry what was recorded."""
    from capigate.native import status

    assert native_status() == status()
    line = machine_line({"busy_before_pct": 1.0, "cpu": "a CPU", "native": "off: CAPIGATE_NATIVE=0"})
    assert line.endswith("\n- **compiled modules** (`capigate native status`, this tree): off: CAPIGATE_NATIVE=0")
    monkeypatch.setitem(sys.modules, "capigate.native", None)  # importing it raises ImportError
    assert native_status() == "not in this tree (before capigate/native.py)"


def test_a_ref_runs_its_own_build_of_the_compiled_modules_never_this_trees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interpreter-wide build is this tree's: a ref reads its own directory (bench/refs.py),
    built only when this tree runs compiled, so an A/B compares commits run alike."""
    from bench import refs

    monkeypatch.setattr(refs, "native_status", lambda: "off: CAPIGATE_NATIVE=0")
    tree = refs.archive("HEAD", tmp_path)
    assert not (tree / "native").exists()
    probe = "import capigate, capigate.native as n; print(capigate.__file__); print(n.status())"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**refs.ref_env(tree), "CAPIGATE_NATIVE": "1"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        str(tree / "capigate" / "__init__.py"),
        f"off: not built (capigate native build makes {tree / 'native'})",
    ]
