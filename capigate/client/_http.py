"""The sync and async halves of every client: one connection pool each, the retry loop.

Everything an attempt decides (retry or not, after how long, what the answer means) lives
in ``Core``; these classes only move bytes and sleep.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx

from capigate.client._base import (
    USER_AGENT,
    Core,
    Delivery,
    OnRequest,
    Prepared,
    PreparedRequest,
    Progress,
    RequestResult,
    SendInterrupted,
    SendResult,
    gather_failures,
)
from capigate.endpoint_path import split_admin, split_endpoint
from capigate.errors import CapigateError

if TYPE_CHECKING:
    from capigate.client.batcher import AsyncBatcher, Batcher, OnFailure

__all__ = ["AsyncClientBase", "SyncClientBase", "checked_admin_url", "checked_base_url", "http_options"]


def http_options(
    timeout: float | httpx.Timeout, max_concurrency: int, headers: dict[str, str] | None
) -> dict[str, Any]:
    """httpx's options: ``timeout`` in seconds (connecting: at most 5 of them), or an
    ``httpx.Timeout`` as is."""
    if not isinstance(timeout, httpx.Timeout):
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        timeout = httpx.Timeout(timeout, connect=min(timeout, 5.0))
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    return {
        "timeout": timeout,
        "limits": httpx.Limits(
            max_connections=max(100, max_concurrency), max_keepalive_connections=max(20, max_concurrency)
        ),
        "headers": {"User-Agent": USER_AGENT, **(headers or {})},
    }


def checked_base_url(base_url: str, name: str = "base_url") -> str:
    """``base_url`` if it is a server's address: ``http(s)://host[:port]``, perhaps with a path
    prefix. Else a ValueError saying why, of the URL given as ``name`` (the argument, or the
    CLI's option): without a scheme no try can reach the server (and its failures would read
    as "may be stored"), and the endpoint's own URL (``…/v1/event``) would be posted to
    ``/v1/event/v1/event``."""
    _checked(base_url, name)
    return base_url


def checked_admin_url(base_url: str, name: str = "base_url") -> str:
    """``base_url`` if it is a gateway's base URL, as ``checked_base_url`` has it, without the
    admin API's path either (``/api``, ``/api/events``), which ``GatewayAdmin`` adds to it. Else
    a ValueError saying why: without a scheme, httpx's "UnsupportedProtocol" was all a trial read."""
    url = _checked(base_url, name)
    split = split_admin(url.raw_path.decode("ascii"))
    if split is not None:
        base = f"{url.scheme}://{url.netloc.decode()}{split[0]}"
        raise ValueError(
            f"{name} {base_url!r} holds the admin API's path {split[1]!r}, which is added to it: give the gateway's "
            f"base URL, {name} {base!r}"
        )
    return base_url


def _checked(base_url: str, name: str) -> httpx.URL:
    """``base_url`` read (``_url``), refused if it holds an ingest endpoint's path."""
    url = _url(base_url, name)
    split = split_endpoint(url.raw_path.decode("ascii").partition("?")[0])
    if split is not None:
        base = f"{url.scheme}://{url.netloc.decode()}{split[0]}"
        raise ValueError(
            f"{name} {base_url!r} holds the endpoint's path {split[1]!r}, which is added to it: give {name} {base!r}"
        )
    return url


def _url(base_url: str, name: str) -> httpx.URL:
    """``base_url`` read as an ``http(s)://`` URL with a host and no query nor fragment, else
    a ValueError saying what to give: ``127.0.0.1:8080`` is read as a URL of scheme
    ``127.0.0.1``, and no try could reach it."""
    given = f"{name} {base_url!r}"
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{given} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        if "://" not in base_url and not base_url.lower().startswith(("http:", "https:", "/")) and base_url.strip():
            fix = f"add http:// (or https://): {name} {'http://' + base_url.strip()!r}"
        else:
            fix = "give one such as http://127.0.0.1:8080"
        raise ValueError(f"{given} has no http:// or https://: {fix}")
    if url.query or url.fragment or "?" in base_url or "#" in base_url:  # a query was posted to, a 405 (a trial)
        raise ValueError(f"{given} has a query (?) or fragment (#): give the server's address alone")
    return url


