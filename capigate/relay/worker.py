"""One destination's relay worker: claim due events, send them upstream, settle the outcome.

Each destination has its own worker, its own HTTP client (``http1.UpstreamClient``: its own
connections and timeout) and its own limit of requests in flight, so a destination that
hangs or fails only ever holds its own slots. The loop::

    claim (lease) -> one task per upstream request -> classify the answer -> settle

Throughput: batches are claimed ahead of the free slots (a slot that frees starts the next
one at once, one claim takes several), and outcomes are settled in the background, those of
several requests in one store call.

- **delivered**: settled; the destination's failure count goes back to 0.
- **retry** (network error, timeout, 408/425/429, 5xx): the events are due again after a
  backoff with full jitter, never shorter than ``Retry-After``; the whole destination pauses
  until then and resumes with a single request in flight (a probe) until one succeeds, so an
  outage costs one request per backoff, not one per queued batch. A replay of the
  destination's dead letters (any process: seen in the store at each poll) lifts the pause. An event past
  ``max_attempts`` or ``max_age_hours`` goes to the dead letters instead.
- **split** (an Axon batch refused with 400/413/422): the attempt is recorded, the lease
  extended, and the batch retried at once in parts: first without the events the upstream's
  body names (``events[3]…``), if it names any, else in halves, down to single events.
- **refused** (a single event refused): dead letter with the verbatim status, headers, body.
- **blocked** (401, 403, 404, other 4xx): the request's events go to the dead letters (replay
  them once the key or URL is fixed), and the destination backs off as for a retry.

- **interrupted** (the worker stops, and the request has had no answer within the stop's
  grace, ``STOP_GRACE_S``; none for a worker whose ``capigate serve`` process is gone): the
  request is cancelled, the attempt recorded as such, and the events are due again at once,
  their lease given back; not counted against ``max_attempts``, no backoff. The upstream may
  have received it: an Axon event's ``dedupe_id`` covers the copy sent again.

All retry state is in the store: a worker keeps only its leased batches, the outcomes not
yet written and its backoff. When nothing is due it sleeps until woken (``wake()``, called by ingest in this
process), until its pause ends, or for ``poll_interval_s`` (work queued by other processes).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Final, Literal

import msgspec

from capigate.errors import StoreError
from capigate.relay.destinations import Target
from capigate.relay.http1 import UpstreamClient, UpstreamError
from capigate.relay.policy import Verdict, classify, give_up_reason
from capigate.retry import backoff_s, retry_after_s, retry_delay_s
from capigate.splitting import split_parts
from capigate.store.base import AttemptOutcome, Delivery, Store

__all__ = ["MAX_BODY_CHARS", "STOP_GRACE_S", "AttemptHook", "DestinationWorker", "WorkerStats"]

log = logging.getLogger("capigate.relay")

MAX_BODY_CHARS: Final = 65_536  # of the upstream's body kept with each attempt
LEASE_MARGIN_MS: Final = 5_000
# A stop waits this long for the answers to the requests in flight, then cuts them short: a
# hanging upstream held a stop for its whole timeout_s (10 s: Docker's kill came with it). Not
# less: an AppsFlyer request cut short may count its event twice there (it deduplicates
# nothing), and a slow but working upstream answers within a few seconds.
STOP_GRACE_S: Final = 3.0
_NAMED_EVENT = re.compile(rb"events\[(\d+)\]")

AttemptHook = Callable[[str, str, float], None]  # (destination, result, latency_ms): metrics
Result = Literal["delivered", "retry", "dead", "split", "interrupted"]


class WorkerStats(msgspec.Struct, kw_only=True):
    """Counts since start, per destination: requests by outcome and events by final state."""

    requests: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    in_flight: int = 0
    paused_until_ms: int = 0


class _Answer(msgspec.Struct, kw_only=True):
    at_ms: int
    status: int | None
    latency_ms: float
    headers: dict[str, str] = {}
    body: str = ""
    raw: bytes = b""
    error: str | None = None
    cut: bool = False  # cut short by the worker's stop, before an answer


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class DestinationWorker:
    def __init__(
        self,
        store: Store,
        target: Target,
        *,
        owner: str,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        self.store, self.target, self.owner = store, target, owner
        self.stats = WorkerStats()
        s = target.settings
        self._timeout_s = s.timeout_s
        self.lease_ms = round(2 * s.timeout_s * 1000) + LEASE_MARGIN_MS
        self.on_attempt = on_attempt  # called once per upstream request (metrics)
        self._changed = asyncio.Event()  # woken, a slot freed, or stopping
        self._stopping = False
        self._client = UpstreamClient(target.url, connections=s.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()  # requests in flight (a slot each)
        # Claimed batches waiting for a slot, with when their lease ends.
        self._ready: collections.deque[tuple[int, list[Delivery]]] = collections.deque()
        self._unsettled: list[AttemptOutcome] = []  # outcomes not yet handed to the store
        self._settler: asyncio.Task[None] | None = None
        self._failures = 0  # consecutive failed requests: the backoff exponent
        self._probing = False  # after a failure: one request in flight until one succeeds
        self._paused_at_ms = 0  # when the last pause began or grew: a replay since lifts it
        self._claim_failures, self._claim_error = 0, ""  # failed claims in a row, the last error logged
        self._cut_at = float("inf")  # monotonic: when a stop cuts the requests in flight short
        self._cut_timer: asyncio.TimerHandle | None = None
        self._cutting = False  # the requests in flight are being cancelled by the stop
        self._grace_s = STOP_GRACE_S  # the stop's, for its log line
        self._cut_requests, self._cut_events, self._cut_without_id = 0, 0, 0

    @property
    def name(self) -> str:
        return self.target.name

    def wake(self) -> None:
        self._changed.set()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Claim nothing more; the requests in flight get ``grace_s`` to be answered, then are
        cut short (``interrupted``); ``run()`` returns once they are settled. Called again with a
        shorter grace (a worker whose server process died as it stopped), the shorter holds.
        On the worker's event loop."""
        self._stopping = True
        self._changed.set()
        cut_at = time.monotonic() + grace_s
        if cut_at < self._cut_at:
            self._cut_at, self._grace_s = cut_at, grace_s
            if self._cut_timer is not None:
                self._cut_timer.cancel()
            self._cut_timer = asyncio.get_running_loop().call_later(grace_s, self._cut_short)

    def _cut_short(self) -> None:
        """Cancel the requests still in flight: each records its attempt as ``interrupted``
        (``_send``), and its events are due again (the runner gives back the leases left)."""
        self._cutting = True
        for task in self._tasks:
            task.cancel()

    async def run(self) -> None:
        try:
            await self._claim_loop()
        finally:
            self._stopping = True
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._cut_timer is not None:
                self._cut_timer.cancel()
            if self._cut_requests:
                self._say_cut()
            if self._settler is not None:
                await asyncio.gather(self._settler, return_exceptions=True)
            await self._client.aclose()  # the batch claimed ahead, if any: released by the runner

    def _say_cut(self) -> None:
        """One line for the requests a stop cut short: what became of their events, plainly
        (it was a TimeoutError's warning at the end of timeout_s, the attempt counted)."""
        when = f"within the stop's {self._grace_s:g} s" if self._grace_s else "as the worker stopped at once"
        if self.target.api == "axon" and not self._cut_without_id:
            again = "their dedupe_id covers a copy the upstream received"
        elif self.target.api == "axon":  # accepted with a warning (missing_dedupe_id), and nothing to match a copy
            again = (
                f"{self._cut_without_id} of them have no dedupe_id: one the upstream had received counts twice there"
            )
        else:
            again = "AppsFlyer deduplicates nothing: one it had received counts twice"
        log.warning(
            "relay %s: stopping: %d request(s) had no answer %s and were cut short; their %d event(s) "
            "are pending again, sent at the next start (%s)",
            self.name, self._cut_requests, when, self._cut_events, again,
        )  # fmt: skip

    # --- claiming ---------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        """Keep every slot busy, plus as many batches claimed ahead (``_ready``): a slot that
        frees starts one at once (``_finished``), while the next claim goes to the store, and
        each claim (one commit) takes several batches."""
        settings, per_request = self.target.settings, self.target.events_per_request
        while not self._stopping:
            self._changed.clear()
            pause_ms = self.stats.paused_until_ms - _now_ms()
            if pause_ms > 0:
                # Looked at every poll: a replay (from any process, through the store) lifts it.
                await self._sleep(min(pause_ms / 1000, settings.poll_interval_s), wakeable=False)
                await self._lift_pause_if_replayed()
                continue
            self._start_ready()
            ahead = 0 if self._probing else self._capacity()  # batches claimed ahead of the free slots
            wanted = self._capacity() - len(self._tasks) + ahead - len(self._ready)
            if wanted <= 0:
                await self._changed.wait()
                continue
            claimed_at = _now_ms()
            try:
                deliveries = await self.store.claim(
                    self.name, owner=self.owner, limit=wanted * per_request, now_ms=claimed_at, lease_ms=self.lease_ms
                )
            except StoreError as exc:
                self._claim_failed(str(exc))
                await self._sleep(settings.poll_interval_s, wakeable=False)
                continue
            if self._claim_failures:
                log.warning("relay %s: claims events again, after %d failed claim(s)", self.name, self._claim_failures)
                self._claim_failures, self._claim_error = 0, ""
            lease_end = claimed_at + self.lease_ms
            self._ready.extend((lease_end, batch) for batch in _chunks(deliveries, per_request))
            self._start_ready()
            if len(deliveries) < wanted * per_request:
                await self._sleep(settings.poll_interval_s, wakeable=True)  # drained for now

    async def _lift_pause_if_replayed(self) -> None:
        """A replay of this destination since the pause began ends the pause: its events are due
        at once, as the README says, and the destination resumes with one request (a probe),
        which pauses it again if the upstream still fails. The pause lived only here: a replay
        waited it out (a day, once), and only a restart lifted it (a trial)."""
        left_ms = self.stats.paused_until_ms - _now_ms()
        if left_ms <= 0 or self._stopping:
            return
        try:
            replayed = await self.store.replayed_since(self.name, self._paused_at_ms)
        except StoreError:
            return  # the pause holds; the claim loop says what is wrong with the store
        if replayed:
            log.warning(
                "relay %s: events were replayed: the pause (%.1f s left) is lifted, one request first",
                self.name,
                left_ms / 1000,
            )
            self.stats.paused_until_ms = 0

    def _claim_failed(self, error: str) -> None:
        """Logged once for each new error, not at every poll: during a store outage each worker
        wrote the same line twice a second (a trial)."""
        if error != self._claim_error:
            log.warning("relay %s: cannot claim events: %s (said once until it changes)", self.name, error)
            self._claim_error = error
        self._claim_failures += 1

    def _capacity(self) -> int:
        return 1 if self._probing else self.target.settings.concurrency

    def _start_ready(self) -> None:
        """Start claimed batches in the free slots, unless the destination is paused."""
        now = _now_ms()
        if self._stopping or self.stats.paused_until_ms > now:
            return
        while self._ready and len(self._tasks) < self._capacity():
            lease_end, deliveries = self._ready.popleft()
            if lease_end < now + self._timeout_s * 1000 + LEASE_MARGIN_MS:
                continue  # held through a pause: its lease could end mid-request; it will be claimed again
            task = asyncio.create_task(self._deliver(self._client, deliveries))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        self.stats.in_flight = len(self._tasks)

    async def _sleep(self, seconds: float, *, wakeable: bool) -> None:
        """Until ``seconds`` pass or, if ``wakeable``, something changes; a stop always ends it."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
            if wakeable:
                return
            self._changed.clear()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("relay %s: delivery task failed", self.name, exc_info=task.exception())
        self._start_ready()
        self._changed.set()

    # --- one request (and, for a refused batch, its parts) ---------------------------------

    async def _deliver(self, client: UpstreamClient, deliveries: list[Delivery], split: _Split | None = None) -> None:
        """One request; for a batch refused as a whole, its parts too, then one line that
        sums them up (the requests the halving cost, and where the events went)."""
        answer = await self._send(client, deliveries)
        if answer.cut:
            self._cut_requests += 1
            self._cut_events += len(deliveries)
            self._cut_without_id += sum(1 for d in deliveries if not d.dedupe_id)
            if split is not None:
                split.requests += 1
                split.cut += len(deliveries)
            if self.on_attempt is not None:  # an attempt all the same: the upstream may have it
                self.on_attempt(self.name, "interrupted", answer.latency_ms)
            self._settle(deliveries, answer, "interrupted")
            return
        verdict = classify(answer.status, events=len(deliveries), splittable=self.target.splittable)
        self.stats.requests += 1
        if split is not None:
            split.requests += 1
            split.outcomes[verdict] += len(deliveries) if verdict is not Verdict.SPLIT else 0
        if self.on_attempt is not None and verdict is not Verdict.RETRY:  # _retry says which it was
            refused = verdict in (Verdict.REFUSED, Verdict.BLOCKED)
            self.on_attempt(self.name, "dead" if refused else verdict.value, answer.latency_ms)
        if verdict is Verdict.DELIVERED:
            self._failures, self._probing = 0, False
            self.stats.delivered += len(deliveries)
            self._settle(deliveries, answer, "delivered")
        elif verdict is Verdict.RETRY:
            await self._retry(deliveries, answer)
        elif verdict is Verdict.SPLIT:
            self._failures, self._probing = 0, False  # the upstream answers: it is not down
            lease_end = _now_ms() + self.lease_ms
            self._settle(deliveries, answer, "split", next_at_ms=lease_end)
            parts = _parts(deliveries, answer.raw)
            top, split = split is None, split or _Split(len(deliveries), answer.status)
            for i, part in enumerate(parts):
                if self._stopping or not self._may_send_part(lease_end, sum(map(len, parts[i:]))):
                    break  # the rest stays leased until the runner releases it, or its lease ends
                await self._deliver(client, part, split)
            if top:
                log.warning("relay %s: %s", self.name, split.summary())
        elif verdict is Verdict.REFUSED:
            self._failures, self._probing = 0, False
            self.stats.dead += len(deliveries)
            log.warning(
                "relay %s: upstream refused %d event(s) (HTTP %s): dead letter",
                self.name,
                len(deliveries),
                answer.status,
            )
            self._settle(deliveries, answer, "dead")
        else:
            self.stats.dead += len(deliveries)
            capped = self._back_off(answer)
            log.warning(
                "relay %s: upstream answered HTTP %s%s: %d event(s) dead-lettered, backing off %.1f s",
                self.name,
                answer.status,
                capped,
                len(deliveries),
                (self.stats.paused_until_ms - _now_ms()) / 1000,
            )
            self._settle(deliveries, answer, "dead")

    def _may_send_part(self, lease_end_ms: int, waiting: int) -> bool:
        """Whether the next part of a split batch goes now. Not while the destination pauses
        (a part's 429 or 5xx: its Retry-After holds for the rest too), nor once the part's lease
        could end before its answer: the parts go one after another, and one waiting behind many
        slow answers outlived its lease, was claimed again and sent twice. Either way it stays
        pending, claimed again once its lease ends (after the pause)."""
        now = _now_ms()
        if self.stats.paused_until_ms > now:
            why = "the destination pauses"
        elif now + self._timeout_s * 1000 + LEASE_MARGIN_MS > lease_end_ms:
            why = "its lease would end before an answer"
        else:
            return True
        log.info("relay %s: %s; %d event(s) of a split batch wait for their lease to end", self.name, why, waiting)
        return False

    async def _send(self, client: UpstreamClient, deliveries: list[Delivery]) -> _Answer:
        at_ms = _now_ms()
        started = time.perf_counter()
        path, request_headers, body = self.target.request(deliveries)
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await client.post(path, request_headers, body)
        except (UpstreamError, TimeoutError, OSError) as exc:
            latency = (time.perf_counter() - started) * 1000
            if isinstance(exc, TimeoutError):
                error = f"TimeoutError: no complete answer within timeout_s = {self._timeout_s:g}"
            else:
                error = str(exc) or type(exc).__name__
            return _Answer(at_ms=at_ms, status=None, latency_ms=round(latency, 3), error=error)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not self._cutting or current is None or current.uncancel() > 0:
                raise  # not (only) the stop's cut: someone else's cancel goes on
            latency = (time.perf_counter() - started) * 1000
            error = f"interrupted: the relay stopped {latency / 1000:.1f} s into the request, before an answer"
            return _Answer(at_ms=at_ms, status=None, latency_ms=round(latency, 3), error=error, cut=True)
        latency = (time.perf_counter() - started) * 1000
        raw = response.body
        headers: dict[str, str] = {}
        for key, value in response.headers:
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return _Answer(
            at_ms=at_ms,
            status=response.status,
            latency_ms=round(latency, 3),
            headers=headers,
            body=raw[:MAX_BODY_CHARS].decode("utf-8", "replace"),
            raw=raw,
        )

    async def _retry(self, deliveries: list[Delivery], answer: _Answer) -> None:
        capped = self._back_off(answer)
        next_at_ms = self.stats.paused_until_ms
        retry: list[Delivery] = []
        dead: list[tuple[Delivery, str]] = []
        s = self.target.settings
        for d in deliveries:
            reason = give_up_reason(
                d.attempts + 1,
                d.queued_at_ms,
                now_ms=answer.at_ms,
                max_attempts=s.max_attempts,
                max_age_hours=s.max_age_hours,
            )
            if reason is None:
                retry.append(d)
            else:
                dead.append((d, reason))
        self.stats.retried += len(retry)
        self.stats.dead += len(dead)
        if self.on_attempt is not None:  # an attempt whose events all gave up is "dead", as a refusal is
            self.on_attempt(self.name, "retry" if retry else "dead", answer.latency_ms)
        what = (f"HTTP {answer.status}" if answer.status is not None else answer.error or "") + capped
        wait_s = (next_at_ms - _now_ms()) / 1000
        if dead:  # past max_attempts or max_age_hours: said, not hidden in "retrying 0 event(s)"
            # The reason after a comma: it holds parentheses; and no "retrying 0 in 7.9 s" (a trial).
            retrying = f"; retrying {len(retry)} in {wait_s:.1f} s" if retry else ""
            log.warning(
                "relay %s: %s; %d event(s) dead-lettered, %s%s", self.name, what, len(dead), dead[0][1], retrying
            )
        else:
            log.warning("relay %s: %s; retrying %d event(s) in %.1f s", self.name, what, len(retry), wait_s)
        outcomes = self._outcomes(retry, answer, "retry", next_at_ms=next_at_ms)
        for d, reason in dead:
            error = f"{answer.error}; {reason}" if answer.error else reason
            outcomes += self._outcomes([d], answer, "dead", error=error)
        self._record(outcomes)

    def _back_off(self, answer: _Answer) -> str:
        """Pause the destination. Requests that fail while it is already paused (they were in
        flight together) share the pause instead of growing the backoff each. Returns what the
        log line adds when the upstream's Retry-After was longer than ``max_retry_after_s``."""
        s = self.target.settings
        now = _now_ms()
        delay = 0.0
        if self.stats.paused_until_ms <= now:
            delay = backoff_s(self._failures, base_s=s.backoff_base_s, max_s=s.backoff_max_s)
            self._failures += 1
        header = answer.headers.get("retry-after")
        delay = retry_delay_s(delay, header, now_s=now / 1000, max_retry_after_s=s.max_retry_after_s)
        self._probing = True
        self._paused_at_ms = now
        self.stats.paused_until_ms = max(self.stats.paused_until_ms, now + round(delay * 1000))
        asked = retry_after_s(header, now_s=now / 1000)
        if asked is None or asked <= s.max_retry_after_s:
            return ""
        return f" (Retry-After {asked:g} s capped at {s.max_retry_after_s:g} s, max_retry_after_s)"

    # --- settling ---------------------------------------------------------------------

    def _settle(
        self, deliveries: Sequence[Delivery], answer: _Answer, result: Result, *, next_at_ms: int | None = None
    ) -> None:
        self._record(self._outcomes(deliveries, answer, result, next_at_ms=next_at_ms))

    def _outcomes(
        self,
        deliveries: Sequence[Delivery],
        answer: _Answer,
        result: Result,
        *,
        next_at_ms: int | None = None,
        error: str | None = None,
    ) -> list[AttemptOutcome]:
        # One headers dict and one body string for all: the store keeps them once.
        return [
            AttemptOutcome(
                event_id=d.event_id,
                destination=self.name,
                at_ms=answer.at_ms,
                result=result,
                status=answer.status,
                latency_ms=answer.latency_ms,
                error=error or answer.error,
                response_headers=answer.headers,
                response_body=answer.body,
                next_attempt_at_ms=next_at_ms,
            )
            for d in deliveries
        ]

    def _record(self, outcomes: list[AttemptOutcome]) -> None:
        """Settle in the background, so the request's slot is free for the next batch at once:
        one settle in flight per destination, the outcomes that come meanwhile in the next
        (in order). ``run()`` waits for them all before it returns."""
        self._unsettled.extend(outcomes)
        if self._unsettled and (self._settler is None or self._settler.done()):
            self._settler = asyncio.create_task(self._settle_all())

    async def _settle_all(self) -> None:
        while self._unsettled:
            outcomes, self._unsettled = self._unsettled, []
            try:
                await self.store.settle(outcomes, owner=self.owner)
            except StoreError as exc:
                # The events stay leased: once the lease expires they are sent again (at least once).
                log.error("relay %s: cannot record %d outcome(s): %s", self.name, len(outcomes), exc)


