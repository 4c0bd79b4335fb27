"""Stopping `capigate serve` (SIGTERM, or Ctrl-C's SIGINT to the whole group): each worker
finishes its requests in flight and is killed only after ``STOP_TIMEOUT_S``
(capigate/serving.py), and a worker that stopped by itself is never reported as killed."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import granian._signals
import pytest
from granian.constants import Interfaces
from granian.server import MPServer
from granian.server.mp import WorkerProcess

import capigate.serving as serving
from capigate.http.app import ORPHAN_GRACE_S, STOP_BODY_GRACE_S
from capigate.metrics import shared_dir
from capigate.relay.worker import STOP_GRACE_S
from capigate.serving import GatewayServer
from tests.conftest import DEFAULT_CONFIG, Server, make_server
from tests.helpers import Load, batch, children, page_view, purchase, stored_and_journaled, wait_until
from tests.upstream import Reply, Upstream


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


def _manager(
    tmp_path: Path, kill_timeout_s: int, lines: _Lines, kind: type[GatewayServer] = GatewayServer
) -> GatewayServer:
    manager = kind(
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


class _Replacing(GatewayServer):
    """Starts, as each new worker, a process that stops on SIGTERM (not a gateway)."""

    def _spawn_worker(self, idx: int, *_: object, **__: object) -> WorkerProcess:
        return WorkerProcess(self, idx, _stops_on_sigterm, ())  # type: ignore[no-untyped-call]


def test_a_replaced_worker_reaped_by_its_watcher_is_not_reported_as_killed(
    tmp_path: Path, granian_lines: _Lines
) -> None:
    """A reload (SIGHUP) or a respawn replaces each worker and awaits the old one with granian's
    own check, which read a worker its watcher thread had reaped as alive: "Killing old worker-1
    after it refused to gracefully stop", seen once in about ten reloads under load."""
    manager = _manager(tmp_path, 30, granian_lines, _Replacing)
    old = _started(manager, _stops_on_sigterm)
    os.kill(old.inner.pid, signal.SIGTERM)
    os.waitpid(old.inner.pid, 0)  # what the watcher thread's join does
    started = time.monotonic()
    manager._respawn_workers([0], None, None)
    try:
        assert time.monotonic() - started < 1
        assert [line for line in granian_lines.lines if "old worker" in line] == [
            "Stopping old worker-1",
            "Stopped old worker-1",
        ], granian_lines.lines
        assert manager.wrks[0] is not old and manager.wrks[0].inner.is_alive()
    finally:
        manager._stop_workers()


def test_a_worker_that_does_not_stop_is_killed_after_the_timeout(tmp_path: Path, granian_lines: _Lines) -> None:
    manager = _manager(tmp_path, 1, granian_lines)
    worker = _started(manager, _ignores_sigterm)
    started = time.monotonic()
    manager._stop_workers()
    waited_s = time.monotonic() - started
    assert granian_lines.lines == ["Killing worker-1 after it refused to gracefully stop", "Stopped worker-1"]
    assert 0.9 <= waited_s < 3, waited_s
    assert worker.inner.exitcode == -signal.SIGKILL


