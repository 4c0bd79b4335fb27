"""What capigate's own work costs per request, with no HTTP server: the gateway's ASGI app is
called in-process by concurrent coroutines on uvloop, with the bench's W1 or W2 Axon bodies,
a real SQLite store (``synchronous = full``) and the journal, as ``capigate serve`` runs them.

    .venv/bin/python -m bench.in_process [--workload w2-axon|w1] [--requests N] [--concurrency 64]
    .venv/bin/python -m bench.in_process --ratios   # the limits, written to bench/results/in_process.*

It prints requests per second, the CPU time per request of the event loop's thread and of
the whole gateway (its SQLite writer process or thread included), and the requests' latency
(p50, p99). No server, no load generator, no
sockets: this is the ceiling capigate's Python sets for one worker process whatever server
runs it. Nothing is asserted.

The app is set up as a worker of ``capigate serve`` sets it up (its garbage collector settled,
``capigate/garbage.py``; restored afterwards). ``min(N, 500)`` requests warm it up first,
unmeasured. Every request's body is made before the clock starts, a new ``dedupe_id`` in each
event (the load generator's work, not the gateway's): ``--requests`` x a body of memory, ~75 KB
for w1 (a default of 2,000 requests: ~150 MB), under 1 KB for w2-axon.

``--ratios`` measures, in one process run: the CPU per event of W1 batches made only of
``purchase`` events (email, phone, items) against ``msgspec.json.decode`` of the same bodies
into the wire Structs (``AxonBatch``), the limit of a typed ingest path; and the CPU per W2
request split into its pieces (request object, decode and rules, journal record and metrics,
response), each timed alone on the same bodies (bench/ratios.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from bench.bodies import write_body_sets
from bench.cli import positive_int
from bench.procstat import children_cpu_s
from bench.servers import AXON_PATH, CONFIG_TOML
from capigate.config import StoreSettings, load_config
from capigate.http.app import GatewayApp

try:
    from capigate.gateway import create_app
except ImportError:  # commits before the core restructuring (the A/B's landed commit)
    from capigate.http.app import create_app  # type: ignore[attr-defined,no-redef,unused-ignore]
from capigate.inspector.samples import Exchange


def _scope(body: bytes) -> dict[str, Any]:
    path, _, query = AXON_PATH.partition("?")
    headers = [(b"content-type", b"application/json"), (b"authorization", b"k"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 0),
    }


class RsgiHeaders(dict[str, str]):
    """What the app reads of granian's RSGI headers: a mapping with ``get_all``."""

    def get_all(self, name: str) -> list[str]:
        return [self[name]] if name in self else []


@dataclass(slots=True)
class RsgiScope:
    """granian's RSGI scope, as much of it as the app reads."""

    proto: str
    method: str
    path: str
    query_string: str
    client: str
    headers: RsgiHeaders


class RsgiExchange:
    """One in-process RSGI request: granian's protocol object as the app uses it, the body
    given whole (a Content-Length was declared) and the answer taken in one call."""

    __slots__ = ("body", "status")

    def __init__(self, body: bytes) -> None:
        self.body, self.status = body, 500

    async def __call__(self) -> bytes:
        return self.body

    async def __aiter__(self) -> AsyncIterator[bytes]:  # a chunked body: not sent here
        yield self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status


