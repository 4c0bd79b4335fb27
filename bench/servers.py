"""Start and stop the servers under test: the ceiling apps and capigate, on 127.0.0.1 only."""

from __future__ import annotations

import ctypes
import hashlib
import http.client
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = [
    "AF_HEADER",
    "AF_PATH",
    "AXON_HEADER",
    "AXON_PATH",
    "CEILINGS",
    "CONFIG_TOML",
    "HOST",
    "REPO",
    "ServerError",
    "capigate_code_hash",
    "capigate_problem",
    "die_with_harness",
    "free_port",
    "start_server",
    "stop_server",
]

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
AXON_PATH = "/v1/event?pixel_id=px_bench"
AF_PATH = "/inappevent/com.example.bench"
AXON_HEADER = ("Authorization", "k")
AF_HEADER = ("authentication", "afkey")
# No [relay] section: nothing is forwarded, no traffic leaves 127.0.0.1.
CONFIG_TOML = """\
[server]
admin_token = "adm-bench"

[[axon.pixels]]
pixel_id = "px_bench"
api_key = "k"
profile = "standard"

[[appsflyer.apps]]
app_id = "com.example.bench"
keys = ["afkey"]
"""
# Keep in step with how `capigate serve` configures Granian (capigate/cli.py), so the servers
# differ only in the app they run (and, for the ASGI ceiling, the interface).
CEILING_GRANIAN_ARGS = ("--no-access-log", "--backlog", "2048")
# The empty apps, by target: (granian interface, app). "ceiling" (ASGI) is the reference the
# benchmark targets are defined against; "ceiling-rsgi" runs the interface `capigate serve` runs.
CEILINGS = {
    "ceiling": ("asgi", "bench.ceiling_app:app"),
    "ceiling-rsgi": ("rsgi", "bench.ceiling_app:rsgi_app"),
}


PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """A server did not start, or died: the message carries the tail of its log."""


def capigate_problem() -> str | None:
    """Why capigate cannot be benchmarked yet, or None if it looks runnable."""
    try:
        if importlib.util.find_spec("capigate") is None:
            return "the capigate package is not installed in this Python environment"
        if importlib.util.find_spec("capigate.cli") is None:
            return "capigate.cli does not exist yet: the server has not landed"
    except ImportError as exc:
        return f"capigate is not importable: {exc}"
    if _capigate_exe() is None:
        return "no `capigate` executable next to this Python or on PATH (pip install -e .)"
    return None


def capigate_code_hash() -> str:
    """A short hash of capigate's source as it is now: tells whether the code changed between
    two phases of a run (other people may be editing the tree while it runs)."""
    digest = hashlib.sha1()
    for path in sorted((REPO / "capigate").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".json", ".toml", ".html", ".js", ".css"):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _capigate_exe() -> str | None:
    beside = Path(sys.executable).parent / "capigate"
    return str(beside) if beside.exists() else shutil.which("capigate")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _command(target: str, port: int, workers: int, workdir: Path) -> list[str]:
    if target in CEILINGS:
        interface, app = CEILINGS[target]
        return [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            interface,
            "--host",
            HOST,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--working-dir",
            str(REPO),
            *CEILING_GRANIAN_ARGS,
            app,
        ]
    exe = _capigate_exe()
    if exe is None:
        raise ServerError(capigate_problem() or "capigate not found")
    config = workdir / "capigate.toml"
    config.write_text(CONFIG_TOML)
    return [
        exe,
        "serve",
        "--config",
        str(config),
        "--db",
        str(workdir / "capigate.db"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def die_with_harness() -> None:
    """Runs in a child before exec: ask Linux to SIGTERM it if the harness dies, so a killed
    run leaves no server (in its own session, out of our group) or load generator behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def start_server(
    target: str, *, port: int, workers: int, workdir: Path, timeout_s: float = 30.0
) -> subprocess.Popen[bytes]:
    """Start ``target`` (one of CEILINGS, or "capigate") and wait until GET /healthz answers 200."""
    log = workdir / f"{target}.log"
    cmd = _command(target, port, workers, workdir)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
            preexec_fn=die_with_harness,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"{target} exited with code {proc.returncode} before answering /healthz.\n"
                f"command: {' '.join(cmd)}\n--- {log} ---\n{_log_tail(log)}"
            )
        if _healthy(port):
            return proc
        time.sleep(0.2)
    stop_server(proc)
    raise ServerError(
        f"{target} did not answer GET /healthz within {timeout_s:.0f}s.\n"
        f"command: {' '.join(cmd)}\n--- {log} ---\n{_log_tail(log)}"
    )


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """SIGINT the server's own process group (it was started in a new session), then force."""
    for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