def _ingest(events: dict[str, object]) -> tuple[bytes, bytes]:
    """The head and body of an ingest request, to send in parts."""
    body = json.dumps(events).encode()
    head = (
        "POST /v1/event?pixel_id=px_std HTTP/1.1\r\nHost: gw\r\nAuthorization: key-std\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head, body


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_request_in_flight_is_answered_when_the_server_stops(tmp_path: Path, sig: int) -> None:
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    head, body = _ingest(batch(purchase()))
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


def _gone_within(pid: int, timeout_s: float) -> bool:
    """Whether ``pid`` has exited (a zombie counts: its parent may not have reaped it yet)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _deliver(pid: int, sig: int) -> None:
    """Send ``sig`` and wait until the kernel has delivered it: two of the same signal sent
    before the first is delivered arrive as one."""
    os.kill(pid, sig)
    bit = 1 << (sig - 1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return  # gone
        pending = [int(line.split()[1], 16) for line in status.splitlines() if line.startswith(("SigPnd:", "ShdPnd:"))]
        if not any(mask & bit for mask in pending):
            return
    raise AssertionError(f"signal {sig} still pending for pid {pid} after 5 s")


def test_a_worker_under_load_sent_sigint_then_sigterm_twice_stops_at_once_and_journals_every_request(
    tmp_path: Path,
) -> None:
    """Ctrl-C's SIGINT reaches each worker with the SIGTERM its server sends: granian's handler
    called its shutdown's blocking ``set()`` once per signal, and the one set() too many hung
    the worker, holding the GIL, until it was killed 30 s later with its journal entries."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    try:
        with Load(server, senders=2) as load:
            load.wait_for(200)
            (worker,) = children(server.proc.pid)
            event = purchase()
            head, body = _ingest(batch(event))
            with socket.create_connection(("127.0.0.1", server.port), timeout=15) as conn:
                conn.sendall(head + body[:20])  # in flight: the worker drains it, signals keep coming
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGTERM):
                    _deliver(worker, sig)
                time.sleep(0.5)  # the request stays in flight while the worker's loop runs their handlers
                conn.sendall(body[20:])
                answer = conn.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            load.acked.append(event["dedupe_id"])
            assert _gone_within(worker, 10), "the worker did not stop within 10 s"
    finally:
        server.stop()
    output = server.output()
    assert server.proc.returncode == 0, output[-2000:]
    assert "refused to gracefully stop" not in output, output[-2000:]
    stored, journaled = stored_and_journaled(Path(server.db))
    assert [d for d in load.acked if d not in stored] == [] and max(stored.values()) == 1
    assert journaled == sum(stored.values())


def test_a_worker_sent_sigterm_as_it_starts_stops(tmp_path: Path) -> None:
    """Until the worker's own handlers are set it runs the handler it inherited from the server
    process, which only told that (forked) copy of the server to stop: the SIGTERM was lost and
    the worker served on. Sent the moment the worker exists, before CPython's after-fork step in
    the child, it was lost too (that step forgets the signals already caught): the server holds
    SIGINT and SIGTERM blocked while it forks, and the child unblocks them after that step."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    try:
        (first,) = children(server.proc.pid)
        os.kill(first, signal.SIGKILL)  # granian starts another
        fresh: list[int] = []
        deadline = time.monotonic() + 20
        while not fresh and time.monotonic() < deadline:  # no sleep: the signal goes at its birth
            fresh = [w for w in children(server.proc.pid) if w != first]
        assert fresh, server.output()[-2000:]
        os.kill(fresh[0], signal.SIGTERM)
        assert _gone_within(fresh[0], 10), "a worker sent SIGTERM as it started did not stop"
    finally:
        server.stop()


def test_a_half_sent_request_head_does_not_hold_the_stop(tmp_path: Path) -> None:
    """hyper waits for a request head it has begun to read, until header_timeout_s (10 s): one
    client holding half a head held a stopping worker past Docker's 10 s (a tryout: 10.3 s,
    30.2 s and a kill with header_timeout_s = 60). The worker closes, as it stops, every
    connection carrying no request it is answering; a request in flight is still answered."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    head, body = _ingest(batch(purchase()))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=15) as half,
        socket.create_connection(("127.0.0.1", server.port), timeout=15) as in_flight,
    ):
        half.sendall(b"POST /v1/event?pixel_id=px_std HTTP/1.1\r\nHost: gw\r\n")
        in_flight.sendall(head + body[:20])
        time.sleep(0.5)
        stopped_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        in_flight.sendall(body[20:])
        answer = in_flight.recv(65536)
        server.proc.wait(timeout=15)
        stopped_s = time.monotonic() - stopped_at
        assert half.recv(65536) == b""  # closed without an answer: the client sends it again
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert stopped_s < 5, stopped_s
    assert server.proc.returncode == 0 and "Killing" not in server.output(), server.output()[-2000:]


