"""SIGHUP to `capigate serve`: granian replaces the workers one by one, each new one reading
capigate.toml again (capigate/serving.py, GatewayServer._reload); a file with a mistake is
refused with one log line, and the workers keep serving."""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from capigate.metrics import FLUSH_INTERVAL_S
from tests.conftest import Server, make_server
from tests.helpers import batch, children, purchase, wait_until
from tests.test_relay_e2e import config as relay_config
from tests.upstream import Reply, Upstream


def _status(server: Server, key: str) -> int:
    with server.client() as c:
        answer = c.post("/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": key})
    return answer.status_code


def test_sighup_replaces_the_workers_which_read_the_configuration_again(tmp_path: Path) -> None:
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    try:
        (old,) = children(server.proc.pid)
        server.config.write_text(server.config.read_text().replace('api_key = "key-std"', 'api_key = "key-new"'))
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_until(lambda: "Stopped old worker-1" in server.output(), what="the old worker's stop")
        assert old not in children(server.proc.pid)
        assert (_status(server, "key-std"), _status(server, "key-new")) == (401, 200)
    finally:
        server.stop()
    output = server.output()
    assert server.proc.returncode == 0, output[-2000:]
    assert "Killing" not in output, output[-2000:]


@pytest.mark.parametrize(
    ("mistake", "said"), [(b"\nservr = 1\n", "servr"), (b"\n# caf\xe9\n", "not UTF-8 text")], ids=["key", "not_utf8"]
)
def test_sighup_with_a_mistake_in_the_configuration_keeps_the_workers_serving(
    tmp_path: Path, mistake: bytes, said: str
) -> None:
    """Each new worker died on the mistake as it started, the old ones were stopped all the
    same, and granian ended the server (a crash loop): a typo and a SIGHUP took it down. A
    file that is not UTF-8 is such a mistake too (read by the server itself, it raised there)."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    try:
        workers = children(server.proc.pid)
        server.config.write_bytes(server.config.read_bytes() + mistake)
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_until(lambda: "SIGHUP ignored" in server.output(), what="the refused reload's line")
        line = next(x for x in server.output().splitlines() if "SIGHUP ignored" in x)
        assert said in line, line
        assert children(server.proc.pid) == workers
        assert _status(server, "key-std") == 200
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.output()[-2000:]


def test_a_worker_started_again_after_a_crash_runs_the_last_configuration_taken(tmp_path: Path) -> None:
    """A worker killed while capigate.toml held a mistake (not yet reloaded, or refused by a
    SIGHUP) came back reading it, died, and granian's crash loop ended the server: one OOM kill
    and a half-edited file were an outage (a trial). It now reads the text the server took."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        (worker,) = children(pid)
        server.config.write_text(server.config.read_text() + "\nservr = 1\n")
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: children(pid) not in ([], [worker]), what="the worker started again")
        wait_until(lambda: _status(server, "key-std") == 200, what="the new worker serving")
        assert server.proc.poll() is None, server.output()[-2000:]
    finally:
        server.stop()


def test_sighup_says_which_changed_settings_take_a_restart(tmp_path: Path) -> None:
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    try:
        text = server.config.read_text()
        assert "[server]" in text
        server.config.write_text(text.replace("[server]", "[server]\nmax_connections = 10", 1))
        os.kill(server.proc.pid, signal.SIGHUP)
        wait_until(lambda: "Stopped old worker-1" in server.output(), what="the reload")
        assert "SIGHUP: [server] max_connections changed (4096 to 10): it takes a restart" in server.output()
        assert _status(server, "key-std") == 200
    finally:
        server.stop()


