"""Group commit on PostgreSQL: writer tasks that turn the writes pending at one moment into
one transaction of a few set-based statements (ingest.py builds them).

A writer takes the first pending job and drains what is queued behind it. The statements and
the COMMIT go out in one pipeline: a group costs one round trip and one WAL flush, whatever
its size. Under load the groups grow by themselves, since the jobs that arrive while a group
is committing make the next one. A group that fails on its data (not on the connection) is
run again job by job, so one bad request fails alone, as with SQLite's savepoints.

A job is committed once queued: cancelling the coroutine that awaits it does not undo it.

A group is answered within ``answer_timeout_s`` or its statement is cancelled on the server and
its connection cut (deadline.py): a network partition can leave a connection that never answers
(the server's end gone, its FIN lost), and neither TCP nor PostgreSQL ends it for hours; the
group's jobs, the journal flush that awaits them and every job queued behind them would wait
that long; a group waiting on a lock would wait for it, and its backend would go on waiting
after the cut. They fail instead (they may or may not be stored: the group's COMMIT may have
been under way), and the writer reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import psycopg
from psycopg.rows import TupleRow

from capigate.errors import StoreError
from capigate.store.base import WriterStats
from capigate.store.postgres.deadline import Deadline
from capigate.store.postgres.ingest import INGEST_SQL, PROBE_SQL, REQUESTS_SQL, Group, IngestJob, Job
from capigate.store.postgres.inspector import ADD_QUALITY_SQL, BODIES_SQL, KEYS_SQL, new_shard, quality_columns
from capigate.store.sql import store_error

__all__ = ["Writer"]

log = logging.getLogger("capigate.store")

Connection = psycopg.AsyncConnection[TupleRow]

_MAX_GROUP_JOBS: Final = 1000
_MAX_GROUP_ROWS: Final = 20_000  # bounds one statement's size and one group's latency
_SPLIT_ROWS: Final = 1000  # below this, a second transaction costs more than it saves
_RETRIES: Final = 3  # deadlock or serialization failure: the transaction was rolled back
_RECONNECT_PAUSE_S: Final = 1.0
ANSWER_TIMEOUT_S: Final = 30.0  # a group of 20 000 rows takes well under a second
_STOP: Final = None  # one per writer: finish the jobs queued before it, then stop


# --- the writer tasks -------------------------------------------------------------------


class Writer:
    """``count`` writer tasks sharing one queue, each with its own connection."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Connection]],
        node: str,
        count: int,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self._connect = connect
        self._node = node
        self._count = count
        self._answer_timeout_s = answer_timeout_s
        self._queue: asyncio.Queue[Job | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = 0  # writers waiting for a job
        self._queued = 0  # rows in the queue
        self._accepting = False
        self.stats = WriterStats()
        # Each connection's shard of the rollups (inspector.py), by the connection itself: a
        # new connection at a dead one's address must not inherit its shard, whose rows a
        # transaction cut off by a network partition may still hold locked.
        self._shards: weakref.WeakKeyDictionary[Connection, int] = weakref.WeakKeyDictionary()

    async def start(self) -> None:
        conns = []
        try:
            for _ in range(self._count):
                conns.append(await self._connect())
        except BaseException:
            for conn in conns:
                await conn.close()
            raise
        self._accepting = True
        self._tasks = [
            asyncio.create_task(self._serve(conn), name=f"capigate-pg-writer-{i}") for i, conn in enumerate(conns)
        ]

    async def stop(self) -> None:
        if self._accepting:
            self._accepting = False
            for _ in self._tasks:
                self._queue.put_nowait(_STOP)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []

    def future(self) -> asyncio.Future[Any]:
        if not self._accepting:
            raise StoreError("the store is not open")
        return asyncio.get_running_loop().create_future()

    async def submit(self, job: Job) -> Any:
        self._queue.put_nowait(job)
        self._queued += _rows(job)
        return await job.future

    async def _serve(self, conn: Connection | None) -> None:
        broken_at = 0.0
        try:
            while (first := await self._get()) is not _STOP:
                jobs, stop = self._drain(first)
                if conn is None and time.monotonic() - broken_at >= _RECONNECT_PAUSE_S:
                    conn = await self._reconnect()
                    broken_at = 0.0 if conn is not None else time.monotonic()
                if conn is None:
                    _fail(jobs, StoreError("no connection to PostgreSQL; retrying"))
                else:
                    try:
                        conn = await self._commit_within(conn, jobs)
                    except Exception as exc:  # a bug must not stop the writer: fail the group
                        log.exception("the PostgreSQL writer failed a group")
                        _fail(jobs, store_error(exc))
                    if conn is None:
                        broken_at = time.monotonic()
                if stop:
                    return
        except asyncio.CancelledError:  # the event loop is going away without close()
            self._accepting = False
            self._fail_pending()
            raise
        finally:
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()

    async def _commit_within(self, conn: Connection, jobs: list[Job]) -> Connection | None:
        """``_commit``, with its statement cancelled and the connection cut if the group gets no
        answer in time: its jobs then fail as on any lost connection (see the module's
        docstring), and the writer takes a new connection."""
        async with Deadline(conn, self._answer_timeout_s) as deadline:
            kept = await self._commit(conn, jobs, deadline)
        if deadline.expired:
            log.warning("a PostgreSQL writer got no answer in %g s: it dropped its connection", self._answer_timeout_s)
            return None
        return kept

    async def _reconnect(self) -> Connection | None:
        try:
            conn: Connection = await self._connect()
        except (psycopg.Error, StoreError) as exc:
            log.warning("writer cannot reconnect to PostgreSQL: %s", exc)
            return None
        return conn

    async def _get(self) -> Job | None:
        self._idle += 1
        try:
            job = await self._queue.get()
        finally:
            self._idle -= 1
        return job

    def _drain(self, first: Job) -> tuple[list[Job], bool]:
        """``first`` and the jobs queued behind it. When they are many rows and other writers
        are idle, only a fair share: the others commit the rest at the same time, each on its
        own connection (a PostgreSQL backend works on one CPU). A few rows go in one group."""
        self._queued -= _rows(first)
        limit = _MAX_GROUP_ROWS
        if self._idle and self._queued + _rows(first) >= _SPLIT_ROWS:
            limit = -(-(self._queued + _rows(first)) // (1 + self._idle))
        jobs, rows = [first], _rows(first)
        while len(jobs) < _MAX_GROUP_JOBS and rows < limit:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return jobs, False
            if job is _STOP:
                return jobs, True
            jobs.append(job)
            self._queued -= _rows(job)
            rows += _rows(job)
        return jobs, False

    async def _commit(self, conn: Connection, jobs: list[Job], deadline: Deadline) -> Connection | None:
        """Commit ``jobs`` as one group; returns the connection, or None if it broke. Once
        ``deadline`` expired, an error is the cancel's or the cut's: the connection is lost,
        never a job's data to try again job by job."""
        group = Group(jobs)
        for attempt in range(_RETRIES + 1):
            try:
                results = await self._run(conn, group)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                if attempt < _RETRIES:
                    continue
                _fail(jobs, store_error(exc))
                return conn
            except psycopg.Error as exc:
                if conn.broken or conn.closed or deadline.expired:
                    _fail(jobs, self._lost(exc, deadline))
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
                    return None
                if len(jobs) == 1:
                    _fail(jobs, store_error(exc))
                    return conn
                for job in jobs:  # find the job that fails, and let the others commit
                    reopened = await self._commit(conn, [job], deadline)
                    if reopened is None:
                        _fail([j for j in jobs if not j.future.done()], StoreError("lost the connection to PostgreSQL"))
                        return None
                return conn
            self.stats.groups += 1
            self.stats.jobs += len(jobs)
            _settle(jobs, results)
            return conn
        return conn  # pragma: no cover - the loop always returns

    def _lost(self, exc: psycopg.Error, deadline: Deadline) -> StoreError:
        if deadline.expired:
            return StoreError(
                f"PostgreSQL did not answer within {self._answer_timeout_s:g} s (the writes may or may not be stored)",
                maybe_stored=True,
            )
        return StoreError(
            f"lost the connection to PostgreSQL (the writes may or may not be stored): {exc}", maybe_stored=True
        )

    async def _run(self, conn: Connection, group: Group) -> list[Any]:
        ingest = conn.cursor()
        shard = self._shards.setdefault(conn, new_shard())
        async with conn.pipeline(), conn.transaction():
            if group.quality:  # first: it locks every rollup row that the ingest adds to
                for sql, params in zip(ADD_QUALITY_SQL, quality_columns(group.quality, shard), strict=True):
                    await conn.execute(sql, params)
            if group.ingest_params is not None:
                await ingest.execute(INGEST_SQL, [*group.ingest_params, shard, shard])
            if group.records:
                await conn.execute(REQUESTS_SQL, group.records_params(shard))
                bodies, keys = group.extras_params()
                if bodies is not None:
                    await conn.execute(BODIES_SQL, bodies)
                if keys is not None:
                    await conn.execute(KEYS_SQL, keys)
            if group.probes:
                await conn.execute(PROBE_SQL, (self._node, time.time_ns() // 1_000_000))
        results: dict[int, Any] = {}
        if group.ingest_params is not None:
            ords = [row[0] for row in await ingest.fetchall()]
            for job, result in zip(group.ingests, group.ingest_results(ords), strict=True):
                results[id(job)] = result
        return [results.get(id(job)) for job in group.jobs]

    def _fail_pending(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if job is not _STOP:
                _fail([job], StoreError("the store writer has stopped"))


def _rows(job: Job | None) -> int:
    """A job's weight in a group: its events, or one row (a journal entry, a probe)."""
    return max(1, len(job.events)) if isinstance(job, IngestJob) else 1


def _fail(jobs: Sequence[Job], error: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


def _settle(jobs: Sequence[Job], results: Sequence[Any]) -> None:
    for job, result in zip(jobs, results, strict=True):
        if not job.future.done():  # the awaiting coroutine was cancelled
            job.future.set_result(result)