class _Split:
    """A batch refused as a whole, retried in parts: what its parts cost and became."""

    def __init__(self, events: int, status: int | None) -> None:
        self.events, self.status, self.requests = events, status, 1
        self.outcomes: collections.Counter[Verdict] = collections.Counter()
        self.cut = 0  # events whose part's request a stop cut short

    def summary(self) -> str:
        dead = self.outcomes[Verdict.REFUSED] + self.outcomes[Verdict.BLOCKED]
        delivered, retried = self.outcomes[Verdict.DELIVERED], self.outcomes[Verdict.RETRY]
        waiting = self.events - dead - delivered - retried - self.cut
        text = (
            f"a batch of {self.events} event(s) refused (HTTP {self.status}), retried in parts: "
            f"{self.requests} request(s) in all, {delivered} delivered, {dead} dead-lettered"
        )
        if retried:
            text += f", {retried} met a retryable failure"
        if self.cut:
            text += f", {self.cut} cut short by the stop"
        if waiting:
            text += f", {waiting} waiting for their lease to end"
        return text


def _chunks(deliveries: list[Delivery], size: int) -> list[list[Delivery]]:
    return [deliveries[i : i + size] for i in range(0, len(deliveries), size)]


def _parts(deliveries: list[Delivery], body: bytes) -> list[list[Delivery]]:
    """How to retry a refused batch (``capigate.splitting``, the SDK's rule too): the events
    the upstream's body names, each alone, after the others together; else the two halves."""
    return split_parts(deliveries, {int(i) for i in _NAMED_EVENT.findall(body[:MAX_BODY_CHARS])})