def test_a_request_head_trickled_through_the_stop_is_cut_after_the_grace(tmp_path: Path) -> None:
    """A head that keeps coming, a byte every quarter of a second, is never quiet for a second:
    it held a stopping worker until header_timeout_s (here 60 s: until the kill). Like a body
    still arriving, it gets STOP_BODY_GRACE_S, then its connection is closed unanswered."""
    config = DEFAULT_CONFIG.replace("[server]\n", "[server]\nheader_timeout_s = 60\n", 1)
    server = make_server(tmp_path / "gw", config)
    server.start()
    assert server.proc is not None
    head = b"POST /v1/event?pixel_id=px_std HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"a" * 400
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as slow:
        slow.sendall(head[:40])
        stopped_at = 0.0
        for n, byte in enumerate(head[40:]):
            if n == 4:
                stopped_at = time.monotonic()
                server.proc.send_signal(signal.SIGTERM)
            try:
                slow.sendall(bytes([byte]))
            except OSError:  # closed by the worker
                break
            if server.proc.poll() is not None:
                break
            time.sleep(0.25)
        server.proc.wait(timeout=60)
        stopped_s = time.monotonic() - stopped_at
    assert stopped_s < STOP_BODY_GRACE_S + 5, stopped_s  # not header_timeout_s, nor the kill at 30 s
    assert server.proc.returncode == 0 and "Killing" not in server.output(), server.output()[-2000:]


def test_a_stopped_server_leaves_no_shared_metrics_directory(tmp_path: Path) -> None:
    """The workers share their counters in a directory named after the server process: every
    stop left it behind in /tmp, empty (658 of them on a machine that ran the tests)."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    shared = shared_dir(server.proc.pid)
    wait_until(shared.is_dir, what="the workers' shared directory")
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=15)
    assert server.proc.returncode == 0, server.output()
    assert not shared.exists()


def test_a_killed_servers_shared_metrics_directory_goes_at_the_next_start(tmp_path: Path) -> None:
    """kill -9 leaves the directory (no stop ran to remove it): they piled up in /tmp, and a
    server given a dead one's pid again (PID 1 in a restarted container) would read its
    counters as its own. The next server to start removes those whose process is gone."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    killed = shared_dir(server.proc.pid)
    wait_until(killed.is_dir, what="the workers' shared directory")
    workers = children(server.proc.pid)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=15)
    for pid in workers:  # orphans of the kill: they stop once they see their parent gone, or now
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert killed.is_dir()
    again = make_server(tmp_path / "gw2")
    again.start()
    try:
        assert not killed.exists()
    finally:
        again.stop()


def test_a_stopped_server_leaves_only_its_database_and_lock_file(tmp_path: Path) -> None:
    """After load and reads, a clean stop left a -wal of tens of MB and the -shm beside the
    database: a read-only connection of the worker closed last."""
    server = make_server(tmp_path / "gw")
    server.start()
    with Load(server, 4) as load:
        load.wait_for(40)
    with server.admin() as admin:
        for _ in range(6):  # the readers read, and keep their lock until they close
            assert admin.get("/api/events", params={"limit": 5}).status_code == 200
    assert (tmp_path / "gw" / "capigate.db-wal").stat().st_size > 0
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0, server.output()
    assert sorted(p.name for p in (tmp_path / "gw").glob("capigate.db*")) == ["capigate.db", "capigate.db-writer.lock"]


