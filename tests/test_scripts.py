"""scripts/_venv.sh, which scripts/serve and scripts/test source: it says what it installs
before the minute of pip, and says it is done; once installed, it says nothing. pip's own
output is shown only when it fails: its warnings buried scripts/test's banner (a trial)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A project as small as pip can install, so that the script's first run takes seconds.
PROJECT = """\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "capigate-venv-probe"
version = "0"
dependencies = ["packaging"]  # one that pip looks up: it warns of the index below then

[tool.hatch.build.targets.wheel]
packages = ["probe"]
"""


def _source_venv(clone: Path, install: str, extras: str) -> subprocess.CompletedProcess[str]:
    script = f'source scripts/_venv.sh {install} "{extras}" && echo "venv: $VENV"'
    # An index without the packages: pip warns of it for every package it looks up, as it did
    # of the machine's own pip.conf in the trial.
    missing = clone / "empty-index"
    missing.mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", "-c", script],
        cwd=clone,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHON": sys.executable,
            "HOME": str(clone),
            "PIP_EXTRA_INDEX_URL": missing.as_uri(),
        },
        capture_output=True,
        text=True,
        timeout=110,
    )


def test_the_first_run_says_it_installs_then_that_it_is_done_and_later_runs_are_quiet(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_venv.sh", clone / "scripts" / "_venv.sh")
    (clone / "pyproject.toml").write_text(PROJECT)
    (clone / "probe").mkdir()
    (clone / "probe" / "__init__.py").write_text("")

    first = _source_venv(clone, "runtime", "")
    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    assert lines[0] == "installing capigate and its dependencies into .venv (first run, ~1 min)…", lines
    assert lines[-1].startswith("installed capigate and its dependencies into .venv in "), lines
    assert len(lines) == 2, lines  # pip's warnings are not shown when it succeeds
    assert first.stdout == f"venv: {clone / '.venv'}\n"

    again = _source_venv(clone, "runtime", "")
    assert (again.returncode, again.stderr) == (0, ""), again.stderr


def test_a_failed_install_shows_pips_output_and_stops(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_venv.sh", clone / "scripts" / "_venv.sh")
    (clone / "pyproject.toml").write_text(PROJECT.replace('version = "0"', 'version = "not a version"'))
    failed = _source_venv(clone, "runtime", "")
    assert failed.returncode != 0 and failed.stdout == "", failed.stdout
    lines = failed.stderr.splitlines()
    assert lines[0] == "installing capigate and its dependencies into .venv (first run, ~1 min)…", lines
    assert "not a version" in failed.stderr, failed.stderr  # pip's own words, why it failed
    assert lines[-1] == "could not install capigate and its dependencies into .venv: pip's output is above", lines
    assert not (clone / ".venv" / ".capigate-installed-runtime").exists()


def test_test_fast_leaves_out_a_test_that_starts_a_gateway_on_postgresql() -> None:
    """scripts/test-fast runs ``-m "not postgresql and not browser"`` with PostgreSQL's URL at a
    closed port: a test that started a gateway with ``served_on("postgresql", …)`` was not
    marked (tests/conftest.py read its code for other names), and failed there (a trial)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "postgresql",
         "tests/test_docs.py", "tests/test_query_api.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_the_readme_reads_an_event_by_an_id_a_postgresql_store_gave" in done.stdout, done.stdout


def test_a_test_run_stopped_with_sigterm_stops_the_gateways_its_tests_started(tmp_path: Path) -> None:
    """``kill -TERM -- -<pgid>`` of ``./scripts/test`` (a CI cancel, ``timeout``) ended pytest,
    and the gateways its tests had started in sessions of their own ran on, with their workers
    and writers (a trial); Ctrl-C left none. SIGTERM now stops the run as SIGINT does: the
    test's ``finally`` and the fixture's teardown stop them before pytest ends."""
    with _victim_run(tmp_path) as (run, gateways):
        os.killpg(run.pid, signal.SIGTERM)  # the test run's group: not the gateways', their own
        output = run.communicate(timeout=60)[0]
        assert "KeyboardInterrupt: SIGTERM" in output, output
        left = [pid for pid in gateways if _group_alive(pid)]
        assert left == [], f"gateways (process groups) still running after the run ended: {left}\n{output}"


def test_a_test_run_killed_leaves_no_gateway_running(tmp_path: Path) -> None:
    """SIGKILL runs no teardown: pytest-timeout in a test that runs pytest (tests/test_native.py
    runs tests/test_axon_typed.py, which runs the Axon tests) killed the inner run, and its
    gateways ran on. A gateway a test starts gets SIGTERM when pytest dies (the parent-death
    signal), and stops."""
    with _victim_run(tmp_path) as (run, gateways):
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate(timeout=60)
        deadline = time.monotonic() + 30
        while any(_group_alive(pid) for pid in gateways) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in gateways if _group_alive(pid)] == []


@contextlib.contextmanager
def _victim_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """A pytest of tests/sigterm_victim.py, in a session of its own as ``./scripts/test`` may
    be, once its test has started its two gateways (their pids: their process groups); what
    runs of it afterwards is killed."""
    pids = tmp_path / "pids"
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sigterm_victim.py"],
        cwd=ROOT, env={**os.environ, "CAPIGATE_VICTIM_PIDS": str(pids)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    gateways: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while not pids.exists() or not pids.read_text().endswith("\n"):
            assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
            time.sleep(0.1)
        gateways = [int(pid) for pid in pids.read_text().split()]
        assert all(_group_alive(pid) for pid in gateways)
        yield run, gateways
    finally:
        for pid in gateways:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` (a gateway started with start_new_session: its
    workers and writer too) still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