class SyncClientBase:
    """Blocking client: one ``httpx.Client`` (one connection pool), safe to share between
    threads. A send of several requests runs up to ``max_concurrency`` of them at once on a
    small thread pool owned by the client."""

    _core: Core

    def __init__(
        self,
        core: Core,
        *,
        base_url: str,
        timeout: float | httpx.Timeout,
        max_concurrency: int,
        transport: httpx.BaseTransport | None,
        headers: dict[str, str] | None,
    ) -> None:
        self._core = core
        self._max_concurrency = max_concurrency
        self._http = httpx.Client(
            base_url=checked_base_url(base_url), transport=transport, **http_options(timeout, max_concurrency, headers)
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._closed = False
        self._stopping = False  # a send was interrupted: deliveries in flight end after their try

    def prepare(self, events: Iterable[Any]) -> Prepared:
        """Check, hash and pack events without sending them (``send`` accepts the result)."""
        return self._core.prepare(events)

    def send(self, events: Iterable[Any] | Prepared, *, on_request: OnRequest | None = None) -> SendResult:
        """Check every event (raising InvalidEvents before anything is sent), then send them
        in as few requests as the API allows, concurrently, retrying what is retryable.
        ``on_request`` is called with each RequestResult as it completes (from a pool thread)."""
        prepared = events if isinstance(events, Prepared) else self._core.prepare(events)
        deliveries = [Delivery(r) for r in prepared.requests]
        if len(deliveries) <= 1 or self._max_concurrency == 1:
            try:
                for delivery in deliveries:
                    self.deliver_parts(delivery, on_request)
            except KeyboardInterrupt:
                raise SendInterrupted(gather_failures(deliveries)) from None
            return gather_failures(deliveries)
        pool = self.executor()
        futures = [pool.submit(self.deliver_parts, d, on_request) for d in deliveries]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            self._stopping = True  # the requests in flight make no further try
            for future in futures:
                future.cancel()  # those not started: not sent
            raise SendInterrupted(gather_failures(deliveries)) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return gather_failures(deliveries)

    def deliver_parts(self, delivery: Delivery, on_request: OnRequest | None = None) -> Delivery:
        """Send a request (``Delivery``), and, refused as too large, its halves, each until it
        succeeds or the retry policy gives up; ``on_request`` is called with each final result."""
        while (req := delivery.next()) is not None:
            result = self.deliver(req, progress=delivery.progress)
            if delivery.settle(self._core, result) and on_request is not None:
                on_request(result)
            if self._stopping:  # interrupted: the halves left are not sent
                break
        return delivery

    def deliver(
        self, req: PreparedRequest, on_request: OnRequest | None = None, *, progress: Progress | None = None
    ) -> RequestResult:
        """Send one prepared request until it succeeds or the retry policy gives up; ``progress``
        (from ``send``) says how far it went if an interrupt stops it."""
        if self._closed:
            raise CapigateError("the client is closed")
        core = self._core
        url, params, headers = core.request(req)
        started = time.monotonic()
        progress = progress or Progress()
        while True:
            if core.pacer is not None:
                time.sleep(core.pacer.reserve(len(req.payloads)))
            progress.attempts += 1
            progress.posting = True
            try:
                response = self._http.post(url, params=params, content=req.body, headers=headers)
            except httpx.TransportError as exc:
                result, delay = core.outcome(req, progress.attempts, started, error=exc)
            else:
                result, delay = core.outcome(req, progress.attempts, started, response=response)
            progress.posting = False
            progress.reached = result.maybe_stored = progress.reached or result.maybe_stored  # an earlier try may have
            if delay is None or self._stopping:
                break
            time.sleep(delay)
        if on_request is not None:
            on_request(result)
        return result

    def batcher(
        self,
        *,
        max_batch: int | None = None,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        on_failure: OnFailure | None = None,
    ) -> Batcher:
        """A background batcher for high-volume producers (see ``capigate.client.batcher``):

            with client.batcher(max_batch=100, flush_interval=1.0) as b:
                b.add(event)

        ``max_batch`` defaults to the client's; ``flush_interval`` is in seconds."""
        from capigate.client.batcher import Batcher

        return Batcher(
            self,
            max_batch=max_batch or self._core.max_batch,
            flush_interval=flush_interval,
            max_queue=max_queue,
            on_failure=on_failure,
        )

    def executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="capigate-send")
            return self._pool

    def close(self) -> None:
        self._closed = True
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClientBase:
    """The async twin: one ``httpx.AsyncClient``; a send runs up to ``max_concurrency``
    requests at once (a limit shared by every concurrent send of the client)."""

    _core: Core

    def __init__(
        self,
        core: Core,
        *,
        base_url: str,
        timeout: float | httpx.Timeout,
        max_concurrency: int,
        transport: httpx.AsyncBaseTransport | None,
        headers: dict[str, str] | None,
    ) -> None:
        self._core = core
        self._http = httpx.AsyncClient(
            base_url=checked_base_url(base_url), transport=transport, **http_options(timeout, max_concurrency, headers)
        )
        self._max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self._closed = False

    def prepare(self, events: Iterable[Any]) -> Prepared:
        """Check, hash and pack events without sending them (``send`` accepts the result)."""
        return self._core.prepare(events)

    async def send(self, events: Iterable[Any] | Prepared, *, on_request: OnRequest | None = None) -> SendResult:
        """As the sync ``send``; checking runs in the event loop (~50 µs an event)."""
        prepared = events if isinstance(events, Prepared) else self._core.prepare(events)
        deliveries = [Delivery(r) for r in prepared.requests]
        await asyncio.gather(*(self.deliver_parts(d, on_request) for d in deliveries))
        return gather_failures(deliveries)

    async def deliver_parts(self, delivery: Delivery, on_request: OnRequest | None = None) -> Delivery:
        """As the sync ``deliver_parts``: a request, and, refused as too large, its halves."""
        while (req := delivery.next()) is not None:
            result = await self.deliver(req)
            if delivery.settle(self._core, result) and on_request is not None:
                on_request(result)
        return delivery

    async def deliver(self, req: PreparedRequest, on_request: OnRequest | None = None) -> RequestResult:
        if self._closed:
            raise CapigateError("the client is closed")
        core = self._core
        url, params, headers = core.request(req)
        started = time.monotonic()
        attempt, reached = 0, False
        async with self._slots:
            while True:
                attempt += 1
                if core.pacer is not None:
                    await asyncio.sleep(core.pacer.reserve(len(req.payloads)))
                try:
                    response = await self._http.post(url, params=params, content=req.body, headers=headers)
                except httpx.TransportError as exc:
                    result, delay = core.outcome(req, attempt, started, error=exc)
                else:
                    result, delay = core.outcome(req, attempt, started, response=response)
                reached = result.maybe_stored = reached or result.maybe_stored  # an earlier try may have
                if delay is None:
                    break
                await asyncio.sleep(delay)
        if on_request is not None:
            on_request(result)
        return result

    def batcher(
        self,
        *,
        max_batch: int | None = None,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        on_failure: OnFailure | None = None,
    ) -> AsyncBatcher:
        """The async batcher: ``async with client.batcher() as b: await b.add(event)``."""
        from capigate.client.batcher import AsyncBatcher

        return AsyncBatcher(
            self,
            max_batch=max_batch or self._core.max_batch,
            flush_interval=flush_interval,
            max_queue=max_queue,
            on_failure=on_failure,
        )

    async def aclose(self) -> None:
        self._closed = True
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
