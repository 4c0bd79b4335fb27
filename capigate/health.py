"""What a gateway process knows of its store's health, for ``/readyz``, ``/metrics`` and the
admin API, without making any of them wait on a store that does not answer.

A watcher task probes the store every ``PROBE_INTERVAL_S`` (a real write, then the outbox
depths), each step bounded by ``PROBE_TIMEOUT_S``: a scrape reads the figures it cached, with
their age and ``capigate_store_up``, and answers at once even when the store hangs (a pool
waits 10 s for a connection: Prometheus' own scrape timeout). The ingest path reports its
failures here too: a node whose ingests fail is not ready, whatever a small probe says (a full
disk takes a one-row write in the space a table already has, and refuses an event). That
verdict ends when an ingest succeeds, or when the journal entries the outage held in memory
(the refused requests' bodies) are written, or, when the ingest got no answer in time rather
than a refusal, when a probe's write passes after it, or after ``INGEST_FAILURE_MEMORY_S``
without a new failure, so that a node taken out of a load balancer is tried again rather than
never.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from capigate.errors import StoreError
from capigate.responses import StoreFailure
from capigate.store.base import OutboxDepth, Store

__all__ = ["SCRAPE_READ_TIMEOUT_S", "StoreHealth"]

log = logging.getLogger("capigate.store")

T = TypeVar("T")

PROBE_INTERVAL_S: Final = 2.0
PROBE_TIMEOUT_S: Final = 1.0
SCRAPE_READ_TIMEOUT_S: Final = 0.5  # a scrape reads fresh depths within this, else takes the cached
INGEST_FAILURE_MEMORY_S: Final = 30.0


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a failure nobody waited for is not worth asyncio's warning


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StoreHealth:
    """One per gateway process. ``up`` is the last probe's verdict (True until one fails)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.up = True
        self.answering = True  # False: the last probe got no answer in time (a hung store)
        self.last_probe_failure: StoreFailure | None = None
        self.last_ingest_failure: StoreFailure | None = None
        self._last_ingest_ok_ms = 0
        self._last_probe_ok_ms = 0
        self.depths: list[OutboxDepth] | None = None
        self.depths_at_ms: int | None = None
        self._calls: dict[str, asyncio.Future[Any]] = {}

    # --- what the ingest path reports ------------------------------------------------------

    def ingest_failed(self, exc: StoreError, *, hung: bool = False) -> None:
        """``hung``: the store gave no answer in time (a stalled writer, a lock held): once the
        store answers a probe's write again it takes events again, where a refusal (a full
        disk) needs an ingest, or the held journal, to say so."""
        self.last_ingest_failure = StoreFailure(at=_now_ms(), error=str(exc), hung=hung)

    def ingest_ok(self) -> None:
        self._last_ingest_ok_ms = _now_ms()

    def backlog_written(self, started_ms: int) -> None:
        """The journal entries that waited while the store refused writes were written, in a
        write begun at ``started_ms``: the refused requests' bodies, as large a write as their
        events. A node a load balancer took out gets no ingest to prove the store takes events
        again; without this it stayed unready for ``INGEST_FAILURE_MEMORY_S`` after the disk
        had room. A failure after ``started_ms`` still counts."""
        self._last_ingest_ok_ms = max(self._last_ingest_ok_ms, started_ms)

    def refusing_ingests(self, now_ms: int | None = None) -> StoreFailure | None:
        """The last ingest failure, while no ingest succeeded since and it is recent."""
        failure = self.last_ingest_failure
        now_ms = _now_ms() if now_ms is None else now_ms
        if failure is None or failure.at < self._last_ingest_ok_ms:
            return None
        if failure.hung and failure.at < self._last_probe_ok_ms:
            return None  # it stayed unready INGEST_FAILURE_MEMORY_S after a stall (a trial: 28 s)
        return failure if now_ms - failure.at < INGEST_FAILURE_MEMORY_S * 1000 else None

    # --- probing -------------------------------------------------------------------------------

    async def check_writable(self) -> StoreFailure | None:
        """A real write now, bounded in time; the failure, if any (and ``up`` follows it)."""
        try:
            await self._within("probe", self.store.check_writable, PROBE_TIMEOUT_S)
        except TimeoutError:
            self.answering = False
            self._mark(StoreFailure(at=_now_ms(), error=f"no answer within {PROBE_TIMEOUT_S:g} s"))
            return self.last_probe_failure
        except StoreError as exc:
            self.answering = True
            self._mark(StoreFailure(at=_now_ms(), error=str(exc)))
            return self.last_probe_failure
        self.answering = True
        self._last_probe_ok_ms = _now_ms()
        self._mark(None)
        return None

    async def refresh(self) -> None:
        """One round of the watcher: the probe, then (if it passed) the outbox depths."""
        if await self.check_writable() is None:
            await self.read_depths(PROBE_TIMEOUT_S)

    async def read_depths(self, timeout_s: float) -> list[OutboxDepth] | None:
        """The outbox depths read now if the store answers within ``timeout_s``, else the
        last ones read (``depths_at_ms`` says when)."""
        if self.answering:
            try:
                depths = await self._within("depths", self.store.outbox_depths, timeout_s)
            except (StoreError, TimeoutError, NotImplementedError, AttributeError):
                return self.depths
            self.depths, self.depths_at_ms = depths, _now_ms()
        return self.depths

    async def _within(self, kind: str, call: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        """``call()`` awaited for at most ``timeout_s``, then TimeoutError; never cancelled,
        for psycopg cancels a query with a round trip to the server, which a partition holds
        up for seconds. One call of each kind runs at a time: a later one waits on it."""
        task = self._calls.get(kind)
        if task is None or task.done():
            task = self._calls[kind] = asyncio.ensure_future(call())
            task.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            raise TimeoutError
        return task.result()  # type: ignore[no-any-return]

    async def watch(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(PROBE_INTERVAL_S)

    def _mark(self, failure: StoreFailure | None) -> None:
        if failure is not None:
            if self.up:
                log.warning("the store is unavailable: %s", failure.error)
            self.up, self.last_probe_failure = False, failure
        elif not self.up:
            log.warning("the store is available again")
            self.up = True

    # --- /metrics ------------------------------------------------------------------------------

    def exposition(self, now_ms: int, journal_dropped: int, journal_waiting: int) -> str:
        age = "NaN" if self.depths_at_ms is None else f"{max(0, now_ms - self.depths_at_ms) / 1000:.3f}"
        lines = [
            "# HELP capigate_store_up Whether the last probe of the store (a real write) passed.",
            "# TYPE capigate_store_up gauge",
            f"capigate_store_up {int(self.up)}",
            "# HELP capigate_store_figures_age_seconds Age of the store figures (queue depths) in this scrape.",
            "# TYPE capigate_store_figures_age_seconds gauge",
            f"capigate_store_figures_age_seconds {age}",
            "# HELP capigate_journal_waiting Journal entries kept in memory until the store takes them.",
            "# TYPE capigate_journal_waiting gauge",
            f"capigate_journal_waiting {journal_waiting}",
            "# HELP capigate_journal_dropped_total Journal entries dropped: the store was away and the buffer full.",
            "# TYPE capigate_journal_dropped_total counter",
            f"capigate_journal_dropped_total {journal_dropped}",
        ]
        return "\n".join(lines) + "\n"
