"""Stopping `capigate serve` (SIGTERM, or Ctrl-C's SIGINT to the whole group): each worker
finishes its requests in flight and is killed only after ``STOP_TIMEOUT_S``
(capigate/serving.py), and a worker that stopped by itself is never reported as killed."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from granian.constants import Interfaces
from granian.server.mp import WorkerProcess

from capigate.serving import GatewayServer
from tests.conftest import make_server
from tests.helpers import batch, purchase


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.listener = socket.socket()  # the manager's, never bound: no worker serves here

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def granian_lines() -> Iterator[_Lines]:
    """What granian's process manager logs (its logger does not propagate to pytest's)."""
    handler = _Lines()
    with handler.listener:
        yield handler
    logging.getLogger("_granian").removeHandler(handler)


def _manager(tmp_path: Path, kill_timeout_s: int, lines: _Lines) -> GatewayServer:
    manager = GatewayServer(
        "capigate.gateway:app_from_env",
        interface=Interfaces.RSGI,
        workers_kill_timeout=kill_timeout_s,
        listener=lines.listener,
        respawns_file=tmp_path / "respawns",
    )
    logging.getLogger("_granian").addHandler(lines)  # after granian's dictConfig, which resets it
    return manager


def _stops_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    time.sleep(60)


def _ignores_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(60)


def _started(manager: GatewayServer, target: object) -> WorkerProcess:
    """A worker process without granian's watcher thread: the test plays that thread."""
    worker = WorkerProcess(manager, 0, target, ())  # type: ignore[no-untyped-call]
    worker.inner.start()
    time.sleep(0.2)  # its signal handler is set
    manager.wrks = [worker]
    return worker


def test_a_worker_reaped_by_its_watcher_is_not_reported_as_killed(tmp_path: Path, granian_lines: _Lines) -> None:
    """The window seen in the field ("Killing worker-1 after it refused to gracefully stop" 15-20
    ms after "Shutting down granian"): the worker stopped at once and granian's watcher thread
    reaped it, but had not yet recorded its exit code when the stop asked whether it lived."""
    manager = _manager(tmp_path, 30, granian_lines)
    worker = _started(manager, _stops_on_sigterm)
    os.kill(worker.inner.pid, signal.SIGTERM)
    os.waitpid(worker.inner.pid, 0)  # what the watcher thread's join does
    started = time.monotonic()
    manager._stop_workers()
    assert granian_lines.lines == ["Stopped worker-1"]
    assert time.monotonic() - started < 1


def test_a_worker_that_does_not_stop_is_killed_after_the_timeout(tmp_path: Path, granian_lines: _Lines) -> None:
    manager = _manager(tmp_path, 1, granian_lines)
    worker = _started(manager, _ignores_sigterm)
    started = time.monotonic()
    manager._stop_workers()
    waited_s = time.monotonic() - started
    assert granian_lines.lines == ["Killing worker-1 after it refused to gracefully stop", "Stopped worker-1"]
    assert 0.9 <= waited_s < 3, waited_s
    assert worker.inner.exitcode == -signal.SIGKILL


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_request_in_flight_is_answered_when_the_server_stops(tmp_path: Path, sig: int) -> None:
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    body = json.dumps(batch(purchase())).encode()
    head = (
        "POST /v1/event?pixel_id=px_std HTTP/1.1\r\nHost: gw\r\nAuthorization: key-std\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as conn:
        conn.sendall(head + body[:20])  # the body trickles: the request is in flight
        time.sleep(0.3)
        stopped_at = time.monotonic()
        os.killpg(server.proc.pid, sig)  # as Ctrl-C reaches the whole group
        time.sleep(1.0)
        conn.sendall(body[20:])
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    server.proc.wait(timeout=15)
    assert time.monotonic() - stopped_at < 10
    output = server.output()
    assert server.proc.returncode == 0, output
    assert "Killing" not in output and "Stopped worker-1" in output, output
