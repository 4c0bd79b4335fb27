"""What the threaded and the async batcher share: their counts (``BatcherStats``), the
accounting of delivered and failed requests, and the checks of their sizes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Final

import msgspec

from capigate.axon.rules import MAX_BATCH
from capigate.client._base import Checked, Core, Delivery, FailedDelivery, PreparedRequest, RequestResult

__all__ = ["BatcherStats", "OnFailure"]

OnFailure = Callable[[FailedDelivery], None]
log: Final = logging.getLogger("capigate.client")


class BatcherStats(msgspec.Struct, kw_only=True):
    added: int = 0
    delivered: int = 0  # events in requests the server accepted
    failed: int = 0  # events in requests that failed for good
    requests: int = 0

    @property
    def pending(self) -> int:
        return self.added - self.delivered - self.failed


class _Flush:
    """A marker in the queue: send what came before, then set ``done``."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Accounts:
    """Counting and keeping failures, shared by both batchers."""

    def __init__(self, on_failure: OnFailure | None) -> None:
        self.on_failure = on_failure
        self.stats = BatcherStats()
        self.failed: list[FailedDelivery] = []
        self.lock = threading.Lock()
        self.next_index = 0  # add order of the next event to leave

    def requests(self, core: Core, checked: list[Checked]) -> list[PreparedRequest]:
        """``checked`` packed into requests of at most the client's batch size, numbered in
        the order events were added."""
        out = []
        for first in range(0, len(checked), core.max_batch):
            chunk = checked[first : first + core.max_batch]
            for start, end in core.parts(chunk):  # and within max_body_bytes
                out.append(core.pack(self.next_index, chunk[start:end], []))  # warnings went back from add()
                self.next_index += end - start
        return out

    def settle(self, delivery: Delivery, crashed: BaseException | None) -> None:
        """Record each request of a delivery (a request, or its halves: ``Delivery``); those
        a crash left unsent failed with it."""
        for req, result in delivery.done:
            self.record(req, result)
        if crashed is not None:
            for req in delivery.unsent():
                self.record(req, _crashed(req, crashed))

    def record(self, req: PreparedRequest, result: RequestResult) -> None:
        with self.lock:
            self.stats.requests += 1
            if result.ok:
                self.stats.delivered += len(req.payloads)
                return
            self.stats.failed += len(req.payloads)
        failure = FailedDelivery(result=result, payloads=req.payloads)
        if self.on_failure is None:
            with self.lock:
                self.failed.append(failure)
            return
        try:
            self.on_failure(failure)
        except Exception:
            log.exception("on_failure raised; the failed delivery is kept in batcher.failed")
            with self.lock:
                self.failed.append(failure)

    def report(self) -> None:
        if self.failed:
            events = sum(len(f.payloads) for f in self.failed)
            reasons = sorted({f.result.error or f"HTTP {f.result.status}" for f in self.failed})
            log.warning(
                "capigate batcher: %d event(s) not delivered (%s); see batcher.failed", events, "; ".join(reasons)
            )


def _crashed(req: PreparedRequest, exc: BaseException) -> RequestResult:
    return RequestResult(
        ok=False,
        status=0,
        attempts=0,
        first_event=req.first_event,
        events=len(req.payloads),
        error=f"{type(exc).__name__}: {exc}",
        warnings=req.warnings,
    )


def _check_sizes(max_batch: int, flush_interval: float, max_queue: int, core_batch: int) -> None:
    """``max_batch`` is the most events gathered before they leave: one Axon request (so at
    most the client's max_batch), or that many single AppsFlyer requests."""
    limit = core_batch if core_batch > 1 else MAX_BATCH
    if not 1 <= max_batch <= limit:
        raise ValueError(f"max_batch must be from 1 to {limit}")
    if flush_interval <= 0:
        raise ValueError("flush_interval must be positive (seconds)")
    if max_queue < 1:
        raise ValueError("max_queue must be at least 1")
