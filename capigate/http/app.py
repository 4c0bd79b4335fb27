"""The ASGI application: a factory, its lifespan, and the routing table."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from capigate.config import Config, load_config
from capigate.errors import StoreError
from capigate.http import api, appsflyer, axon, openapi
from capigate.http.asgi import Receive, Request, Response, RsgiProtocol, RsgiScope, Scope, Send, json_response
from capigate.http.journal import JournalBuffer, Outcome, new_request_id, request_record
from capigate.http.proxies import TrustedProxies
from capigate.http.state import Gateway
from capigate.inspector import routes as inspector
from capigate.inspector.endpoints import outbox_depths
from capigate.logs import configure_logging
from capigate.metrics import CONTENT_TYPE, FLUSH_INTERVAL_S, Metrics, shared_dir
from capigate.relay import RelayRunner
from capigate.responses import ErrorBody
from capigate.store import Store, open_store

__all__ = ["GatewayApp", "app_from_env", "create_app"]

log = logging.getLogger("capigate")
request_log = logging.getLogger("capigate.requests")

Handler = Callable[[Request, Gateway, Outcome], Awaitable[Response]]

PRUNE_INTERVAL_S = 600.0
DRAIN_TIMEOUT_S = 10.0
CLIENT_CLOSED = 499  # journal status of a request whose client left before the answer (nginx's code)


async def _healthz(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    return json_response(200, {"status": "ok"})


async def _readyz(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """Ready: the store takes a write now, and every relay worker of this process runs."""
    try:
        await gateway.store.check_writable()
    except StoreError as exc:
        return json_response(503, {"status": "unavailable", "store": str(exc)})
    body: dict[str, object] = {"status": "ready", "store": "writable"}
    if gateway.relay_running is not None:
        workers = gateway.relay_running()
        body["relay"] = {name: "running" if running else "stopped" for name, running in workers.items()}
        if not all(workers.values()):
            return json_response(503, {**body, "status": "unavailable"})
    return json_response(200, body)


def _relay_workers_running(relay: RelayRunner) -> dict[str, bool]:
    # The runner names each worker's task "capigate-relay <destination>".
    alive = {task.get_name() for task in asyncio.all_tasks() if not task.done()}
    return {name: f"capigate-relay {name}" in alive for name in relay.workers}


async def _openapi(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    return json_response(200, openapi.document())


async def _metrics(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    depths = await outbox_depths(gateway)
    text = gateway.metrics.exposition(depths, time.time_ns() // 1_000_000)
    return Response(200, text, CONTENT_TYPE, [("cache-control", "no-store")])


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/event"): axon.post_event,
    ("GET", "/api/events"): api.get_events,
    ("GET", "/api/requests"): api.get_requests,
    ("GET", "/api/outbox"): api.get_outbox,
    ("POST", "/api/replay"): api.post_replay,
    ("GET", "/healthz"): _healthz,
    ("GET", "/readyz"): _readyz,
    ("GET", "/openapi.json"): _openapi,
    ("GET", "/metrics"): _metrics,
    **inspector.ROUTES,
}
PREFIX_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", appsflyer.PREFIX, appsflyer.post_in_app_event),
    ("GET", api.EVENT_PREFIX, api.get_event),
]
UNJOURNALED = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/api/events", "/api/requests", "/api/outbox", "/api/replay", "/metrics"}
    | inspector.UNJOURNALED
)


class GatewayApp:
    """One gateway node. ``store`` may be given (tests, embedding); else it is opened from
    the configuration when the lifespan starts."""

    def __init__(self, config: Config, store: Store | None = None, *, relay: bool = True) -> None:
        self.config = config
        self._store = store
        self._relay_enabled = relay  # run the relay workers of the configuration in this process
        self._relay: RelayRunner | None = None
        self.gateway: Gateway | None = None
        self._journal: JournalBuffer | None = None
        self._pruner: asyncio.Task[None] | None = None
        self.metrics = Metrics(
            sources=[p.pixel_id for p in config.axon.pixels] + [a.app_id for a in config.appsflyer.apps],
            exact=[path for _, path in ROUTES],
            prefixes=[(appsflyer.PREFIX, appsflyer.PREFIX + "{app_id}"), (api.EVENT_PREFIX, api.EVENT_PREFIX + "{id}")],
        )
        self._flusher: asyncio.Task[None] | None = None
        self._in_flight = 0  # requests between arrival and journal entry
        self._proxies = TrustedProxies(config.server.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._handle(Request.from_asgi(scope, receive, send, new_request_id()))
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def __rsgi__(self, scope: RsgiScope, proto: RsgiProtocol) -> None:
        if scope.proto == "http":
            await self._handle(Request.from_rsgi(scope, proto, new_request_id()))

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """RSGI's start-up hook: granian calls it on the worker's loop before serving."""
        loop.run_until_complete(self.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.shutdown())

    async def _handle(self, request: Request) -> None:
        outcome = Outcome(api="unknown")
        gateway = self.gateway
        status = CLIENT_CLOSED  # until a handler answers
        self._in_flight += 1
        try:
            response = await self._respond(request, gateway, outcome)
            status = response.status
            await request.answer(response)
        finally:
            # Journaled even when the client left mid-request: its events may be stored.
            if gateway is not None:
                self._account(request, status, outcome, gateway)
            self._in_flight -= 1

    async def _respond(self, request: Request, gateway: Gateway | None, outcome: Outcome) -> Response:
        if self._proxies:
            request.client_ip = self._proxies.client_ip(request.client_ip, request.headers.get("x-forwarded-for"))
        if gateway is None:
            return json_response(503, ErrorBody(error="starting", message="the gateway is starting"))
        return await self._dispatch(request, gateway, outcome)

    def _account(self, request: Request, status: int, outcome: Outcome, gateway: Gateway) -> None:
        if request.path not in UNJOURNALED and not request.path.startswith(api.EVENT_PREFIX):
            self._after(request, status, outcome, gateway)
        else:
            gateway.metrics.observe_request(gateway.metrics.endpoint(request.path), status, request.elapsed_ms)

    async def _dispatch(self, request: Request, gateway: Gateway, outcome: Outcome) -> Response:
        handler = ROUTES.get((request.method, request.path))
        if handler is None:
            handler = self._match_prefix(request)
        if handler is None:
            return self._not_routed(request)
        try:
            return await handler(request, gateway, outcome)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            body = ErrorBody(error="internal_error", message="an unexpected error; nothing was stored")
            return json_response(500, body)

    @staticmethod
    def _match_prefix(request: Request) -> Handler | None:
        for method, prefix, handler in PREFIX_ROUTES:
            if request.method == method and request.path.startswith(prefix):
                return handler
        return None

    @staticmethod
    def _not_routed(request: Request) -> Response:
        known = {path for _, path in ROUTES} | {prefix for _, prefix, _ in PREFIX_ROUTES}
        if request.path in known or any(request.path.startswith(p) for _, p, _ in PREFIX_ROUTES):
            body = ErrorBody(error="method_not_allowed", message=f"{request.method} is not allowed here")
            return json_response(405, body)
        body = ErrorBody(error="not_found", message=f"no endpoint at {request.path}")
        return json_response(404, body)

    def _after(self, request: Request, status: int, outcome: Outcome, gateway: Gateway) -> None:
        record = request_record(request, status, outcome, request.request_id, request.received_at_ms)
        gateway.metrics.observe_record(record)
        if gateway.config.server.log_requests:
            request_log.info(
                "%s %s %d %.2fms",
                request.method,
                request.path,
                status,
                record.latency_ms,
                extra={"capigate": record},
            )
        if self._journal is not None:
            self._journal.add(record)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        store = self._store
        if store is None:
            store = open_store(self.config.store.url, synchronous=self.config.store.synchronous)
        relay = RelayRunner(store, self.config) if self._relay_enabled else None  # ConfigError before opening
        await store.open()
        self.gateway = Gateway(config=self.config, store=store, metrics=self.metrics, loopback=self)
        self._journal = JournalBuffer(store)
        self._journal.start()
        self._pruner = asyncio.create_task(self._prune_forever(self.gateway))
        if self.metrics.share_dir is not None:
            self._flusher = asyncio.create_task(self._flush_metrics_forever())
        if relay is not None and relay.workers:
            self._relay = relay
            relay.on_attempt(self.gateway.metrics.observe_relay_attempt)
            self.gateway.relay_wake = relay.wake
            await relay.start()
            self.gateway.relay_running = lambda: _relay_workers_running(relay)

    async def shutdown(self) -> None:
        await self._drain()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self.metrics.forget()
        if self._relay is not None:  # finishes the attempts in flight while the store is open
            await self._relay.stop()
            self._relay = None
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self._journal is not None:
            await self._journal.stop()
            self._journal = None
        if self.gateway is not None:
            await self.gateway.store.close()
            self.gateway = None

    async def _drain(self) -> None:
        """Let the requests still in flight finish (their clients may have left), so that their
        journal entries are written before the journal stops."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._in_flight:
            log.warning("stopping with %d request(s) still in flight", self._in_flight)

    async def _flush_metrics_forever(self) -> None:
        """For the scrapes that reach another worker process (capigate/metrics.py)."""
        while True:
            try:
                await asyncio.to_thread(self.metrics.flush)
            except OSError as exc:
                log.warning("metrics could not be shared with the other workers: %s", exc)
            await asyncio.sleep(FLUSH_INTERVAL_S)

    @staticmethod
    async def _prune_forever(gateway: Gateway) -> None:
        while True:
            try:
                await gateway.store.prune(time.time_ns() // 1_000_000, gateway.retention)
            except StoreError:
                log.warning("pruning failed; will retry")
            await asyncio.sleep(PRUNE_INTERVAL_S)


def create_app(config: Config, store: Store | None = None, *, relay: bool = True) -> GatewayApp:
    return GatewayApp(config, store, relay=relay)


def app_from_env() -> GatewayApp:
    """Factory for the ASGI server's workers: the CLI passes its resolved options by
    environment, since workers are separate processes."""
    config = load_config(Path(os.environ["CAPIGATE_CONFIG"]))
    db = os.environ.get("CAPIGATE_DB")
    if db:
        config.store.url = db
    configure_logging(config.server.log_format)
    app = create_app(config, relay=os.environ.get("CAPIGATE_RELAY", "1") != "0")
    app.metrics.share_dir = shared_dir()  # this server's workers share their counters
    return app
