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
from capigate.http.asgi import Receive, Request, Response, Scope, Send, json_response
from capigate.http.journal import Outcome, new_request_id, request_record
from capigate.http.state import Gateway
from capigate.logs import configure_logging
from capigate.responses import ErrorBody
from capigate.store import RequestRecord, Store, open_store

__all__ = ["GatewayApp", "app_from_env", "create_app"]

log = logging.getLogger("capigate")
request_log = logging.getLogger("capigate.requests")

Handler = Callable[[Request, Gateway, Outcome], Awaitable[Response]]

PRUNE_INTERVAL_S = 600.0


async def _healthz(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    return json_response(200, {"status": "ok"})


async def _readyz(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    try:
        await gateway.store.check_writable()
    except StoreError as exc:
        return json_response(503, {"status": "unavailable", "store": str(exc)})
    return json_response(200, {"status": "ready", "store": "writable"})


async def _openapi(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    return json_response(200, openapi.document())


ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/event"): axon.post_event,
    ("GET", "/api/events"): api.get_events,
    ("GET", "/api/requests"): api.get_requests,
    ("GET", "/healthz"): _healthz,
    ("GET", "/readyz"): _readyz,
    ("GET", "/openapi.json"): _openapi,
}
PREFIX_ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", appsflyer.PREFIX, appsflyer.post_in_app_event),
]
UNJOURNALED = frozenset({"/healthz", "/readyz", "/openapi.json", "/api/events", "/api/requests"})


class GatewayApp:
    """One gateway node. ``store`` may be given (tests, embedding); else it is opened from
    the configuration when the lifespan starts."""

    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self._store = store
        self.gateway: Gateway | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._pruner: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, new_request_id())
        outcome = Outcome(api="unknown")
        gateway = self.gateway
        if gateway is None:
            response = json_response(503, ErrorBody(error="starting", message="the gateway is starting"))
        else:
            response = await self._dispatch(request, gateway, outcome)
        await response.send(send)
        if gateway is not None and request.path not in UNJOURNALED:
            self._after(request, response.status, outcome, gateway)

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
        if gateway.config.server.log_requests:
            request_log.info(
                "%s %s %d %.2fms",
                request.method,
                request.path,
                status,
                record.latency_ms,
                extra={"capigate": record},
            )
        task = asyncio.create_task(self._journal(gateway, record))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _journal(gateway: Gateway, record: RequestRecord) -> None:
        try:
            await gateway.store.record_request(record)
        except StoreError:
            log.warning("journal entry %s could not be written", record.request_id)

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
        await store.open()
        self.gateway = Gateway(config=self.config, store=store)
        self._pruner = asyncio.create_task(self._prune_forever(self.gateway))

    async def shutdown(self) -> None:
        if self._pruner is not None:
            self._pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pruner
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.gateway is not None:
            await self.gateway.store.close()
            self.gateway = None

    @staticmethod
    async def _prune_forever(gateway: Gateway) -> None:
        while True:
            try:
                await gateway.store.prune(time.time_ns() // 1_000_000, gateway.retention)
            except StoreError:
                log.warning("pruning failed; will retry")
            await asyncio.sleep(PRUNE_INTERVAL_S)


def create_app(config: Config, store: Store | None = None) -> GatewayApp:
    return GatewayApp(config, store)


def app_from_env() -> GatewayApp:
    """Factory for the ASGI server's workers: the CLI passes its resolved options by
    environment, since workers are separate processes."""
    config = load_config(Path(os.environ["CAPIGATE_CONFIG"]))
    db = os.environ.get("CAPIGATE_DB")
    if db:
        config.store.url = db
    configure_logging(config.server.log_format)
    return create_app(config)
