"""One journal entry and one log line per request, written after the response is sent."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Callable
from time import time_ns

from capigate.errors import Problem, StoreError
from capigate.http.asgi import Request
from capigate.http.outcome import Outcome
from capigate.kept import retained
from capigate.personal import shown_key, shown_path
from capigate.store.base import JournalRecord, RequestRecord, Store

__all__ = ["JournalBuffer", "may_wait_elsewhere", "new_request_id", "request_record"]

log = logging.getLogger("capigate.requests")


_NODE = os.urandom(3).hex()  # once per process: urandom costs ~60 µs per call on some VMs
_counter = itertools.count()


def new_request_id() -> str:
    """Unique across processes and nodes, and sortable by time."""
    return "%x%s%04x" % (time_ns(), _NODE, next(_counter) & 0xFFFF)  # noqa: UP031  # a fifth cheaper than the f-string


# An entry another process has not written yet (a sibling worker's, another node's on one
# PostgreSQL) is at most its flush interval (50 ms) and one write away, but only for a request
# it answered lately: its id, made on arrival, is this young (a body may take body_timeout_s).
RECENT_ID_NS = 120 * 1_000_000_000


def may_wait_elsewhere(request_id: str, now_ns: int) -> bool:
    """Whether the entry of ``request_id``, not found once this process's buffer is written,
    may still wait in another process's: an id of ``new_request_id``'s form, made lately, by
    another process."""
    if len(request_id) < 11 or request_id[-10:-4] == _NODE:
        return False
    try:
        made_ns = int(request_id[:-10], 16)
    except ValueError:
        return False
    return abs(now_ns - made_ns) < RECENT_ID_NS


def request_record(
    request: Request, status: int, outcome: Outcome, request_id: str, received_at_ms: int
) -> JournalRecord:
    """The request's journal entry, with what the journal keeps beside it (``_kept``); a log
    line shows only its RequestRecord fields (capigate/logs.py)."""
    body, keys = _kept(status, outcome)
    return JournalRecord(
        request_id=request_id,
        received_at=received_at_ms,
        api=outcome.api,
        source=outcome.source,
        method=request.method,
        path=outcome.path or _capped(shown_path(request.path), MAX_PATH_CHARS),
        status=status,
        client_ip=request.client_ip,
        user_agent=_shown_agent(request.headers.get("user-agent")),
        latency_ms=_to_three_decimals(request.elapsed_ms),
        events_received=outcome.events_received,
        events_stored=outcome.events_stored,
        events_duplicate=outcome.events_duplicate,
        problems=outcome.problems,
        warnings=outcome.warnings,
        test_tag=outcome.test_tag,
        body=body,
        keys=keys,
    )


def _to_three_decimals(ms: float) -> float:
    """``ms`` to three decimals (a duration: not negative). Not ``round(ms, 3)``, which reads
    the float's decimal digits exactly: an eighth of the journal entry's instructions."""
    return int(ms * 1000.0 + 0.5) / 1000.0


def _shown_agent(agent: str | None) -> str | None:
    # Some server-side senders put a contact address in their User-Agent.
    return None if agent is None else _capped(shown_key(agent), MAX_AGENT_CHARS)


# Anyone may send a 60 KB path or User-Agent, without a key: kept whole, each such request
# added as much to the journal and the log (a trial), which keep a million entries.
MAX_PATH_CHARS = 1024
MAX_AGENT_CHARS = 512


def _capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _kept(status: int, outcome: Outcome) -> tuple[bytes | None, list[tuple[str, str]]]:
    """A refused (or silently dropped) request's body, PII treated, and the keys it can be found
    by; else the keys its handler noted."""
    if (status >= 400 or outcome.dropped) and outcome.body is not None:
        return retained(outcome.api, outcome.body)
    return None, outcome.keys


MAX_WAITING = 10_000  # journal entries kept in memory while the store is away
RETRY_S = 1.0  # between tries to write them while it is
STOP_WAIT_S = 5.0  # for the write under way at a stop


class JournalBuffer:
    """Journal entries wait here a few milliseconds and are written together: one store write
    per flush instead of one per request, which is most of what a W2 request cost the writer.
    The events themselves are never buffered: they are committed before the response.

    While the store is unavailable the entries stay here, up to ``max_waiting``, and are
    written once it is back: the requests refused during an outage are in the journal after
    it. Beyond that bound the newest are dropped and counted (``dropped``, in /metrics), and
    the journal gets one entry saying how many."""

    def __init__(
        self,
        store: Store,
        interval_s: float = 0.05,
        max_records: int = 512,
        max_waiting: int = MAX_WAITING,
        on_backlog_written: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._on_backlog_written = on_backlog_written  # given when the write that failed began (epoch ms)
        self._interval_s = interval_s
        self._max_records = max_records
        self._max_waiting = max_waiting
        self._records: list[RequestRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0  # since start
        self._dropped_unjournaled = 0
        self._failing = False
        self._writing = asyncio.Lock()  # one flush at a time: a flush also waits for the one under way

    @property
    def waiting(self) -> int:
        return len(self._records)

    def add(self, record: RequestRecord) -> None:
        records = self._records
        if len(records) >= self._max_waiting:
            self.dropped += 1
            self._dropped_unjournaled += 1
            return
        records.append(record)
        if len(records) >= self._max_records:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        """Every entry written when it returns, unless the store refuses them. A write under
        way is waited for (up to STOP_WAIT_S), not cancelled: cancelled, the entries it had
        taken were not yet in the store, and on PostgreSQL were lost."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self._writing.acquire(), STOP_WAIT_S)
            except TimeoutError:
                log.warning("the journal's write under way did not end within %g s: it is cancelled", STOP_WAIT_S)
            else:
                self._writing.release()  # the flusher waits for its next turn, or for this lock
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not await self.flush():
            lost = self.waiting + self._dropped_unjournaled
            log.warning("%d journal entries could not be written before the stop and are lost", lost)

    async def flush(self) -> bool:
        """Write what waits; False when the store refused it (it waits on). When it returns
        True, every entry added before the call is in the store: a flush under way (the
        flusher's) is awaited first, since it holds entries this one would not see."""
        async with self._writing:
            return await self._write()

    async def caught_up(self) -> None:
        """For a read of the journal: the entries of the requests this process answered are
        written first. Not while the store refuses them (the flusher retries every RETRY_S)."""
        if not self._failing:
            await self.flush()

    async def _write(self) -> bool:
        records, self._records = self._records, []
        dropped = self._dropped_unjournaled
        if dropped:
            records.append(_overflow_record(dropped))
        if not records:
            return True
        started_ms = time_ns() // 1_000_000
        try:
            await self._store.record_requests(records)
        except StoreError as exc:
            if dropped:
                records.pop()
            self._keep_waiting(records + self._records)  # oldest first
            if not self._failing:
                log.warning("journal entries wait in memory until the store takes them: %s", exc)
                self._failing = True
            return False
        self._dropped_unjournaled -= dropped
        if self._failing:
            log.warning("the store took the journal entries that waited (%d dropped so far)", self.dropped)
            self._failing = False
            if self._on_backlog_written is not None:
                self._on_backlog_written(started_ms)
        return True

    def _keep_waiting(self, records: list[RequestRecord]) -> None:
        # add() ran during the failed write, against an empty list: bound the total again.
        excess = len(records) - self._max_waiting
        if excess > 0:
            del records[self._max_waiting :]
            self.dropped += excess
            self._dropped_unjournaled += excess
        self._records = records

    async def _flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_S)


def _overflow_record(dropped: int) -> RequestRecord:
    problem = Problem(
        "", "journal_overflow", f"{dropped} journal entries were dropped: the store was unavailable and the buffer full"
    )
    now_ms = time_ns() // 1_000_000
    return RequestRecord(
        request_id=new_request_id(),
        received_at=now_ms,
        api="capigate",
        source=None,
        method="-",
        path="(journal)",
        status=503,
        client_ip=None,
        user_agent=None,
        latency_ms=0.0,
        problems=[problem],
    )
