"""What `capigate serve` and `capigate check-config` refuse before the port is bound, each with
one line and a non-zero exit, reproduced with real processes: a relay key read from an unset
environment variable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEFAULT_CONFIG, DIE_WITH_PYTEST, make_server
from tests.ops.test_startup import START_TIMEOUT_S, _serve


def _run_to_exit(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs a command that must exit by itself; one that serves instead is killed (a failure)."""
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        preexec_fn=DIE_WITH_PYTEST,
    )
    try:
        out, _ = proc.communicate(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"still running after {START_TIMEOUT_S} s instead of refusing to start:\n{out}")
    return subprocess.CompletedProcess(args, proc.returncode, out, None)


# The relay table belongs to the last pixel, px_restricted (TOML's array-of-tables rule).
RELAY_FROM_ENV = (
    DEFAULT_CONFIG + '\n[axon.pixels.relay]\nurl = "http://127.0.0.1:9/"\napi_key_env = "CAPIGATE_TEST_UNSET_KEY"\n'
)


def _capigate(*args: str) -> list[str]:
    return [sys.executable, "-m", "capigate", *args]


def _one_line(out: str) -> str:
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return lines[0]


@pytest.fixture
def unset_key() -> None:
    os.environ.pop("CAPIGATE_TEST_UNSET_KEY", None)


def test_a_relay_key_from_an_unset_variable_stops_check_config_and_serve(tmp_path: Path, unset_key: None) -> None:
    server = make_server(tmp_path / "gw", RELAY_FROM_ENV)
    checked = _run_to_exit(_capigate("check-config", "--config", str(server.config)), tmp_path)
    assert checked.returncode != 0
    line = _one_line(checked.stdout)
    assert "api_key_env" in line and "CAPIGATE_TEST_UNSET_KEY" in line and "not set" in line, line
    served = _run_to_exit(_serve(server), tmp_path)
    assert served.returncode != 0
    line = _one_line(served.stdout)
    assert "api_key_env" in line and "CAPIGATE_TEST_UNSET_KEY" in line and "not set" in line, line
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def _refused_before_listening(result: subprocess.CompletedProcess[str], db: str, cause: str) -> None:
    assert result.returncode != 0, result.stdout
    line = _one_line(result.stdout)
    assert db in line and cause in line, line
    assert "Listening" not in result.stdout and "pending" not in result.stdout


@pytest.mark.parametrize("make_db", ["text file", "file under /proc"])
def test_a_db_that_is_not_a_database_stops_serve_and_migrate(tmp_path: Path, make_db: str) -> None:
    server = make_server(tmp_path / "gw")
    if make_db == "text file":
        db, cause = tmp_path / "x.db", "not a SQLite database"
        db.write_text("hello\n")
    else:
        db, cause = Path("/proc/capigate.db"), "cannot create"
    _refused_before_listening(_run_to_exit(_serve(server, db=str(db)), tmp_path), str(db), cause)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)
    migrate = _capigate("migrate", "--config", str(server.config), "--db", str(db))
    _refused_before_listening(_run_to_exit(migrate, tmp_path), str(db), cause)
    if make_db == "text file":
        assert db.read_text() == "hello\n"  # the check changed nothing


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--port", "99999"], {}, "--port 99999"),
        (["--port", "-1"], {}, "--port -1"),
        ([], {"CAPIGATE_PORT": "70000"}, "CAPIGATE_PORT=70000"),
        (["--workers", "0"], {}, "--workers 0"),
        ([], {"CAPIGATE_WORKERS": "0"}, "CAPIGATE_WORKERS=0"),
    ],
)
def test_a_port_or_worker_count_out_of_range_is_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    server = make_server(tmp_path / "gw")
    command = _capigate("serve", "--config", str(server.config), "--db", str(server.db), *args)
    done = _run_to_exit(command, tmp_path, env)
    assert done.returncode != 0, done.stdout
    assert "Listening" not in done.stdout
    line = _one_line(done.stdout)
    assert named in line, line


@pytest.mark.parametrize(
    ("parameter", "cause"),
    [
        ("schema=NewUser_Caps", "schema 'NewUser_Caps': use lower-case letters, digits and _"),
        # a trial: '1bad' was told the rule it obeys; the rule said whole, as docs/deployment.md says it
        ("schema=1bad", "schema '1bad': use lower-case letters, digits and _, not starting with a digit, at most 63"),
        ("writers=0", "writers must be a whole number >= 1, not '0'"),
    ],
)
def test_a_bad_parameter_in_a_postgresql_url_is_one_line_and_exit_1(tmp_path: Path, parameter: str, cause: str) -> None:
    server = make_server(tmp_path / "gw")
    url = f"postgresql://postgres@127.0.0.1:1/test?{parameter}"  # refused before any connection
    for command in ("serve", "migrate"):
        done = _run_to_exit(_capigate(command, "--config", str(server.config), "--db", url), tmp_path)
        assert done.returncode == 1, done.stdout  # a configuration mistake, as every other
        line = _one_line(done.stdout)
        assert line.startswith("Error: store: ") and cause in line, line
