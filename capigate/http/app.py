"""The gateway's application (ASGI and RSGI): dispatch through its router, the journal, the
lifespan, and the operators' endpoints. The routes themselves are listed in ``capigate/gateway.py``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import capigate.garbage as garbage
from capigate.config import Config
from capigate.errors import StoreError
from capigate.health import SCRAPE_READ_TIMEOUT_S
from capigate.http import openapi
from capigate.http.asgi import (
    RETRY_AFTER,
    BodyError,
    Receive,
    Request,
    Response,
    RsgiProtocol,
    RsgiScope,
    Scope,
    Send,
    json_response,
)
from capigate.http.deadlines import cut_short
from capigate.http.idle import IdleReaper
from capigate.http.journal import JournalBuffer, new_request_id, request_record
from capigate.http.outcome import Outcome
from capigate.http.proxies import TrustedProxies
from capigate.http.routing import Route, Router
from capigate.http.state import Gateway
from capigate.logs import log_request
from capigate.metrics import CONTENT_TYPE, FLUSH_INTERVAL_S, Metrics
from capigate.personal import shown_path
from capigate.relay import RelayRunner
from capigate.relay.worker import STOP_GRACE_S
from capigate.responses import ErrorBody
from capigate.store import Store, open_store

__all__ = ["GatewayApp", "get_healthz", "get_metrics", "get_openapi", "get_readyz"]

log = logging.getLogger("capigate")

PRUNE_INTERVAL_S = 600.0
DRAIN_TIMEOUT_S = 10.0
# A body still arriving when the worker is told to stop gets this long, not the rest of
# body_timeout_s: within a service manager's usual 10 s (Docker's) with the drain after it.
STOP_BODY_GRACE_S = 5.0
# A stopping worker keeps a connection this long after its last answer (GatewayApp._serving).
ANSWER_WRITE_S = 1.0
# A worker whose `capigate serve` process is gone (kill -9) stops within about this: a new
# server may already serve beside it. Its bodies still arriving get this much, and its relay
# cuts its requests in flight short at once.
ORPHAN_GRACE_S = 1.0
# An id no configuration has is the client's to choose: the journal keeps this much of it.
MAX_UNKNOWN_SOURCE_CHARS = 64
ADMIN_PREFIX = "/api/"  # answered 503 at once while the store does not answer, not after a pool timeout
CLIENT_CLOSED = 499  # journal status of a request whose client left before the answer (nginx's code)


async def get_healthz(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    return json_response(200, {"status": "ok"})


async def get_readyz(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """Ready: the store takes a real write now (within a second), its last ingest did not
    fail (capigate/health.py), and every relay worker of this process runs."""
    health = gateway.health
    failure = await health.check_writable()
    if failure is not None:
        return json_response(503, {"status": "unavailable", "store": failure.error})
    body: dict[str, object] = {"status": "ready", "store": "writable"}
    refused = health.refusing_ingests()
    if refused is not None:
        body |= {"status": "unavailable", "store": "refusing ingests", "last_ingest_failure": refused}
    if gateway.relay_running is not None:
        workers = gateway.relay_running()
        body["relay"] = {name: "running" if running else "stopped" for name, running in workers.items()}
        if not all(workers.values()):
            body["status"] = "unavailable"
    return json_response(200 if body["status"] == "ready" else 503, body)


async def get_openapi(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    return json_response(200, openapi.document(gateway.routes))


async def get_metrics(request: Request, gateway: Gateway, outcome: Outcome) -> Response:
    """Never waits long on the store: the queue depths are read within half a second, else
    the last ones read are shown, with their age (capigate/health.py)."""
    health = gateway.health
    depths = await health.read_depths(SCRAPE_READ_TIMEOUT_S)
    now = time.time_ns() // 1_000_000
    text = gateway.metrics.exposition(depths, now)
    journal = gateway.journal
    text += health.exposition(now, journal.dropped if journal else 0, journal.waiting if journal else 0).encode()
    return Response(200, text, CONTENT_TYPE, [("cache-control", "no-store")])


def _store_unavailable(error: str) -> Response:
    body = ErrorBody(error="store_unavailable", message=f"the store is unavailable: {error}")
    return json_response(503, body, [RETRY_AFTER])


def _bounded_source(source: str, gateway: Gateway) -> str:
    if gateway.config.pixel(source) or gateway.config.app(source):
        return source
    return source[: MAX_UNKNOWN_SOURCE_CHARS - 1] + "…"


class GatewayApp:
    """One gateway node, serving ``router``. ``store`` may be given (tests, embedding); else it
    is opened from the configuration when the lifespan starts."""

    def __init__(self, config: Config, router: Router, store: Store | None = None, *, relay: bool = True) -> None:
        self.config = config
        self.router = router
        self._store = store
        self._relay_enabled = relay  # run the relay workers of the configuration in this process
        self._relay: RelayRunner | None = None
        self._relay_stop: asyncio.Task[None] | None = None  # begun as the worker is told to stop
        self.gateway: Gateway | None = None
        self._journal: JournalBuffer | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self.metrics = Metrics(
            sources=[p.pixel_id for p in config.axon.pixels] + [a.app_id for a in config.appsflyer.apps]
        )
        self._flusher: asyncio.Task[None] | None = None
        self.idle_reaper: IdleReaper | None = None  # under `capigate serve` (app_from_env)
        self.settle_gc = False  # likewise: garbage.settle() once started, the worker's process being its own
        # The requests between arrival and journal entry, by connection ("ip:port"): how many each.
        self._peers: dict[str, int] = {}
        # While stopping: when each connection last had an answer handed to granian.
        self._answered: dict[str, float] | None = None
        self._proxies = TrustedProxies(config.server.trusted_proxies)
        self._loop: asyncio.AbstractEventLoop | None = None

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
        route = self.router.match(request.method, request.path)
        peer = request.peer
        self._peers[peer] = self._peers.get(peer, 0) + 1  # HTTP/2 answers several on one connection
        request.body_timeout_s = self.config.server.body_timeout_s
        try:
            response = await self._respond(request, route, gateway, outcome)
            if route.journaled or outcome.journaled:  # what the client finds its entry by
                response.headers.append(("x-capigate-request-id", request.request_id))
            if request.method == "HEAD":
                response.strip_body_for_head()
            status = response.status
            await request.answer(response)
        finally:
            # Journaled even when the client left mid-request: its events may be stored.
            if gateway is not None:
                self._account(request, route, status, outcome, gateway)
            if self._peers[peer] == 1:
                del self._peers[peer]
            else:
                self._peers[peer] -= 1
            if self._answered is not None:
                self._answered[peer] = time.monotonic()

    async def _respond(self, request: Request, route: Route, gateway: Gateway | None, outcome: Outcome) -> Response:
        if self._proxies:
            request.client_ip = self._proxies.client_ip(request.client_ip, request.headers.get("x-forwarded-for"))
        if gateway is None:
            return json_response(503, ErrorBody(error="starting", message="the gateway is starting"))
        if not gateway.health.answering and request.path.startswith(ADMIN_PREFIX):
            failure = gateway.health.last_probe_failure
            return _store_unavailable(failure.error if failure else "no answer")
        try:
            return await route.handler(request, gateway, outcome)
        except BodyError as unreadable:  # a handler that did not answer it itself (a body it barely reads)
            return json_response(unreadable.status, ErrorBody(error=unreadable.code, message=unreadable.message))
        except StoreError as lost:
            return _store_unavailable(str(lost))
        except Exception:
            log.exception("unhandled error on %s %s", request.method, shown_path(request.path))
            body = ErrorBody(error="internal_error", message="an unexpected error; nothing was stored")
            return json_response(500, body)

    def _account(self, request: Request, route: Route, status: int, outcome: Outcome, gateway: Gateway) -> None:
        if route.journaled or outcome.journaled:
            self._after(request, route, status, outcome, gateway)
        else:
            gateway.metrics.observe_request(route.metric, status, request.elapsed_ms)

    def _after(self, request: Request, route: Route, status: int, outcome: Outcome, gateway: Gateway) -> None:
        if outcome.source is not None and len(outcome.source) > MAX_UNKNOWN_SOURCE_CHARS:
            outcome.source = _bounded_source(outcome.source, gateway)
        record = request_record(request, status, outcome, request.request_id, request.received_at_ms)
        gateway.metrics.observe_record(route.metric, record)
        if gateway.config.server.log_requests:
            log_request(record)
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

    def stopping(self, orphaned: bool = False) -> None:
        """The worker is told to stop (``capigate serve``: from its SIGTERM handler, so between
        two bytecodes of the loop's own thread): the bodies still arriving get STOP_BODY_GRACE_S,
        and the connections with no request being answered are closed (a half-sent head among
        them held the stop until header_timeout_s). The relay claims nothing more from now on
        (it went on sending while the requests drained) and gives its requests in flight
        relay.worker.STOP_GRACE_S. ``orphaned``: the ``capigate serve`` process is gone (now, or
        after a stop began): ORPHAN_GRACE_S for the bodies, the relay's requests cut at once."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_taking_requests, loop, orphaned)

    def _stop_taking_requests(self, loop: asyncio.AbstractEventLoop, orphaned: bool) -> None:
        grace_s = ORPHAN_GRACE_S if orphaned else STOP_BODY_GRACE_S
        if orphaned:
            log.error(
                "the capigate serve process is gone: this worker stops now (its relay's requests in flight "
                "cut short, the requests it serves given %g s)",
                grace_s,
            )
        cut_short(loop, grace_s)
        if self.idle_reaper is not None:
            if self._answered is None:
                self._answered = {}
            self.idle_reaper.stopping(self._serving, grace_s)
        if self._relay is not None:
            relay_grace_s = 0.0 if orphaned else STOP_GRACE_S
            if self._relay_stop is None:  # its leases go back as soon as its requests are settled
                self._relay_stop = loop.create_task(self._relay.stop(relay_grace_s))
            else:
                self._relay.stopping(relay_grace_s)

    def _serving(self) -> list[str]:
        """The connections a stopping worker keeps: those of the requests the app is answering,
        and of those answered within ANSWER_WRITE_S (granian writes an answer after the app
        hands it over: a connection closed first lost a committed request's answer)."""
        since = time.monotonic() - ANSWER_WRITE_S
        answered = self._answered or {}
        return [*self._peers, *(peer for peer, at in answered.items() if at > since)]

    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        store = self._store
        if store is None:
            settings = self.config.store
            store = open_store(
                settings.url,
                synchronous=settings.synchronous,
                writer_process=settings.writer == "process",
                read_timeout_s=settings.read_timeout_s,
            )
        relay = RelayRunner(store, self.config) if self._relay_enabled else None  # ConfigError before opening
        await store.open()
        self.gateway = Gateway(
            config=self.config, store=store, metrics=self.metrics, loopback=self, routes=self.router.routes
        )
        self._journal = self.gateway.journal = JournalBuffer(
            store, max_waiting=self.config.store.journal_buffer, on_backlog_written=self.gateway.health.backlog_written
        )
        self._journal.start()
        self._watcher = asyncio.create_task(self.gateway.health.watch())
        self._pruner = asyncio.create_task(self._prune_forever(self.gateway))
        if self.metrics.share_dir is not None:
            self._flusher = asyncio.create_task(self._flush_metrics_forever())
        if self.idle_reaper is not None:
            self.idle_reaper.in_flight = lambda: list(self._peers)
            self.idle_reaper.start()
        if relay is not None and relay.workers:
            self._relay = relay
            relay.on_attempt(self.gateway.metrics.observe_relay_attempt)
            self.gateway.relay_wake = relay.wake
            await relay.start()
            self.gateway.relay_running = relay.running
        if self.settle_gc:
            garbage.settle()

    async def shutdown(self) -> None:
        if self.idle_reaper is not None:
            await self.idle_reaper.stop()
        await self._drain()
        if self._relay is not None:  # settles the attempts in flight while the store is open
            await (self._relay_stop or self._relay.stop())
            self._relay, self._relay_stop = None, None
        if self._flusher is not None:  # after the relay's stop: the attempts it cut short are counted
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self.metrics.forget()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
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
        while self._peers and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._peers:
            log.warning("stopping with %d request(s) still in flight", sum(self._peers.values()))

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
                pruned = await gateway.store.prune(time.time_ns() // 1_000_000, gateway.retention)
            except StoreError:
                log.warning("pruning failed; will retry")
            else:
                if pruned.events or pruned.requests or pruned.dedupe_keys:  # an operator sees retention work
                    log.info(
                        "pruned %d events, %d journal entries, %d dedupe keys",
                        pruned.events, pruned.requests, pruned.dedupe_keys,
                    )  # fmt: skip
            await asyncio.sleep(PRUNE_INTERVAL_S)
