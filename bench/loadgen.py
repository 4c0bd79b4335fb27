"""Constant-rate (open-loop) HTTP/1.1 load generator, in the manner of wrk2.

Request ``i`` is due at ``start + i / rate`` whatever happened to earlier ones. A due
request goes out on an idle keep-alive connection, or waits in a queue for the next one to
free up; its latency is measured from when it was *due*, so a slow server cannot hide its
queueing (no coordinated omission). Requests still unanswered when the drain time runs out
are counted with the latency they had reached by then, so percentiles are lower bounds.

Bodies come from a ``bodies.BodySet`` directory; ``bodies.TOKEN`` is replaced per request.
asyncio protocols and pre-built request heads keep the generator's own cost to tens of
microseconds a request. Its CPU share and its own lag (due to handed to a connection,
``generator_lag_ms``) are reported, to show whether it kept up; ``send_wait_ms`` adds the wait
for a free connection, which is the server's doing.

    python -m bench.loadgen --port 8000 --rate 5000 --duration 10 \
        --bodies /tmp/b/w2-axon --count 1000 --path /v1/event?pixel_id=px --header Authorization=k
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from array import array
from collections import deque
from pathlib import Path
from typing import Any

from bench.bodies import TOKEN, run_token
from bench.cli import positive_float, positive_int

__all__ = ["percentiles", "run_fixed_rate"]

PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9)


class _Requests:
    """Rotates through bodies, giving each request its own token."""

    def __init__(self, directory: Path, count: int, host: str, path: str, header: str, run: str = "") -> None:
        self._run = run  # unique per run: a server kept through several runs sees no id twice
        self._bodies = [(directory / f"body-{i:05d}.json").read_bytes().split(TOKEN.encode()) for i in range(count)]
        self._head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{header}\r\n"
        ).encode()
        self._n = 0

    def next(self) -> bytes:
        self._n += 1
        parts = self._bodies[self._n % len(self._bodies)]
        body = parts[0] if len(parts) == 1 else f"{self._run}g{self._n:x}".encode().join(parts)
        return b"%sContent-Length: %d\r\n\r\n%s" % (self._head, len(body), body)


class _Conn(asyncio.Protocol):
    def __init__(self, gen: _Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.due = 0.0
        self.sent = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, due: float, now: float) -> None:
        assert self.transport is not None
        self.busy, self.due, self.sent = True, due, now
        self.transport.write(self.gen.requests.next())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"content-length:")
        if at >= 0:
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
            if len(self.buf) < end + 4 + length:
                return
        elif b"chunked" in head and not self.buf.endswith(b"0\r\n\r\n"):
            return
        status = int(self.buf[9:12])
        self.buf.clear()
        self.busy = False
        self.gen.on_response(self, status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.on_lost(self)


class _Generator:
    def __init__(self, requests: _Requests, rate: float) -> None:
        self.requests = requests
        self.rate = rate
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Conn] = []
        self.waiting: deque[float] = deque()
        self.latency = array("d")  # seconds from due to answered
        self.service = array("d")  # seconds from sent to answered
        self.wait = array("d")  # seconds from due to sent (includes waiting for a connection)
        self.tick_lag = array("d")  # seconds from due to dispatched: the generator's own delay
        self.errors = 0
        self.lost = 0

    def dispatch(self, due: float) -> None:
        if self.idle:
            self._send(self.idle.pop(), due)
        else:
            self.waiting.append(due)

    def _send(self, conn: _Conn, due: float) -> None:
        now = self.loop.time()
        self.wait.append(now - due)
        conn.send(due, now)

    def on_response(self, conn: _Conn, status: int) -> None:
        now = self.loop.time()
        self.latency.append(now - conn.due)
        self.service.append(now - conn.sent)
        if not 200 <= status < 300:
            self.errors += 1
        if self.waiting:
            self._send(conn, self.waiting.popleft())
        else:
            self.idle.append(conn)

    def on_lost(self, conn: _Conn) -> None:
        self.lost += 1
        if conn in self.idle:
            self.idle.remove(conn)
        elif conn.busy:
            self.errors += 1


def percentiles(values: array[float] | list[float]) -> dict[str, float]:
    """Nearest-rank percentiles in milliseconds, plus the max."""
    ordered = sorted(values)
    if not ordered:
        return {}
    out = {f"{p:g}": ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000 for p in PERCENTILES}
    out["max"] = ordered[-1] * 1000
    return out


async def run_fixed_rate(
    *,
    host: str,
    port: int,
    requests: _Requests,
    rate: float,
    duration_s: float,
    connections: int = 64,
    drain_s: float = 5.0,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gen = _Generator(requests, rate)
    conns = []
    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: _Conn(gen), host, port)
        conns.append(conn)
    gen.idle.extend(conns)
    total = int(rate * duration_s)
    cpu0, start = time.process_time(), loop.time() + 0.05
    issued = 0
    while issued < total and gen.lost < connections:
        now = loop.time()
        due_now = min(total, int((now - start) * rate) + 1)
        while issued < due_now:
            due = start + issued / rate
            gen.tick_lag.append(now - due)
            gen.dispatch(due)
            issued += 1
        await asyncio.sleep(0.0005)
    deadline = loop.time() + drain_s
    while len(gen.latency) + gen.lost < issued and loop.time() < deadline:
        await asyncio.sleep(0.01)
    end = loop.time()
    cpu = time.process_time() - cpu0
    answered = len(gen.latency)
    unfinished = [c.due for c in conns if c.busy] + list(gen.waiting)
    gen.latency.extend(end - due for due in unfinished)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    elapsed = end - start
    return {
        "target_rps": rate,
        "duration_s": round(elapsed, 3),
        "issued": issued,
        "answered": answered,
        "achieved_rps": round(answered / (min(elapsed, duration_s) or 1), 1),
        "errors": gen.errors,
        "unfinished": len(unfinished),
        "connections": connections,
        "connections_lost": gen.lost,
        "latency_ms": percentiles(gen.latency),
        "service_ms": percentiles(gen.service),
        "send_wait_ms": percentiles(gen.wait),
        "generator_lag_ms": percentiles(gen.tick_lag),
        "generator_cpu_pct": round(100 * cpu / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "localhost"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=positive_float, default=5000.0)
    parser.add_argument("--duration", type=positive_float, default=10.0)
    parser.add_argument("--connections", type=positive_int, default=64)
    parser.add_argument("--bodies", type=Path, required=True, help="a BodySet directory")
    parser.add_argument("--count", type=positive_int, required=True, help="bodies in that directory")
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", required=True, help="NAME=VALUE, e.g. Authorization=k")
    args = parser.parse_args()
    name, _, value = args.header.partition("=")
    requests = _Requests(
        args.bodies, args.count, f"{args.host}:{args.port}", args.path, f"{name}: {value}", run_token()
    )
    result = asyncio.run(
        run_fixed_rate(
            host=args.host,
            port=args.port,
            requests=requests,
            rate=args.rate,
            duration_s=args.duration,
            connections=args.connections,
        )
    )
    print("LOADGEN_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
