"""Background batchers for high-volume producers, threaded (``Batcher``) and async.

    with client.batcher(max_batch=100, flush_interval=1.0) as b:
        b.add(event)          # from any number of threads
    b.failed                  # what could not be delivered, with why

``add`` checks the event at once with the server's rules (raising InvalidEvents where the
event was built) and queues its normalised, hashed JSON. A sender thread takes up to
``max_batch`` events, or what arrived within ``flush_interval`` seconds of the first, and
hands them to the client, which sends up to ``max_concurrency`` requests at once and retries
them under its RetryPolicy.

Memory is bounded: at most ``max_queue`` events wait, plus one batch being gathered and
``max_concurrency`` requests in flight. When the queue is full, ``add`` **blocks** until there
is room (back-pressure: a producer cannot outrun the endpoint for long), or raises
``BatcherFull`` after ``timeout_s`` if given (``timeout_s=0``: never wait).

Nothing is dropped silently. A request that fails for good is kept in ``failed`` as a
``FailedDelivery`` (the result and the events' payloads, ready to send again), or handed to
``on_failure`` instead when given (then the batcher keeps nothing). Leaving the ``with``
block (or ``close()``) sends everything queued and waits for it; a batcher left open is
closed when the interpreter exits. ``stats`` counts added, delivered and failed events.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
import time
from concurrent.futures import Future, wait
from types import TracebackType
from typing import Any, Final, Self

import msgspec

from capigate.client._base import Checked, Delivery, FailedDelivery, PreparedRequest
from capigate.client._batching import BatcherStats, OnFailure, _Accounts, _check_sizes, _Flush
from capigate.client._http import AsyncClientBase, SyncClientBase
from capigate.errors import BatcherFull, CapigateError, Problem

__all__ = ["AsyncBatcher", "Batcher", "BatcherStats", "OnFailure"]

_CLOSE: Final = None

log: Final = logging.getLogger("capigate.client")


class Batcher:
    """Thread-safe background batcher over a sync client (see the module's docstring)."""

    def __init__(
        self,
        client: SyncClientBase,
        *,
        max_batch: int,
        flush_interval: float,
        max_queue: int = 10_000,
        on_failure: OnFailure | None = None,
    ) -> None:
        core = client._core
        _check_sizes(max_batch, flush_interval, max_queue, core.max_batch)
        self._client, self._core = client, core
        self.max_batch, self.flush_interval, self.max_queue = max_batch, flush_interval, max_queue
        self._queue: queue.Queue[Checked | _Flush | None] = queue.Queue(max_queue)
        self._slots = threading.BoundedSemaphore(client._max_concurrency)
        self._inflight: set[Future[None]] = set()
        self._inflight_lock = threading.Lock()
        self._accounts = _Accounts(on_failure)
        self._closed = False
        self._puts = 0  # add() and flush() calls between their closed check and their put's end
        self._puts_changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="capigate-batcher", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @property
    def stats(self) -> BatcherStats:
        with self._accounts.lock:
            return msgspec.structs.replace(self._accounts.stats)

    @property
    def queued(self) -> int:
        """Events waiting in the queue (at most ``max_queue``)."""
        return self._queue.qsize()

    @property
    def failed(self) -> list[FailedDelivery]:
        """Deliveries that failed for good (empty when ``on_failure`` takes them)."""
        with self._accounts.lock:
            return list(self._accounts.failed)

    def add(self, event: Any, *, timeout_s: float | None = None) -> list[Problem]:
        """Check and queue one event; returns its warnings. Raises InvalidEvents if it is
        wrong, BatcherFull if the queue stayed full ``timeout_s`` seconds (None: wait)."""
        if self._closed:
            raise CapigateError("the batcher is closed")
        checked, warnings = self._core.prepare_one(event)
        self._begin_put()
        try:
            with self._accounts.lock:
                self._accounts.stats.added += 1
            try:
                self._queue.put(checked, block=timeout_s != 0, timeout=timeout_s or None)
            except queue.Full:
                with self._accounts.lock:
                    self._accounts.stats.added -= 1
                raise BatcherFull(self.max_queue, timeout_s) from None
        finally:
            self._end_put()
        return warnings

    def flush(self, timeout_s: float | None = None) -> bool:
        """Send everything added so far and wait for it; False if ``timeout_s`` ran out."""
        marker = _Flush()
        try:
            self._begin_put()
        except CapigateError:
            return True  # closed: everything was sent
        try:
            self._queue.put(marker)
        finally:
            self._end_put()
        return marker.done.wait(timeout_s)

    def close(self) -> None:
        """Send everything queued, wait for it, stop the sender; log what failed."""
        with self._puts_changed:
            if self._closed:
                return
            self._closed = True
            # Puts under way land before the sentinel; the sender drains the queue meanwhile.
            self._puts_changed.wait_for(lambda: self._puts == 0)
        self._queue.put(_CLOSE)
        atexit.unregister(self.close)
        self._thread.join()
        self._accounts.report()

    def _begin_put(self) -> None:
        with self._puts_changed:
            if self._closed:
                raise CapigateError("the batcher is closed")
            self._puts += 1

    def _end_put(self) -> None:
        with self._puts_changed:
            self._puts -= 1
            self._puts_changed.notify_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        pending: list[Checked] = []
        deadline = 0.0
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()) if pending else None)
            except queue.Empty:  # flush_interval since the first pending event: send them
                self._dispatch(pending)
                pending = []
                continue
            if isinstance(item, Checked):
                if not pending:
                    deadline = time.monotonic() + self.flush_interval
                pending.append(item)
                if len(pending) >= self.max_batch:
                    self._dispatch(pending)
                    pending = []
                continue
            # flush() or close(): send what is pending and wait for every request
            self._dispatch(pending)
            pending = []
            with self._inflight_lock:
                inflight = list(self._inflight)
            wait(inflight)
            if item is None:
                return
            item.done.set()

    def _dispatch(self, checked: list[Checked]) -> None:
        if not checked:
            return
        for req in self._accounts.requests(self._core, checked):
            self._slots.acquire()  # at most max_concurrency requests in flight
            try:
                future = self._client.executor().submit(self._deliver, req)
            except RuntimeError:  # the interpreter is exiting: no new threads, send inline
                self._deliver(req)
                continue
            with self._inflight_lock:
                self._inflight.add(future)
            future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._inflight_lock:
            self._inflight.discard(future)

    def _deliver(self, req: PreparedRequest) -> None:
        delivery = Delivery(req)  # and its halves, if refused as too large
        try:
            self._client.deliver_parts(delivery)
            crashed = None
        except Exception as exc:  # a closed client, say: kept as a failure, never dropped
            crashed = exc
        finally:
            self._slots.release()
        self._accounts.settle(delivery, crashed)