def test_sighup_compares_an_option_given_to_serve_with_the_file_not_the_file_before(tmp_path: Path) -> None:
    """Started with --port P, a file edited to say P was warned of as "port changed (8080 to
    P)", and one edited to say Q as "8080 to Q" of a server on P (a trial). What runs is P: the
    first is no change, the second a value the option rules."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    try:
        text = server.config.read_text()
        for reloads, port in enumerate((server.port, 1), start=1):
            server.config.write_text(text.replace("[server]", f"[server]\nport = {port}", 1))
            os.kill(server.proc.pid, signal.SIGHUP)
            wait_until(lambda: server.output().count("Stopped old worker-1") == reloads, what="the reload")  # noqa: B023
        said = [line for line in server.output().splitlines() if "SIGHUP: [server] port" in line]
        assert (
            len(said) == 1
            and (
                f"SIGHUP: [server] port changed in capigate.toml ({server.port} to 1), but capigate serve was started "
                f"with --port/CAPIGATE_PORT {server.port}, which rules it"
            )
            in said[0]
        ), said
        assert _status(server, "key-std") == 200
    finally:
        server.stop()


def _accepted_total(server: Server) -> int:
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    prefix = 'capigate_requests_total{endpoint="/v1/event",status="200"}'
    return sum(int(x.rsplit(" ", 1)[1]) for x in metrics.splitlines() if x.startswith(prefix))


def test_counters_do_not_go_back_when_a_worker_dies_or_a_reload_replaces_it(tmp_path: Path) -> None:
    """A dead or stopped worker's counts left the sum: 930 became 462 after one kill, and a
    SIGHUP emptied them (a trial); Prometheus read each as a reset."""
    server = make_server(tmp_path / "gw")
    server.start()
    assert server.proc is not None
    pid = server.proc.pid
    try:
        for _ in range(5):
            assert _status(server, "key-std") == 200
        time.sleep(FLUSH_INTERVAL_S * 2.5)  # the worker's counts in its file
        assert _accepted_total(server) == 5
        (worker,) = children(pid)
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: children(pid) not in ([], [worker]), what="the worker started again")
        wait_until(lambda: _status(server, "key-std") == 200, what="the new worker serving")
        assert _accepted_total(server) == 6
        os.kill(pid, signal.SIGHUP)
        wait_until(lambda: "Stopped old worker-1" in server.output(), what="the reload")
        assert _accepted_total(server) == 6
    finally:
        server.stop()


def test_counters_do_not_go_back_between_two_workers_scrapes(tmp_path: Path) -> None:
    """Each worker added its live counts to the other's copy of up to a second before: scrapes
    answered by one worker then the other went 1243, 1101 (a trial)."""
    server = make_server(tmp_path / "gw", CAPIGATE_WORKERS="2")
    server.start()
    done = threading.Event()

    def load() -> None:
        with server.client() as c:
            while not done.is_set():
                c.post("/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"})

    sender = threading.Thread(target=load)
    sender.start()
    try:
        seen = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            seen.append(_accepted_total(server))  # a new connection each: either worker answers
            time.sleep(0.03)
    finally:
        done.set()
        sender.join()
        server.stop()
    assert seen[-1] > seen[0] and all(b >= a for a, b in itertools.pairwise(seen)), seen


def _relay_attempts(server: Server) -> dict[str, int]:
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    found = re.findall(
        r'^capigate_relay_attempts_total\{destination="axon:px_std",result="(\w+)"\} (\d+)$', metrics, re.M
    )
    return {result: int(n) for result, n in found}


def test_an_attempt_a_reload_cuts_short_is_counted_as_interrupted(tmp_path: Path) -> None:
    """capigate_relay_attempts_total counted delivered, retry, split and dead attempts, not the
    one a stopping worker cut short once STOP_GRACE_S was over (``interrupted``): a reload
    while an upstream hung left no trace in the metrics, only in the journal of attempts. It
    is counted under its own result; the old worker's counts are handed on after its relay
    stops, so the reload's own cut is among them."""
    hang = threading.Event()
    with Upstream() as up:
        answers = iter([Reply(hold=hang)])
        up.script = lambda seen: next(answers, None)
        server = make_server(tmp_path / "gw", relay_config(up.url, timeout_s=10.0))
        server.start()
        assert server.proc is not None
        try:
            with server.client() as c:
                sent = c.post("/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"})
            assert sent.status_code == 200, sent.text
            up.wait_for(lambda: len(up.requests("/v1/event")) == 1, what="the relay's request, held")
            os.kill(server.proc.pid, signal.SIGHUP)
            wait_until(lambda: "Stopped old worker-1" in server.output(), what="the reload")
            up.wait_for(lambda: len(up.requests("/v1/event")) == 2, what="the event sent again by the new worker")
            wait_until(lambda: _relay_attempts(server).get("delivered") == 1, what="the delivery counted")
            assert _relay_attempts(server) == {"delivered": 1, "interrupted": 1}, _relay_attempts(server)
        finally:
            hang.set()
            server.stop()
