"""`capigate serve` start-up and process life, reproduced for real: a second server on the same
port, a port held by another program, an unusable database path, kill -9 of the main process
and of a worker."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DIE_WITH_PYTEST, Server, free_port, make_server
from tests.helpers import batch, children, purchase

START_TIMEOUT_S = 30.0


def _serve(server: Server, *extra: str, db: str | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "capigate",
        "serve",
        "--config",
        str(server.config),
        "--db",
        db or str(server.db),
        "--port",
        str(server.port),
        *extra,
    ]


def _run_to_exit(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs a command that must exit by itself; one that serves instead is killed (a failure)."""
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
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


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path / "first")
    srv.start(timeout_s=START_TIMEOUT_S)
    yield srv
    srv.stop()
    assert srv.proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(srv.proc.pid, signal.SIGKILL)  # workers a failed test may have orphaned


def test_a_second_serve_on_the_same_port_refuses_with_one_line(running: Server, tmp_path: Path) -> None:
    second = make_server(tmp_path / "second")
    second.port = running.port
    result = _run_to_exit(_serve(second), tmp_path)
    assert result.returncode != 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert running.proc is not None
    holders = [running.proc.pid, *children(running.proc.pid)]
    assert any(f"port {running.port} is in use (another capigate? pid {pid})" in lines[0] for pid in holders), lines
    # The first server still has the port to itself: every request is its own.
    with running.client() as c:
        statuses = [
            c.post(
                "/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"}
            ).status_code
            for _ in range(12)
        ]
    assert statuses == [200] * 12


def test_a_first_start_refused_for_its_port_leaves_no_configuration(running: Server, tmp_path: Path) -> None:
    """The first start writes capigate.toml with new keys and shows them once; refused, it left
    the file, and the next start read it, masked its keys, and no banner ever showed them."""
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    second = make_server(tmp_path / "second")
    second.port = running.port
    second.config = fresh / "capigate.toml"
    args = _serve(second)
    del args[args.index("--config") : args.index("--config") + 2]  # a first start: in its directory
    result = _run_to_exit(args, fresh)
    assert result.returncode != 0 and "is in use" in result.stdout, result.stdout
    assert not second.config.exists()


def test_the_port_is_not_shared_silently(running: Server) -> None:
    """Rule: no SO_REUSEPORT on the listening socket, so no other process can bind beside it."""
    family = socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError) as refused:
            other.bind(("127.0.0.1", running.port))
    assert refused.value.errno == errno.EADDRINUSE


def test_a_port_held_by_another_program_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    holder = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        preexec_fn=DIE_WITH_PYTEST,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            time.sleep(0.05)
        server = make_server(tmp_path / "gw")
        server.port = port
        result = _run_to_exit(_serve(server), tmp_path)
    finally:
        holder.terminate()
        holder.wait(timeout=10)
    assert result.returncode != 0
    assert result.stdout.strip().splitlines() == [
        f"Error: port {port} is in use (pid {holder.pid}: {sys.executable} -m http.server {port} --bind 127.0.0.1)"
    ]


def _assert_refused_before_listening(result: subprocess.CompletedProcess[str], db: Path, cause: str) -> None:
    assert result.returncode != 0
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert str(db) in lines[0] and cause in lines[0], lines[0]
    assert "Listening" not in result.stdout and "pending" not in result.stdout


def test_a_missing_database_directory_stops_serve_and_migrate(tmp_path: Path) -> None:
    server = make_server(tmp_path / "gw")
    db = tmp_path / "no-such-dir" / "capigate.db"
    _assert_refused_before_listening(_run_to_exit(_serve(server, db=str(db)), tmp_path), db, "does not exist")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/healthz", timeout=2)
    migrate = [sys.executable, "-m", "capigate", "migrate", "--config", str(server.config), "--db", str(db)]
    _assert_refused_before_listening(_run_to_exit(migrate, tmp_path), db, "does not exist")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a read-only file system (a tmpfs mounted ro) when we may mount, else a
    directory without write permission (which binds every user but root)."""
    directory = tmp_path / "ro"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o555)
        yield directory
        directory.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)], check=False)
    if mounted.returncode != 0:
        pytest.skip("root without the right to mount a read-only tmpfs")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_a_read_only_database_directory_stops_serve_and_migrate(tmp_path: Path, read_only_dir: Path) -> None:
    server = make_server(tmp_path / "gw")
    db = read_only_dir / "capigate.db"
    cause = "read-only file system" if os.geteuid() == 0 else "not writable"
    _assert_refused_before_listening(_run_to_exit(_serve(server, db=str(db)), tmp_path), db, cause)
    migrate = [sys.executable, "-m", "capigate", "migrate", "--config", str(server.config), "--db", str(db)]
    _assert_refused_before_listening(_run_to_exit(migrate, tmp_path), db, cause)


def test_workers_die_with_a_killed_main_process(running: Server, tmp_path: Path) -> None:
    assert running.proc is not None
    workers = children(running.proc.pid)
    assert workers
    os.kill(running.proc.pid, signal.SIGKILL)
    running.proc.wait(timeout=10)
    deadline = time.monotonic() + 5.0  # the rule is 1 to 2 s; slack for a loaded machine
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)], "workers outlived their parent"
    # And the port is free again: a new start takes it.
    again = make_server(tmp_path / "again")
    again.port = running.port
    again.start(timeout_s=START_TIMEOUT_S)
    again.stop()


def test_a_killed_worker_is_respawned_and_counted(running: Server) -> None:
    assert running.proc is not None
    (worker,) = children(running.proc.pid)
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        fresh = [w for w in children(running.proc.pid) if w != worker]
        if fresh:
            break
        time.sleep(0.05)
    assert running.proc.poll() is None, running.output()
    ok = False
    while time.monotonic() < deadline and not ok:
        with contextlib.suppress(httpx.TransportError):
            ok = httpx.get(f"{running.url}/readyz", timeout=1).status_code == 200
        time.sleep(0.05)
    assert ok, running.output()
    with running.client() as c:
        r = c.post("/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"})
        assert r.status_code == 200
        metrics = c.get("/metrics").text
    assert "capigate_worker_respawns_total 1\n" in metrics