def test_a_body_still_arriving_when_the_server_stops_gets_a_408_after_the_grace_not_the_body_timeout(
    tmp_path: Path,
) -> None:
    """A client trickling its body held its worker, at a stop, to the end of body_timeout_s
    (30 s): past Docker's 10 s, and up to the 30 s kill that loses the journal's buffer. It gets
    STOP_BODY_GRACE_S, then a 408 saying why, journaled; the worker then ends."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    head, body = _ingest(batch(purchase()))
    with socket.create_connection(("127.0.0.1", server.port), timeout=45) as conn:
        conn.sendall(head + body[:20])  # the rest never comes
        time.sleep(0.3)
        stopped_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        answer = conn.recv(65536)
        answered_s = time.monotonic() - stopped_at
    assert answer.startswith(b"HTTP/1.1 408 ") and b"the gateway is stopping" in answer, answer
    assert STOP_BODY_GRACE_S - 0.5 < answered_s < STOP_BODY_GRACE_S + 2, answered_s
    server.proc.wait(timeout=15)
    output = server.output()
    assert server.proc.returncode == 0 and "refused to gracefully stop" not in output, output[-2000:]
    with contextlib.closing(sqlite3.connect(server.db)) as db:
        assert db.execute("SELECT status FROM requests").fetchall() == [(408,)]


# Ours alone: called only by our own overrides.
_OWN_HELPERS = frozenset({"_kill_deadline", "_await_stop"})


def test_every_granian_method_the_server_replaces_is_still_granians() -> None:
    """capigate/serving.py replaces private methods of granian's MPServer (its stop, respawn,
    reload, shared socket) and its workers' ``set_loop_signals``. A granian release that renamed
    one, or changed its parameters, would leave ours never called, with no error: pyproject.toml
    caps granian at the minor version these were written against, and this names what it guards."""
    for name, ours in vars(GatewayServer).items():
        if not callable(ours) or name == "__init__" or name in _OWN_HELPERS:
            continue
        theirs = getattr(MPServer, name, None)
        assert theirs is not None, f"granian's MPServer has no {name}: GatewayServer.{name} would never run"
        assert _names(theirs) == _names(ours), f"granian's MPServer.{name} takes other parameters now"
    assert _names(granian._signals.set_loop_signals) == _names(serving._set_loop_signals)


def _names(fn: Any) -> list[str]:
    return [p for p, spec in inspect.signature(fn).parameters.items() if spec.kind is not spec.VAR_KEYWORD]


def _relaying(tmp_path: Path, upstream: Upstream, **relay: object) -> Server:
    """A gateway whose px_std relays to ``upstream``, tuned by ``relay``."""
    tuning = "\n".join(f"{key} = {json.dumps(value)}" for key, value in relay.items())
    config = DEFAULT_CONFIG.replace(
        'profile = "standard"\n', f'profile = "standard"\n[axon.pixels.relay]\nurl = "{upstream.url}"\n{tuning}\n', 1
    )
    return make_server(tmp_path, config)


def _outbox(db: Path | str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The attempts (result, status) and the outbox runs (state, attempts, lease owner)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        attempts = conn.execute("SELECT result, status FROM attempts ORDER BY id").fetchall()
        runs = conn.execute("SELECT state, attempts, lease_owner FROM outbox ORDER BY first_id").fetchall()
    return attempts, runs


def test_sigterm_cuts_a_hanging_upstream_request_short_and_the_next_start_delivers_its_event(tmp_path: Path) -> None:
    """A trial: SIGTERM took timeout_s (~10 s, Docker's patience) when the upstream hung, and
    logged a TimeoutError as a failed attempt. The relay now gives its requests in flight
    STOP_GRACE_S, cuts the rest short as ``interrupted`` (not an attempt against max_attempts),
    and the event waits, pending and unleased, for the next start."""
    with Upstream() as up:
        hang = threading.Event()
        up.script = lambda seen: None if hang.is_set() else Reply(hold=hang)
        server = _relaying(tmp_path / "gw", up, timeout_s=10)
        server.start()
        assert server.proc is not None
        event = purchase()
        with server.client() as client:
            answer = client.post("/v1/event?pixel_id=px_std", json=batch(event), headers={"Authorization": "key-std"})
        assert answer.status_code == 200, answer.text
        up.wait_for(lambda: len(up.seen) == 1, what="the relay's request")
        stopped_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=20)
        stopped_s = time.monotonic() - stopped_at
        output = server.output()
        assert server.proc.returncode == 0, output[-2000:]
        assert stopped_s < STOP_GRACE_S + 2, f"the stop took {stopped_s:.1f} s"
        assert "TimeoutError" not in output and "Traceback" not in output, output[-2000:]
        assert (
            f"1 request(s) had no answer within the stop's {STOP_GRACE_S:g} s and were cut short; their 1 event(s) are pending again"
            in output
        )
        assert _outbox(server.db) == ([("interrupted", None)], [("pending", 0, None)])
        hang.set()
        server.start()
        try:
            wait_until(lambda: _outbox(server.db)[1] == [("delivered", 1, None)], what="the event, at the next start")
        finally:
            server.stop()
        assert _outbox(server.db)[0] == [("interrupted", None), ("delivered", 200)]
        assert [s.events[0]["dedupe_id"] for s in up.requests()] == [event["dedupe_id"]] * 2


def test_a_worker_whose_server_is_killed_stops_relaying_at_once_and_gives_its_leases_back(tmp_path: Path) -> None:
    """A trial: after kill -9 of `capigate serve`, its worker (told by the parent-death signal)
    went on relaying for ~6 s beside the new server: its relay stopped only once its requests
    in flight (here a client's trickling body, 5 s) had drained. An orphan stops claiming at
    once, cuts its requests in flight short, gives back its leases, and ends within ~1 s."""
    with Upstream() as up:
        up.script = lambda seen: Reply(delay_s=0.3)
        server = _relaying(tmp_path / "gw", up, batch_size=1, timeout_s=10)
        server.start()
        assert server.proc is not None
        events = [page_view() for _ in range(100)]
        with server.client() as client:
            answer = client.post("/v1/event?pixel_id=px_std", json=batch(*events), headers={"Authorization": "key-std"})
        assert answer.status_code == 200, answer.text
        up.wait_for(lambda: len(up.seen) >= 8, what="the relay under way")
        (worker,) = children(server.proc.pid)
        head, body = _ingest(batch(purchase()))
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as trickling:
            trickling.sendall(head + body[:20])  # held the stop STOP_BODY_GRACE_S, the relay going on
            time.sleep(0.3)
            killed_at = time.monotonic()
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(timeout=10)
            assert _gone_within(worker, 3.0), f"the orphaned worker {worker} still runs 3 s after the kill"
            gone_s = time.monotonic() - killed_at
        late = [round(s.at - killed_at, 2) for s in up.requests() if s.at > killed_at + 0.5]
        assert late == [], f"the orphan sent {len(late)} request(s) after the kill, at +{late} s"
        output = server.output()
        assert "the capigate serve process is gone: this worker stops now" in output, output[-3000:]
        assert "cut short" in output and "lease(s) given back" in output, output[-3000:]
        assert gone_s < ORPHAN_GRACE_S + 1.5, gone_s
        assert all(owner is None for _, _, owner in _outbox(server.db)[1])  # every lease given back
        up.script = lambda seen: None
        again = make_server(tmp_path / "again")
        again.config, again.db = server.config, server.db  # the same store: nothing was lost
        again.start()
        try:
            wanted = {e["dedupe_id"] for e in events}
            up.wait_for(lambda: wanted <= set(up.dedupe_ids()), what="every event, after the restart")
        finally:
            again.stop()


def test_a_stopping_worker_that_finds_its_server_gone_is_told_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker's kill follows its SIGTERM: a worker already stopping gets the parent-death signal
    too. Its listeners hear of a stop once, and again (``True``) when the server process is gone;
    no third time."""
    stop = serving._WorkerStop()
    heard: list[bool] = []
    stop.listeners.append(heard.append)
    monkeypatch.setattr(serving, "_parent", os.getppid())  # the parent lives
    stop.request(signal.SIGTERM, None)
    stop.request(signal.SIGTERM, None)
    assert heard == [False]
    monkeypatch.setattr(serving, "_parent", os.getppid() + 1)  # not our parent now: it is gone
    stop.request(signal.SIGTERM, None)
    stop.request(signal.SIGTERM, None)
    assert heard == [False, True]