class AsyncBatcher:
    """The async twin of Batcher, for one event loop: ``async with client.batcher() as b:
    await b.add(event)``. ``add`` waits while the queue is full (or raises BatcherFull)."""

    def __init__(
        self,
        client: AsyncClientBase,
        *,
        max_batch: int,
        flush_interval: float,
        max_queue: int = 10_000,
        on_failure: OnFailure | None = None,
    ) -> None:
        core = client._core
        _check_sizes(max_batch, flush_interval, max_queue, core.max_batch)
        self._client, self._core = client, core
        self.max_batch, self.flush_interval, self.max_queue = max_batch, flush_interval, max_queue
        self._queue: asyncio.Queue[Checked | asyncio.Event | None] = asyncio.Queue(max_queue)
        self._inflight: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._accounts = _Accounts(on_failure)
        self._task: asyncio.Task[None] | None = None
        self._puts = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @property
    def stats(self) -> BatcherStats:
        return msgspec.structs.replace(self._accounts.stats)

    @property
    def queued(self) -> int:
        """Events waiting in the queue (at most ``max_queue``)."""
        return self._queue.qsize()

    @property
    def failed(self) -> list[FailedDelivery]:
        """Deliveries that failed for good (empty when ``on_failure`` takes them)."""
        return list(self._accounts.failed)

    def _start(self) -> None:
        if self._task is None:
            self._slots = asyncio.Semaphore(self._client._max_concurrency)
            self._task = asyncio.get_running_loop().create_task(self._run(), name="capigate-batcher")

    async def add(self, event: Any, *, timeout_s: float | None = None) -> list[Problem]:
        """Check and queue one event; returns its warnings. Raises InvalidEvents if it is
        wrong, BatcherFull if the queue stayed full ``timeout_s`` seconds (None: wait)."""
        if self._closed:
            raise CapigateError("the batcher is closed")
        self._start()
        checked, warnings = self._core.prepare_one(event)
        self._puts += 1
        self._idle.clear()
        self._accounts.stats.added += 1
        try:
            if timeout_s == 0:
                self._queue.put_nowait(checked)
            else:
                await asyncio.wait_for(self._queue.put(checked), timeout_s)
        except (asyncio.QueueFull, TimeoutError):
            self._accounts.stats.added -= 1
            raise BatcherFull(self.max_queue, timeout_s) from None
        finally:
            self._puts -= 1
            if not self._puts:
                self._idle.set()
        return warnings

    async def flush(self) -> None:
        """Send everything added so far and wait for it."""
        if self._closed or self._task is None:
            return
        done = asyncio.Event()
        await self._queue.put(done)
        await done.wait()

    async def aclose(self) -> None:
        """Send everything queued, wait for it, stop the sender; log what failed."""
        if self._closed:
            return
        self._closed = True
        await self._idle.wait()  # adds under way land before the sentinel
        if self._task is not None:
            await self._queue.put(_CLOSE)
        if self._task is not None:
            await self._task
        self._accounts.report()

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self) -> None:
        pending: list[Checked] = []
        deadline = 0.0
        while True:
            item: Checked | asyncio.Event | None
            try:
                timeout = max(0.0, deadline - time.monotonic()) if pending else None
                item = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:  # flush_interval since the first pending event: send them
                await self._dispatch(pending)
                pending = []
                continue
            if isinstance(item, Checked):
                if not pending:
                    deadline = time.monotonic() + self.flush_interval
                pending.append(item)
                if len(pending) >= self.max_batch:
                    await self._dispatch(pending)
                    pending = []
                continue
            await self._dispatch(pending)
            pending = []
            if self._inflight:
                await asyncio.wait(list(self._inflight))
            if item is None:
                return
            item.set()

    async def _dispatch(self, checked: list[Checked]) -> None:
        if not checked:
            return
        assert self._slots is not None
        for req in self._accounts.requests(self._core, checked):
            await self._slots.acquire()
            task = asyncio.get_running_loop().create_task(self._deliver(req))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _deliver(self, req: PreparedRequest) -> None:
        assert self._slots is not None
        delivery = Delivery(req)
        try:
            await self._client.deliver_parts(delivery)
            crashed = None
        except Exception as exc:
            crashed = exc
        finally:
            self._slots.release()
        self._accounts.settle(delivery, crashed)
