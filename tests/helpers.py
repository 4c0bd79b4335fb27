"""Builders of realistic payloads shared by the tests."""

from __future__ import annotations

import contextlib
import copy
import os
import pty
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import DIE_WITH_PYTEST, Server, example


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def purchase(**overrides: Any) -> dict[str, Any]:
    """The spec's example purchase with a fresh time and a unique dedupe_id."""
    event: dict[str, Any] = copy.deepcopy(example("axon_purchase.json")["events"][0])
    event["event_time"] = now_ms()
    event["dedupe_id"] = uuid.uuid4().hex
    event.update(overrides)
    return event


def page_view(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "name": "page_view",
        "event_time": now_ms(),
        "event_source_url": "https://shop.example.com/p/1",
        "dedupe_id": uuid.uuid4().hex,
        "user_data": {
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Mozilla/5.0",
            "esi": "web",
            "client_id": "cid-1",
        },
        "data": None,
    }
    event.update(overrides)
    return event


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


def paths(body: dict[str, Any], key: str = "problems") -> dict[str, str]:
    """path -> code of the problems (or warnings) of a response body."""
    return {p["path"]: p["code"] for p in body[key]}


# --- talking to a running server ------------------------------------------------------------


def all_pages(server: Server, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of a paged query API (``/api/events`` or ``/api/requests``), cursor by cursor."""
    rows: list[dict[str, Any]] = []
    cursor = None
    with server.admin() as c:
        while True:
            page = c.get(path, params={"limit": 1000, **params, **({"cursor": cursor} if cursor else {})}).json()
            rows += page[key]
            cursor = page["next"]
            if cursor is None:
                return rows


def stored(
    server: Server,
    source: str | None = None,
    *,
    dedupe_id: str | None = None,
    payload: dict[str, Any] | None = None,
    **params: Any,
) -> list[dict[str, Any]]:
    """Every event the gateway stored (``GET /api/events``, all pages) of ``source`` and the other
    query filters (``test_tag=`` …), kept when it has ``dedupe_id`` and the ``payload`` values."""
    rows = all_pages(server, "/api/events", "events", **({"source": source} if source else {}), **params)
    return [
        e
        for e in rows
        if (dedupe_id is None or e["dedupe_id"] == dedupe_id)
        and all(e["payload"].get(k) == v for k, v in (payload or {}).items())
    ]


def stored_dedupe_ids(server: Server, source: str = "px_std") -> Counter[str]:
    return Counter(e["dedupe_id"] for e in all_pages(server, "/api/events", "events", source=source))


def children(pid: int) -> list[int]:
    """The pids of the running children of process ``pid`` (a server's workers), from /proc."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def writer_of(server_pid: int) -> int:
    """The SQLite writer process of a server's one worker (a child of one of its threads)."""
    (worker,) = children(server_pid)
    (writer,) = [
        int(p) for task in Path(f"/proc/{worker}/task").iterdir() for p in (task / "children").read_text().split()
    ]
    return writer


def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def sender(server: Server, acked: list[str], stop: threading.Event) -> None:
    """Send batches of 20 page views until ``stop``; the dedupe_ids answered 200 go to ``acked``."""
    with httpx.Client(base_url=server.url, timeout=5.0) as c:
        while not stop.is_set():
            events = [page_view(dedupe_id=uuid.uuid4().hex) for _ in range(20)]
            try:
                r = c.post("/v1/event?pixel_id=px_std", json=batch(*events), headers={"Authorization": "key-std"})
            except httpx.TransportError:
                return
            if r.status_code == 200:
                acked.extend(e["dedupe_id"] for e in events)


class Load:
    """``senders`` threads running ``sender`` against ``server`` until the block ends; ``acked``
    holds the dedupe_ids answered 200. ``add`` starts more (those whose connection was to a
    killed worker have ended)."""

    def __init__(self, server: Server, senders: int) -> None:
        self.server, self.acked = server, list[str]()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.add(senders)

    def add(self, senders: int) -> None:
        for _ in range(senders):
            thread = threading.Thread(target=sender, args=(self.server, self.acked, self._stop))
            thread.start()
            self._threads.append(thread)

    def wait_for(self, acked: int, what: str = "some load") -> None:
        wait_until(lambda: len(self.acked) >= acked, what=what)

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def stored_and_journaled(db: Path) -> tuple[Counter[str], int]:
    """Each stored dedupe_id with how many times it is stored, and the events the journal says were stored."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        stored = Counter(d for (d,) in conn.execute("SELECT dedupe_id FROM events"))
        journaled = conn.execute("SELECT coalesce(sum(events_stored), 0) FROM requests").fetchone()[0]
    return stored, int(journaled)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by the openssl command, valid one day."""
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command makes the test's certificate"
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def environ_without_capigate() -> dict[str, str]:
    """This process's environment without the CAPIGATE_* variables a developer's shell may hold."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}


@contextlib.contextmanager
def serve_banner(args: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``capigate serve ARGS`` started in ``cwd`` (no CAPIGATE_* variables) and its banner's
    lines, up to "Keys are masked" (or its end); stopped, its process group, when done."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "capigate", "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ_without_capigate(), cwd=cwd,
        start_new_session=True, preexec_fn=DIE_WITH_PYTEST,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline()]
        while not lines[-1].startswith("Keys are masked") and len(lines) < 30 and lines[-1]:
            lines.append(proc.stdout.readline())
        yield proc, lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=15)


class Terminal:
    """A pseudo-terminal's controlling side, read on a thread of its own into ``text`` (what
    was written to the terminal, its line ends as "\\n"): a gateway writing to it never blocks
    on a full buffer while the test does other things."""

    def __init__(self) -> None:
        self.controller, self.terminal = pty.openpty()
        self._out = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        """Once the process writing to ``terminal`` is started: close this side's copy of it."""
        os.close(self.terminal)
        self._reader.start()

    def _read(self) -> None:
        try:
            while chunk := os.read(self.controller, 65536):
                self._out += chunk
        except OSError:  # EIO: every process on the terminal's side has closed it
            pass

    @property
    def text(self) -> str:
        return bytes(self._out).decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, needle: str, proc: subprocess.Popen[Any], timeout_s: float = 60.0) -> str:
        """The text once it holds ``needle`` (AssertionError if ``proc`` ends or time runs out first)."""
        deadline = time.monotonic() + timeout_s
        while needle not in self.text:
            assert proc.poll() is None and time.monotonic() < deadline, f"no {needle!r} in:\n{self.text}"
            time.sleep(0.05)
        return self.text

    def close(self) -> None:
        self._reader.join(timeout=10)
        os.close(self.controller)


@contextlib.contextmanager
def serve_on_a_terminal(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Terminal]]:
    """``capigate serve ARGS`` started in ``cwd`` with its stdout and stderr on a pseudo-terminal,
    as a user at a terminal starts it (no CAPIGATE_* variables unless ``env`` has them);
    stopped, its process group, when done."""
    terminal = Terminal()
    proc = subprocess.Popen(
        [sys.executable, "-m", "capigate", "serve", *args],
        stdin=subprocess.DEVNULL, stdout=terminal.terminal, stderr=terminal.terminal,
        env=env if env is not None else environ_without_capigate(), cwd=cwd,
        start_new_session=True, preexec_fn=DIE_WITH_PYTEST,
    )  # fmt: skip
    terminal.start()
    try:
        yield proc, terminal
    finally:
        stop_group(proc, 15)
        terminal.close()


def stop_group(proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """SIGTERM to ``proc``'s process group, SIGKILL after ``timeout_s``; reaped either way."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
