"""A real local HTTP server that fails on purpose, for what a real gateway cannot be made to do.

It answers the scripted ``faults`` first (a 503, a 429 with Retry-After, a slow answer, one
held until released), one per request, then forwards every request to ``upstream`` (a running
capigate) and returns its answer, or repeats ``then`` forever. Every request is recorded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"})


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hold: threading.Event | None = None  # the answer waits until this is set


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int
    answered: int = 0


class FaultProxy:
    def __init__(
        self,
        upstream: str | None = None,
        faults: list[Reply] | None = None,
        then: Reply | None = None,
        forward_delay_s: float = 0.0,
    ):
        self.upstream, self.faults, self.then = upstream, list(faults or []), then
        self.forward_delay_s = forward_delay_s  # the upstream's answer, forwarded this much later
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.holds: list[threading.Event] = []
        self._http = httpx.Client(timeout=10.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed
            disable_nagle_algorithm = True  # headers and body leave at once, no delayed-ACK stall

            def do_POST(self) -> None:
                proxy._handle(self)

            def do_GET(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("content-length") or 0))
        seen = Seen(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body, h.client_address[1])
        with self.lock:
            self.seen.append(seen)
            reply = self.faults.pop(0) if self.faults else self.then
        if reply is None:
            assert self.upstream is not None, "no fault left and no upstream"
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP}
            r = self._http.request(h.command, self.upstream + h.path, content=body, headers=headers)
            reply = Reply(
                r.status_code,
                r.content,
                {k: v for k, v in r.headers.items() if k.lower() not in _HOP_BY_HOP},
                delay_s=self.forward_delay_s,
            )
        if reply.hold is not None:
            with self.lock:
                self.holds.append(reply.hold)
            reply.hold.wait(10)
        time.sleep(reply.delay_s)
        seen.answered = reply.status
        try:
            h.send_response(reply.status)
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(reply.body)))
            h.end_headers()
            h.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout under test)

    def statuses(self) -> list[int]:
        with self.lock:
            return [s.answered for s in self.seen]

    def start(self) -> FaultProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            for hold in self.holds:
                hold.set()
        self.server.shutdown()
        self.server.server_close()
        self._http.close()


@contextmanager
def fault_proxy(
    upstream: str | None = None,
    faults: list[Reply] | None = None,
    then: Reply | None = None,
    forward_delay_s: float = 0.0,
) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, faults, then, forward_delay_s).start()
    try:
        yield proxy
    finally:
        proxy.stop()
