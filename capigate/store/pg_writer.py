"""Group commit on PostgreSQL: writer tasks that turn the writes pending at one moment into
one transaction of a few set-based statements.

A writer takes the first pending job, drains what is queued behind it, and merges the group:
every event of every ingest goes into one statement (dedupe keys inserted with
``ON CONFLICT DO NOTHING`` in a data-modifying CTE, then the events that won their key, then
their outbox rows), every journal entry into one multi-row INSERT. The statements and the
COMMIT go out in one pipeline: a group costs one round trip and one WAL flush, whatever its
size. Under load the groups grow by themselves, since the jobs that arrive while a group is
committing make the next one.

Across nodes, the (source, dedupe_id) primary key decides: a key inserted by a transaction
still in flight makes the other wait for its outcome, and the loser's event is a duplicate.
Keys are inserted in one global order (sorted), so two groups never wait on each other in a
cycle. A group that fails on its data (not on the connection) is run again job by job, so one
bad request fails alone, as with SQLite's savepoints.

A job is committed once queued: cancelling the coroutine that awaits it does not undo it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import msgspec
import psycopg
from psycopg.rows import TupleRow

from capigate.errors import StoreError
from capigate.store.base import IngestResult, NewEvent, RequestRecord
from capigate.store.sqlite import WriterStats

__all__ = ["Writer", "pg_text"]

log = logging.getLogger("capigate.store")

Connection = psycopg.AsyncConnection[TupleRow]

_MAX_GROUP_JOBS: Final = 1000
_MAX_GROUP_ROWS: Final = 20_000  # bounds one statement's size and one group's latency
_SPLIT_ROWS: Final = 1000  # below this, a second transaction costs more than it saves
_RETRIES: Final = 3  # deadlock or serialization failure: the transaction was rolled back
_RECONNECT_PAUSE_S: Final = 1.0

_encode = msgspec.json.Encoder().encode

# The events of the group that win their key (or have none) get the next ids in batch order;
# the final SELECT says which candidates were stored.
INGEST_SQL: Final = """
WITH fresh AS (
    INSERT INTO dedupe_keys (source, dedupe_id, seen_at)
    SELECT k.source, k.dedupe_id, k.seen_at
    FROM unnest(%b::text[], %b::text[], %b::int8[]) WITH ORDINALITY AS k(source, dedupe_id, seen_at, ord)
    ORDER BY k.ord
    ON CONFLICT DO NOTHING
    RETURNING source, dedupe_id
), stored AS (
    SELECT nextval('events_id_seq') AS id, c.*
    FROM (
        SELECT c.*
        FROM unnest(
            %b::text[], %b::text[], %b::text[], %b::int8[], %b::int8[], %b::text[], %b::text[],
            %b::text[], %b::bytea[], %b::text[]
        ) WITH ORDINALITY AS c(
            api, source, name, event_time, received_at, dedupe_id, test_tag, request_id, payload,
            destination, ord
        )
        WHERE c.dedupe_id IS NULL
           OR EXISTS (SELECT 1 FROM fresh f WHERE f.source = c.source AND f.dedupe_id = c.dedupe_id)
        ORDER BY c.ord
    ) c
), events_in AS (
    INSERT INTO events (
        id, api, source, name, event_time, received_at, dedupe_id, status, test_tag, request_id, payload
    )
    SELECT id, api, source, name, event_time, received_at, dedupe_id,
           CASE WHEN destination IS NULL THEN 'stored' ELSE 'pending' END, test_tag, request_id, payload
    FROM stored
), outbox_in AS (
    INSERT INTO outbox (event_id, destination, queued_at, next_attempt_at)
    SELECT id, destination, received_at, received_at FROM stored WHERE destination IS NOT NULL
)
SELECT ord FROM stored
"""

REQUESTS_SQL: Final = """
INSERT INTO requests (
    request_id, received_at, api, source, method, path, status, client_ip, user_agent, latency_ms,
    events_received, events_stored, events_duplicate, problems, warnings, test_tag
)
SELECT * FROM unnest(
    %b::text[], %b::int8[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int4[], %b::text[],
    %b::text[], %b::float8[], %b::int4[], %b::int4[], %b::int4[], %b::bytea[], %b::bytea[], %b::text[]
)
"""

PROBE_SQL: Final = """
INSERT INTO capigate_nodes (node, seen_at) VALUES (%s, %s)
ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at
"""


def pg_text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD (JSON payloads are bytea, intact)."""
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", "\ufffd")


def check_payloads(events: Sequence[NewEvent]) -> None:
    for position, event in enumerate(events):
        if type(event.payload) is not bytes:
            kind = type(event.payload).__name__
            raise TypeError(f"event at position {position}: payload must be bytes, not {kind}")


def request_row(r: RequestRecord) -> tuple[Any, ...]:
    return (
        r.request_id, r.received_at, r.api, pg_text(r.source), pg_text(r.method), pg_text(r.path),
        r.status, pg_text(r.client_ip), pg_text(r.user_agent), r.latency_ms, r.events_received,
        r.events_stored, r.events_duplicate, _encode(r.problems), _encode(r.warnings),
        pg_text(r.test_tag),
    )  # fmt: skip


# --- jobs -------------------------------------------------------------------------------


class _Job:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future


class IngestJob(_Job):
    __slots__ = ("events", "received_at_ms", "request_id")

    def __init__(
        self, future: asyncio.Future[Any], events: list[NewEvent], request_id: str, received_at_ms: int
    ) -> None:
        super().__init__(future)
        self.events, self.request_id, self.received_at_ms = events, request_id, received_at_ms


class RecordJob(_Job):
    __slots__ = ("row",)

    def __init__(self, future: asyncio.Future[Any], row: tuple[Any, ...]) -> None:
        super().__init__(future)
        self.row = row


class ProbeJob(_Job):
    __slots__ = ()


_STOP: Final = None  # one per writer: finish the jobs queued before it, then stop


class _Group:
    """The merged statements of one group, and how to give each job its result."""

    def __init__(self, jobs: list[_Job]) -> None:
        self.jobs = jobs
        self.ingests = [j for j in jobs if isinstance(j, IngestJob)]
        self.records = [j for j in jobs if isinstance(j, RecordJob)]
        self.probes = [j for j in jobs if isinstance(j, ProbeJob)]
        self.duplicates: list[list[int]] = [[] for _ in self.ingests]
        self.owners: list[tuple[int, int]] = []  # candidate (ord - 1) -> (ingest index, position)
        self.ingest_params = self._ingest_params() if self.ingests else None

    def _ingest_params(self) -> list[list[Any]]:
        keys: list[tuple[str, str, int]] = []
        seen: set[tuple[str, str]] = set()
        cols: list[list[Any]] = [[] for _ in range(10)]
        api, source, name, event_time, received_at, dedupe_id, test_tag, request_id, payload, dest = cols
        for j, job in enumerate(self.ingests):
            for position, e in enumerate(job.events):
                src, key_id = pg_text(e.source) or "", pg_text(e.dedupe_id)
                if key_id is not None:
                    key = (src, key_id)
                    if key in seen:  # an earlier event of this group has it: first one wins
                        self.duplicates[j].append(position)
                        continue
                    seen.add(key)
                    keys.append((src, key_id, job.received_at_ms))
                api.append(e.api)
                source.append(src)
                name.append(pg_text(e.name))
                event_time.append(e.event_time_ms)
                received_at.append(job.received_at_ms)
                dedupe_id.append(key_id)
                test_tag.append(pg_text(e.test_tag))
                request_id.append(job.request_id)
                payload.append(e.payload)
                dest.append(pg_text(e.destination))
                self.owners.append((j, position))
        keys.sort()  # one lock order for every node: no deadlock between groups
        return [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], *cols]

    def records_params(self) -> list[list[Any]]:
        return [list(column) for column in zip(*(job.row for job in self.records), strict=True)]

    def ingest_results(self, stored_ords: list[int]) -> list[IngestResult]:
        stored = [0] * len(self.ingests)
        winners = set(stored_ords)
        for index, (j, position) in enumerate(self.owners):
            if index + 1 in winners:
                stored[j] += 1
            else:  # its key was stored before, by this node or another
                self.duplicates[j].append(position)
        return [
            IngestResult(stored=n, duplicates=sorted(dups)) for n, dups in zip(stored, self.duplicates, strict=True)
        ]


