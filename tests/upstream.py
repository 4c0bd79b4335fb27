"""A controllable local upstream for the relay tests: a real HTTP server on 127.0.0.1 in a
thread, that records every request and answers what the test scripts.

The script is a function from the request received to a ``Reply`` (or None: 200 ``{}``).
A reply can be delayed, held until the test releases it, or be a connection reset.

    with Upstream() as up:
        up.script = lambda seen: Reply(503) if len(up.seen) < 3 else None
        ... relay to up.url ...
        up.wait_for(lambda: len(up.dedupe_ids()) == 100)
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Reply", "Seen", "Upstream"]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hold: threading.Event | None = None  # answer only once this is set (or the server stops)
    reset: bool = False  # close the connection with a TCP reset instead of answering


@dataclass
class Seen:
    at: float  # time.monotonic() when the request arrived
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # what it was answered (None: not yet, or a reset)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The Axon events of the request body."""
        events: list[dict[str, Any]] = self.json()["events"]
        return events


class Upstream:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: Callable[[Seen], Reply | None] = lambda seen: None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-upstream", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def requests(self, path_prefix: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith(path_prefix)]

    def dedupe_ids(self, answered_with: int | None = 200) -> list[str]:
        """The dedupe_ids of the Axon events received (in requests answered with that status)."""
        with self._lock:
            seen = list(self.seen)
        ids: list[str] = []
        for s in seen:
            if s.path == "/v1/event" and (answered_with is None or s.status == answered_with):
                ids.extend(e["dedupe_id"] for e in s.events)
        return ids

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; {len(self.seen)} request(s) seen")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                seen = Seen(
                    at=time.monotonic(),
                    method="POST",
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = upstream.script(seen) or Reply()
                with upstream._lock:
                    upstream.seen.append(seen)
                if reply.delay_s:
                    upstream._closing.wait(reply.delay_s)
                if reply.hold is not None:
                    while not reply.hold.wait(0.05) and not upstream._closing.is_set():
                        pass
                if reply.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(reply.status)
                headers = {"content-type": "application/json", **reply.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
                seen.status = reply.status

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