def rsgi_scope(scope: dict[str, Any]) -> RsgiScope:
    """The RSGI scope of the same request as ASGI ``scope``."""
    headers = RsgiHeaders((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
    host, port = scope["client"]
    return RsgiScope("http", scope["method"], scope["path"], scope["query_string"].decode(), f"{host}:{port}", headers)


def rendered(bodies: list[bytes], first: int, requests: int) -> list[tuple[bytes, dict[str, Any]]]:
    """The bodies and scopes of requests ``first`` … ``first + requests - 1``, made before the
    clock starts: a request's number is in its every dedupe_id (every event new), and writing
    it into a W1 body (~100 KB) took ~1 µs an event, the load generator's work (wrk's, over
    HTTP), which the gateway's CPU figures counted. ``requests`` x a body of memory."""
    out = []
    for n in range(first, first + requests):
        body = bodies[n % len(bodies)].replace(b"@@RQ@@", b"r%d" % n)
        out.append((body, _scope(body)))
    return out


async def _send(
    app: GatewayApp,
    requests: list[tuple[bytes, dict[str, Any]]],
    concurrency: int,
    latencies: list[float] | None = None,
    rsgi: bool = False,
) -> None:
    """``requests`` (``rendered``), ``concurrency`` at a time; each one's seconds appended to
    ``latencies``; through the app's RSGI entry, as granian calls it, if ``rsgi`` (untimed)."""
    queue = iter(enumerate(requests))
    timed = latencies.append if latencies is not None else None

    async def client() -> None:
        for n, (body, scope) in queue:
            exchange = Exchange(body)
            started = time.perf_counter()
            await app(scope, exchange.receive, exchange.send)
            if timed is not None:
                timed(time.perf_counter() - started)
            if exchange.status != 200:
                raise RuntimeError(f"request {n} answered {exchange.status}")

    async def rsgi_client() -> None:  # as granian calls the app: its scope object, its protocol
        for n, (body, scope) in queue:
            exchange = RsgiExchange(body)
            await app.__rsgi__(rsgi_scope(scope), exchange)
            if exchange.status != 200:
                raise RuntimeError(f"request {n} answered {exchange.status}")

    if rsgi:
        await asyncio.gather(*(rsgi_client() for _ in range(concurrency)))
        return

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def _drive(
    app: GatewayApp,
    bodies: list[bytes],
    requests: int,
    concurrency: int,
    latencies: list[float] | None = None,
    *,
    first: int = 0,
    rsgi: bool = False,
) -> None:
    """``requests`` requests numbered from ``first`` (``rendered``), ``concurrency`` at a time.
    A request's number is in its every dedupe_id: a run after another must start past it, or
    it sends the same events again (all duplicates)."""
    await _send(app, rendered(bodies, first, requests), concurrency, latencies, rsgi)


WRITER_ENV = "CAPIGATE_BENCH_WRITER"  # [store] writer for measure(), "thread" or "process"


def warm_up(requests: int) -> int:
    """The requests ``measure`` sends before the ``requests`` it measures (not measured, but
    stored and journaled like them)."""
    return min(requests, 500)


def _process_and_children_cpu_s() -> float:
    """This process's CPU time and its running children's: the store's writer process
    (``[store] writer = "process"``) is part of the gateway's cost."""
    return time.process_time() + children_cpu_s()


def worker_app(workdir: Path, writer: str | None = None) -> GatewayApp:
    """The gateway app on the bench's configuration and a SQLite file in ``workdir``, set up as
    a worker of `capigate serve` sets it up (gateway.app_from_env: its collector settled once
    started), with ``writer`` as its ``[store] writer`` if given and known to the tree under test."""
    config_path = workdir / "capigate.toml"
    config_path.write_text(CONFIG_TOML)
    config = load_config(config_path)
    config.store.url = str(workdir / "capigate.db")
    if writer is not None and "writer" in StoreSettings.__struct_fields__:  # a --ref tree may predate it
        config.store.writer = writer  # type: ignore[assignment]
    config.server.log_requests = False  # no handler is configured in-process: lines would go nowhere
    app = create_app(config, relay=False)
    app.settle_gc = True  # ignored by a tree from before garbage.settle
    return app


async def measure(
    workdir: Path, bodies: list[bytes], requests: int, concurrency: int, latencies: list[float] | None = None
) -> tuple[float, float, float]:
    """Requests per second, and CPU seconds per request of the event loop's thread and of the
    whole gateway (the process and its writer process, if any); each measured request's
    seconds appended to ``latencies``."""
    app = worker_app(workdir, os.environ.get(WRITER_ENV))  # "thread" or "process": an A/B of [store] writer
    collector = gc.get_threshold(), gc.get_freeze_count()
    await app.startup()
    try:
        warm = warm_up(requests)
        await _drive(app, bodies, warm, concurrency)  # warm-up: imports, caches, first pages
        measured = rendered(bodies, warm, requests)
        wall, thread, process = time.perf_counter(), time.thread_time(), _process_and_children_cpu_s()
        await _send(app, measured, concurrency, latencies)
        wall, thread, process = (
            time.perf_counter() - wall,
            time.thread_time() - thread,
            _process_and_children_cpu_s() - process,
        )
    finally:
        await app.shutdown()
        _restore(*collector)
    return requests / wall, thread / requests, process / requests


def _restore(threshold: tuple[int, int, int], frozen: int) -> None:
    """This process's collector as it was before ``measure`` (a test process runs it too); a
    process that had frozen objects of its own keeps the app's frozen with them."""
    if not frozen:
        gc.unfreeze()
    gc.set_threshold(*threshold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("w2-axon", "w1"), default="w2-axon")
    parser.add_argument(
        "--requests", type=positive_int, default=None, help="default: 20,000 (w2-axon), 2,000 (w1: ~150 MB of bodies)"
    )
    parser.add_argument("--concurrency", type=positive_int, default=64)
    parser.add_argument("--ratios", action="store_true", help="the limits (bench/ratios.py)")
    parser.add_argument("--out", default=None, help="--ratios: results path without suffix")
    parser.add_argument("--quick", action="store_true", help="--ratios: a smoke test, too short to quote")
    args = parser.parse_args()
    if args.ratios:
        from bench.ratios import RESULTS
        from bench.ratios import main as ratios

        ratios(Path(args.out) if args.out else RESULTS, quick=args.quick)
        return
    with tempfile.TemporaryDirectory(prefix="capigate-in-process-", dir=".") as tmp:
        sets = write_body_sets(Path(tmp) / "bodies", batches=100, singles=1000, population=50_000)
        chosen = sets[args.workload]
        if args.requests is None:
            args.requests = 2_000 if args.workload == "w1" else 20_000
        bodies = [chosen.path(i).read_bytes() for i in range(chosen.count)]
        print(
            f"{args.workload}: {args.requests:,} requests, {args.concurrency} at a time, {chosen.events_per_request} event(s) each"
        )
        latencies: list[float] = []
        rps, thread, process = uvloop.run(measure(Path(tmp), bodies, args.requests, args.concurrency, latencies))
        latencies.sort()
        p50, p99 = (latencies[int(len(latencies) * q)] * 1e3 for q in (0.5, 0.99))
        print(
            f"{rps:,.0f} req/s; CPU per request: event loop thread {thread * 1e6:.0f} µs, "
            f"whole gateway (its writer included) {process * 1e6:.0f} µs; latency p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )


if __name__ == "__main__":
    main()