# --- the writer tasks -------------------------------------------------------------------


class Writer:
    """``count`` writer tasks sharing one queue, each with its own connection."""

    def __init__(self, connect: Callable[[], Awaitable[Connection]], node: str, count: int) -> None:
        self._connect = connect
        self._node = node
        self._count = count
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = 0  # writers waiting for a job
        self._queued = 0  # rows in the queue
        self._accepting = False
        self.stats = WriterStats()

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

    async def submit(self, job: _Job) -> Any:
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
                        conn = await self._commit(conn, jobs)
                    except Exception as exc:  # a bug must not stop the writer: fail the group
                        log.exception("the PostgreSQL writer failed a group")
                        _fail(jobs, _store_error(exc))
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

    async def _reconnect(self) -> Connection | None:
        try:
            conn: Connection = await self._connect()
        except (psycopg.Error, StoreError) as exc:
            log.warning("writer cannot reconnect to PostgreSQL: %s", exc)
            return None
        return conn

    async def _get(self) -> _Job | None:
        self._idle += 1
        try:
            job = await self._queue.get()
        finally:
            self._idle -= 1
        return job

    def _drain(self, first: _Job) -> tuple[list[_Job], bool]:
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

    async def _commit(self, conn: Connection, jobs: list[_Job]) -> Connection | None:
        """Commit ``jobs`` as one group; returns the connection, or None if it broke."""
        group = _Group(jobs)
        for attempt in range(_RETRIES + 1):
            try:
                results = await self._run(conn, group)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
                if attempt < _RETRIES:
                    continue
                _fail(jobs, _store_error(exc))
                return conn
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    error = StoreError(
                        f"lost the connection to PostgreSQL (the writes may or may not be stored): {exc}"
                    )
                    _fail(jobs, error)
                    with contextlib.suppress(psycopg.Error):
                        await conn.close()
                    return None
                if len(jobs) == 1:
                    _fail(jobs, _store_error(exc))
                    return conn
                for job in jobs:  # find the job that fails, and let the others commit
                    reopened = await self._commit(conn, [job])
                    if reopened is None:
                        _fail([j for j in jobs if not j.future.done()], StoreError("lost the connection to PostgreSQL"))
                        return None
                return conn
            self.stats.groups += 1
            self.stats.jobs += len(jobs)
            _settle(jobs, results)
            return conn
        return conn  # pragma: no cover - the loop always returns

    async def _run(self, conn: Connection, group: _Group) -> list[Any]:
        ingest = conn.cursor()
        async with conn.pipeline(), conn.transaction():
            if group.ingest_params is not None:
                await ingest.execute(INGEST_SQL, group.ingest_params)
            if group.records:
                await conn.execute(REQUESTS_SQL, group.records_params())
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


def _rows(job: _Job | None) -> int:
    """A job's weight in a group: its events, or one row (a journal entry, a probe)."""
    return max(1, len(job.events)) if isinstance(job, IngestJob) else 1


def _fail(jobs: Sequence[_Job], error: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(error)


def _settle(jobs: Sequence[_Job], results: Sequence[Any]) -> None:
    for job, result in zip(jobs, results, strict=True):
        if not job.future.done():  # the awaiting coroutine was cancelled
            job.future.set_result(result)


def _store_error(exc: BaseException) -> StoreError:
    error = StoreError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
