"""The SQLite store: one writer thread with group commit, concurrent read-only readers.

Every write (ingest, record_request, prune, the writability probe) is a job on one queue. The
writer thread owns the only read-write connection: it takes the first pending job, runs
``BEGIN IMMEDIATE``, drains the jobs that are pending by then into the same transaction, runs
each under its own SAVEPOINT (a failing job rolls back alone) and commits once. The awaiting
coroutines get their results through ``loop.call_soon_threadsafe``. Reads run on a small pool
of read-only connections in their own threads; in WAL mode they never wait for the writer.
The writers of several processes on one file (``capigate serve --workers N``, ``capigate
relay``) take turns through a lock file beside the database (sqlite_lock.py).

A job is committed once queued: cancelling the coroutine that awaits it does not undo it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

from capigate.errors import StoreError
from capigate.store import sessions
from capigate.store import sqlite_outbox as outbox
from capigate.store import sqlite_prune as pruning
from capigate.store.base import (
    AttemptOutcome,
    DeadLetterQuery,
    Delivery,
    DeliveryAttempt,
    EventQuery,
    IngestResult,
    NewEvent,
    OutboxDepth,
    PruneResult,
    RequestQuery,
    RequestRecord,
    Retention,
    StatsBucket,
    StoredEvent,
    cutoff_ms,
)
from capigate.store.rows import clamp, request_pair, stored_event
from capigate.store.sqlite_checkpoint import Checkpointer
from capigate.store.sqlite_lock import ProcessLock

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "WriterStats"]

T = TypeVar("T")

SCHEMA_VERSION: Final = 3
SYNCHRONOUS_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
_MAX_GROUP_JOBS: Final = 1000  # bounds one transaction's size and latency under overload
# Statements with many rows or values are built in power-of-two sizes, so that a handful of
# prepared statements serve every batch; both limits keep under SQLite's old 999 variables.
_MAX_IN: Final = 256
_MAX_ROWS: Final = 64

_encode = msgspec.json.Encoder().encode

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        api TEXT NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        event_time INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        dedupe_id TEXT,
        status TEXT NOT NULL DEFAULT 'stored',
        test_tag TEXT,
        request_id TEXT NOT NULL,
        payload BLOB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_source_id ON events (source, id)",
    "CREATE INDEX IF NOT EXISTS events_name_id ON events (name, id)",
    # A relay state (pending, delivered, dead) is read from the outbox: the status column
    # finds only the events no relay queues, and the events that are relayed (most) cost
    # this index nothing.
    "CREATE INDEX IF NOT EXISTS events_stored ON events (status) WHERE status = 'stored'",
    "CREATE INDEX IF NOT EXISTS events_received_at ON events (received_at)",
    # Test events are few: the inspector's test-tag filter reads them alone, at no cost to the rest.
    "CREATE INDEX IF NOT EXISTS events_test_tag_id ON events (test_tag, id) WHERE test_tag IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS dedupe_keys (
        source TEXT NOT NULL,
        dedupe_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (source, dedupe_id)
    ) WITHOUT ROWID""",
    # Keys arrive in time order, so this index only grows at its right edge (cheap) and
    # lets prune() delete old keys without scanning the whole table under the write lock.
    "CREATE INDEX IF NOT EXISTS dedupe_keys_seen_at ON dedupe_keys (seen_at)",
    """CREATE TABLE IF NOT EXISTS requests (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        api TEXT NOT NULL,
        source TEXT,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        client_ip TEXT,
        user_agent TEXT,
        latency_ms REAL NOT NULL,
        events_received INTEGER NOT NULL,
        events_stored INTEGER NOT NULL,
        events_duplicate INTEGER NOT NULL,
        problems BLOB NOT NULL,
        warnings BLOB NOT NULL,
        test_tag TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS requests_source_id ON requests (source, id)",
    "CREATE INDEX IF NOT EXISTS requests_status_id ON requests (status, id)",
    "CREATE INDEX IF NOT EXISTS requests_received_at ON requests (received_at)",
    # The journal's totals per minute and source ('' for none), kept with each journal row:
    # the inspector's charts read a week in a few thousand rows, not a million.
    """CREATE TABLE IF NOT EXISTS request_minutes (
        minute INTEGER NOT NULL,
        source TEXT NOT NULL,
        requests INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        received INTEGER NOT NULL,
        stored INTEGER NOT NULL,
        duplicate INTEGER NOT NULL,
        warnings INTEGER NOT NULL,
        PRIMARY KEY (minute, source)
    ) WITHOUT ROWID""",
    *sessions.SQLITE_SCHEMA,  # a table of its own, which older versions leave alone
)
# What each schema version adds to the one before (all CREATE … IF NOT EXISTS).
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    2: outbox.OUTBOX_SCHEMA,
    3: ("DROP INDEX IF EXISTS events_status_id",),  # _SCHEMA has made events_stored
}

# An event with an outbox row reports the row's state (pending, delivered, dead) as status.
_EVENT_COLUMNS: Final = (
    "id, api, source, name, event_time, received_at, dedupe_id, coalesce(o.state, events.status), "
    "test_tag, request_id, payload"
)
_REQUEST_COLUMNS: Final = (
    "id, request_id, received_at, api, source, method, path, status, client_ip, user_agent, "
    "latency_ms, events_received, events_stored, events_duplicate, problems, warnings, test_tag"
)


class _Insert(NamedTuple):
    """A multi-row INSERT: ``head``, then ``row`` once per row, ``width`` values each."""

    head: str
    row: str
    width: int


def _insert(head: str, row: str) -> _Insert:
    return _Insert(head, row, row.count("?"))


# Python 3.11's sqlite3 looks for an adapter for every None or bytes it binds (~1 µs each: it
# builds and drops an AttributeError); int, str and bytearray it binds at once. So the rows
# bind _NULL for NULL, which ``nullif(?, 0)`` turns back (no TEXT value equals the integer
# 0), and payloads as a bytearray copy (~0.3 µs): about 2 µs less per event.
_NULL: Final = 0
_EVENTS: Final = _insert(
    "INSERT INTO events (api, source, name, event_time, received_at, dedupe_id, status, test_tag, request_id, "
    "payload) VALUES ",
    "(?, ?, ?, ?, ?, nullif(?, 0), ?, nullif(?, 0), ?, ?)",
)
_KEYS: Final = _insert("INSERT INTO dedupe_keys (source, dedupe_id, event_id, seen_at) VALUES ", "(?, ?, ?, ?)")
_OUTBOX: Final = _insert(outbox.INSERT_OUTBOX, "(" + ", ".join("?" * outbox.OUTBOX_WIDTH) + ")")
_INSERT_REQUEST: Final = (
    f"INSERT INTO requests ({_REQUEST_COLUMNS.removeprefix('id, ')}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class WriterStats(msgspec.Struct, kw_only=True):
    """Counters of the writer thread: ``jobs / groups`` is the mean group-commit size."""

    groups: int = 0
    jobs: int = 0


class SQLiteStore:
    """The ``Store`` on one SQLite file, shared safely with other processes (WAL, busy_timeout).

    ``synchronous="FULL"`` (the default) makes every acknowledged write survive power loss;
    ``"NORMAL"`` survives a crash of the process but may lose the last commits on power loss.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        read_connections: int = 4,
        process_lock: bool = True,
    ) -> None:
        """``process_lock=False`` leaves out the lock file that queues the writers of several
        processes (sqlite_lock.py): they then wait in SQLite's busy handler, as before it."""
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if busy_timeout_ms < 0 or read_connections < 1:
            raise ValueError("busy_timeout_ms must be >= 0 and read_connections >= 1")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._writer = _Writer(self.path, synchronous, busy_timeout_ms, process_lock)
        self._readers = _Readers(self.path, read_connections, busy_timeout_ms)
        self._checkpointer = Checkpointer(self.path, synchronous)
        self._opened = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"

    @property
    def stats(self) -> WriterStats:
        live = self._writer.stats
        return WriterStats(groups=live.groups, jobs=live.jobs)

    async def open(self) -> None:
        if self._opened:
            raise StoreError("this store was already opened; create a new SQLiteStore")
        self._opened = True
        await self._writer.start()
        try:
            await self._readers.open()
            self._checkpointer.start()
        except BaseException:
            await self._readers.close()
            await self._writer.stop()
            raise

    async def close(self) -> None:
        """Finish every write queued so far, then release the file. Safe to call twice."""
        await asyncio.to_thread(self._checkpointer.stop)
        await self._writer.stop()
        await self._readers.close()

    async def ingest(self, events: Sequence[NewEvent], *, request_id: str, received_at_ms: int) -> IngestResult:
        batch = _Batch(list(events), request_id, received_at_ms)  # the caller may reuse its list
        return await self._writer.submit(lambda cur: _ingest(cur, [batch])[0], batch)

    async def record_request(self, record: RequestRecord) -> None:
        row, minute = _request_row(record), _minute_row(record)
        await self._writer.submit(lambda cur: _record_request(cur, row, minute))

    async def record_requests(self, records: Sequence[RequestRecord]) -> None:
        rows = [_request_row(r) for r in records]
        minutes = [_minute_row(r) for r in records]
        await self._writer.submit(lambda cur: _record_requests(cur, rows, minutes))

    async def prune(self, now_ms: int, retention: Retention) -> PruneResult:
        """The dedupe keys and the journal in one job, then the events and the attempts a
        chunk per job (sqlite_prune.py): the ingests queued meanwhile wait for one chunk."""
        result = await self._writer.submit(lambda cur: _prune(cur, now_ms, retention))
        before = cutoff_ms(now_ms, retention.event_days)
        if before == 0:  # kept for ever
            return result
        after: pruning.EventCursor | None = pruning.START
        while after is not None:
            deleted, after = await self._writer.submit(partial(pruning.prune_events, before_ms=before, after=after))
            result.events += deleted
        kept = await self._readers.run(partial(pruning.kept_attempts, before_ms=before))
        next_id: int | None = 0
        while next_id is not None:
            next_id = await self._writer.submit(
                partial(pruning.prune_attempts, before_ms=before, after_id=next_id, kept=kept)
            )
        return result

    async def check_writable(self) -> None:
        await self._writer.submit(_probe)

    async def put_session(self, key: str, expires_at_ms: int, now_ms: int) -> None:
        await self._writer.submit(lambda cur: sessions.sqlite_put(cur, key, expires_at_ms, now_ms))

    async def session_expires_at(self, key: str) -> int | None:
        return await self._readers.run(lambda conn: sessions.sqlite_expires_at(conn, key))

    async def end_session(self, key: str) -> None:
        await self._writer.submit(lambda cur: sessions.sqlite_end(cur, key))

    async def query_events(self, query: EventQuery) -> tuple[list[StoredEvent], int | None]:
        sql, params = events_sql(query)
        return await self._readers.run(lambda conn: _fetch_page(conn, sql, params, query.limit, stored_event))

    async def query_requests(self, query: RequestQuery) -> tuple[list[tuple[int, RequestRecord]], int | None]:
        sql, params = requests_sql(query)
        return await self._readers.run(lambda conn: _fetch_page(conn, sql, params, query.limit, request_pair))

    async def query_stats(
        self, source: str | None, *, since_ms: int, until_ms: int, bucket_ms: int
    ) -> list[StatsBucket]:
        if bucket_ms < 1:
            raise ValueError("bucket_ms must be at least 1")
        return await self._readers.run(lambda conn: _query_stats(conn, source, since_ms, until_ms, bucket_ms))

    # --- relay outbox (sqlite_outbox.py) ---------------------------------------------------

    async def claim(self, destination: str, *, owner: str, limit: int, now_ms: int, lease_ms: int) -> list[Delivery]:
        return await self._writer.submit(lambda cur: outbox.claim(cur, destination, owner, limit, now_ms, lease_ms))

    async def settle(self, outcomes: Sequence[AttemptOutcome], *, owner: str) -> None:
        if outcomes:
            batch = list(outcomes)
            await self._writer.submit(lambda cur: outbox.settle(cur, batch, owner))

    async def release(self, *, owner: str) -> int:
        return await self._writer.submit(lambda cur: outbox.release(cur, owner))

    async def replay(self, query: DeadLetterQuery, *, now_ms: int) -> int:
        return await self._writer.submit(lambda cur: outbox.replay(cur, query, now_ms))

    async def query_attempts(self, event_id: int) -> list[DeliveryAttempt]:
        return await self._readers.run(lambda conn: outbox.query_attempts(conn, event_id))

    async def outbox_depths(self) -> list[OutboxDepth]:
        return await self._readers.run(outbox.outbox_depths)


# --- the writer -------------------------------------------------------------------------


class _Batch:
    """One ``ingest`` call: the writer stores the batches of a group together."""

    __slots__ = ("events", "received_at_ms", "request_id")

    def __init__(self, events: list[NewEvent], request_id: str, received_at_ms: int) -> None:
        self.events, self.request_id, self.received_at_ms = events, request_id, received_at_ms


class _Job:
    __slots__ = ("batch", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Cursor], Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
        batch: _Batch | None,
    ) -> None:
        self.fn, self.future, self.loop, self.batch = fn, future, loop, batch


_STOP: Final = None  # the sentinel: finish the jobs queued before it, then stop
Outcome = tuple[Any, BaseException | None]


class _Writer:
    def __init__(self, path: Path, synchronous: str, busy_timeout_ms: int, process_lock: bool) -> None:
        self._path, self._synchronous, self._busy_timeout_ms = path, synchronous, busy_timeout_ms
        self._use_lock = process_lock
        self._lock = ProcessLock(None, "", 0.0)  # does nothing: beside() makes the real one
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._accepting = False
        self.stats = WriterStats()

    async def start(self) -> None:
        self._accepting = True
        threading.Thread(target=self._run, name="capigate-sqlite-writer", daemon=True).start()
        try:
            await asyncio.wrap_future(self._ready)
        except BaseException:
            self._accepting = False
            raise

    async def stop(self) -> None:
        if self._accepting:
            self._accepting = False
            self._queue.put(_STOP)
        if self._ready.done():
            await asyncio.wrap_future(self._done)

    async def submit(self, fn: Callable[[sqlite3.Cursor], T], batch: _Batch | None = None) -> T:
        """Run ``fn`` in the next group transaction; ``batch`` marks an ingest that may be
        stored together with the other ingests of its group (``fn`` then stores it alone)."""
        if not self._accepting:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, future, loop, batch))
        return await future

    def _run(self) -> None:
        if self._use_lock:
            self._lock = ProcessLock.beside(self._path, self._busy_timeout_ms / 1000)
        try:
            with self._lock:  # processes starting together migrate the schema one after the other
                conn = _connect_writer(self._path, self._synchronous, self._busy_timeout_ms)
        except BaseException as exc:
            self._lock.close()
            self._ready.set_exception(_store_error(exc))
            self._done.set_result(None)
            return
        self._ready.set_result(None)
        try:
            self._serve(conn.cursor())
            with contextlib.suppress(StoreError), self._lock, contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
        finally:
            conn.close()
            self._lock.close()
            self._accepting = False
            self._fail_pending()
            self._done.set_result(None)

    def _serve(self, cur: sqlite3.Cursor) -> None:
        while (first := self._queue.get()) is not _STOP:
            if self._run_group(cur, first):
                return

    def _run_group(self, cur: sqlite3.Cursor, first: _Job) -> bool:
        """Run ``first`` and the jobs pending behind it in one transaction; True on the sentinel."""
        try:
            self._lock.acquire()  # held from before BEGIN to after COMMIT (or ROLLBACK), no longer
        except StoreError as exc:  # as when BEGIN IMMEDIATE finds the database locked
            jobs, stop = self._drain(first)
            _deliver(jobs, [(None, exc)] * len(jobs))
            return stop
        try:
            jobs, stop, outcomes = self._transact(cur, first)
        finally:
            self._lock.release()
        _deliver(jobs, outcomes)
        return stop

    def _transact(self, cur: sqlite3.Cursor, first: _Job) -> tuple[list[_Job], bool, list[Outcome]]:
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # still locked after busy_timeout: so would the others be
            jobs, stop = self._drain(first)
            return jobs, stop, [(None, exc)] * len(jobs)
        jobs, stop = self._drain(first)  # after the locks: the jobs that came while it waited join
        try:
            outcomes = _run_jobs(cur, jobs)
            cur.execute("COMMIT")
        except Exception as exc:  # the transaction itself is lost: every job in it failed
            if cur.connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
            outcomes = [(None, _lost(exc)) for _ in jobs]
        self.stats.groups += 1
        self.stats.jobs += len(jobs)
        return jobs, stop, outcomes

    def _drain(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs = [first]
        while len(jobs) < _MAX_GROUP_JOBS:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs, False
            if job is _STOP:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _fail_pending(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                _deliver([job], [(None, StoreError("the store writer has stopped"))])


def _run_jobs(cur: sqlite3.Cursor, jobs: list[_Job]) -> list[Outcome]:
    """Each job's outcome. The ingests of the group are stored with one statement per table,
    not several per ingest: every statement hands the GIL back and waits to retake it from a
    busy event loop, so their count, more than their size, bounded the writer under load."""
    ingests = [job for job in jobs if job.batch is not None]
    together = _ingest_together(cur, ingests) if len(ingests) > 1 else {}
    return [together[id(job)] if id(job) in together else _run_job(cur, job) for job in jobs]


def _ingest_together(cur: sqlite3.Cursor, jobs: list[_Job]) -> dict[int, Outcome]:
    """The ingests' outcomes by job id, or {} if storing them together failed: each then
    runs alone, so that one bad batch fails alone."""
    cur.execute("SAVEPOINT ingests")
    try:
        results = _ingest(cur, [job.batch for job in jobs if job.batch is not None])
    except Exception:
        if not cur.connection.in_transaction:
            raise  # SQLite rolled the whole transaction back (disk full, I/O error …)
        cur.execute("ROLLBACK TO ingests")
        cur.execute("RELEASE ingests")
        return {}
    cur.execute("RELEASE ingests")
    return {id(job): (result, None) for job, result in zip(jobs, results, strict=True)}


def _run_job(cur: sqlite3.Cursor, job: _Job) -> Outcome:
    cur.execute("SAVEPOINT job")
    try:
        result = job.fn(cur)
    except Exception as exc:
        if not cur.connection.in_transaction:
            raise  # SQLite rolled the whole transaction back (disk full, I/O error …)
        cur.execute("ROLLBACK TO job")
        cur.execute("RELEASE job")
        return None, exc
    cur.execute("RELEASE job")
    return result, None


def _lost(exc: Exception) -> StoreError:
    error = StoreError(f"the transaction was rolled back: {exc}")
    error.__cause__ = exc
    return error


def _deliver(jobs: Sequence[_Job], outcomes: Sequence[Outcome]) -> None:
    # One wake-up per event loop for the whole group, not one per job.
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for job, outcome in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop was closed while its job waited
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (result, error) in settled:
        if future.done():  # the awaiting coroutine was cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(_store_error(error))


def _store_error(exc: BaseException) -> BaseException:
    if not isinstance(exc, sqlite3.Error):
        return exc
    error = StoreError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _connect_writer(path: Path, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"{path}: cannot use WAL mode (got {mode!r}); use a local disk")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        if synchronous in ("FULL", "EXTRA"):
            conn.execute("PRAGMA fullfsync = ON")  # macOS: flush the drive's cache too
        conn.execute("PRAGMA cache_size = -65536")  # KiB: 64 MiB for index pages
        conn.execute("PRAGMA temp_store = MEMORY")  # the per-job savepoint journals
        # Checkpoint every ~40 MiB, not 4 MiB: hot index pages are copied back less often.
        conn.execute("PRAGMA wal_autocheckpoint = 10000")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        _create_schema(conn.cursor())
    except BaseException:
        conn.close()
        raise
    return conn


def _create_schema(cur: sqlite3.Cursor) -> None:
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        (found,) = cur.execute("SELECT max(version) FROM schema_version").fetchone()
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {found}; this capigate knows up to {SCHEMA_VERSION}: upgrade capigate"
            )
        for statement in _SCHEMA:
            cur.execute(statement)
        for version in range((found or 1) + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[version]:
                cur.execute(statement)
        if found is None:
            cur.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif found < SCHEMA_VERSION:
            cur.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


# --- the write jobs (run on the writer thread, inside the group transaction) -------------


def _ingest(cur: sqlite3.Cursor, batches: list[_Batch]) -> list[IngestResult]:
    """Store ``batches`` in turn, the first dedupe_id winning across them too, with one
    lookup of the keys seen and one INSERT per table (per chunk) for them all."""
    seen = _seen_keys(cur, [e for batch in batches for e in batch.events])
    # SQLite gives a row inserted without an id max(id) + 1, an append that is cheaper than
    # placing an explicit id; so the events get first_id, first_id + 1 … (checked below).
    (first_id,) = cur.execute("SELECT coalesce(max(id), 0) + 1 FROM events").fetchone()
    keys: list[Any] = []
    rows: list[Any] = []
    runs: list[Any] = []
    results: list[IngestResult] = []
    next_id = first_id
    for batch in batches:
        fresh, duplicates = _split_duplicates(batch.events, seen)
        keys += _key_values(fresh, next_id, batch.received_at_ms)
        rows += _event_values(fresh, batch.request_id, batch.received_at_ms)
        runs += [v for run in outbox.outbox_rows(fresh, next_id, batch.received_at_ms) for v in run]
        results.append(IngestResult(stored=len(fresh), duplicates=duplicates))
        next_id += len(fresh)
    _insert_rows(cur, _KEYS, keys)
    _insert_rows(cur, _EVENTS, rows)
    if next_id > first_id and cur.lastrowid != next_id - 1:
        raise StoreError("the events table gave ids out of sequence; nothing was stored")
    _insert_rows(cur, _OUTBOX, runs)
    return results


def _insert_rows(cur: sqlite3.Cursor, insert: _Insert, values: list[Any]) -> None:
    """Multi-row INSERTs of ``values`` (the rows' values, one after the other): one
    sqlite3_step per chunk, not per row as executemany does, so the writer gives up and waits
    for the GIL once per chunk, not once per row (and spends a third fewer instructions)."""
    start = 0
    for size in _chunk_sizes(len(values) // insert.width):
        end = start + size * insert.width
        cur.execute(_values_sql(insert, size), values[start:end])
        start = end


def _chunk_sizes(rows: int) -> list[int]:
    """Full chunks of _MAX_ROWS, then the rest in powers of two, largest first."""
    full, rest = divmod(rows, _MAX_ROWS)
    return [_MAX_ROWS] * full + [1 << bit for bit in range(rest.bit_length() - 1, -1, -1) if rest >> bit & 1]


@cache
def _values_sql(insert: _Insert, size: int) -> str:
    return insert.head + ", ".join([insert.row] * size)


def _seen_keys(cur: sqlite3.Cursor, events: list[NewEvent]) -> set[tuple[str, str]]:
    """The (source, dedupe_id) keys of the batch already stored, one SELECT per source."""
    by_source: dict[str, list[str]] = {}
    for event in events:
        if event.dedupe_id is not None:
            by_source.setdefault(event.source, []).append(event.dedupe_id)
    seen: set[tuple[str, str]] = set()
    for source, ids in by_source.items():
        for start in range(0, len(ids), _MAX_IN):
            chunk = ids[start : start + _MAX_IN]
            size = _in_size(len(chunk))
            params = [source, *chunk, *chunk[-1:] * (size - len(chunk))]  # a repeat matches nothing new
            seen.update((source, d) for (d,) in cur.execute(_seen_sql(size), params))
    return seen


def _in_size(n: int) -> int:
    return 1 << (n - 1).bit_length()


@cache
def _seen_sql(size: int) -> str:
    marks = ", ".join("?" * size)
    return f"SELECT dedupe_id FROM dedupe_keys WHERE source = ? AND dedupe_id IN ({marks})"


def _split_duplicates(
    events: list[NewEvent], seen: set[tuple[str, str]]
) -> tuple[list[tuple[int, NewEvent]], list[int]]:
    fresh: list[tuple[int, NewEvent]] = []
    duplicates: list[int] = []
    for position, event in enumerate(events):
        if event.dedupe_id is not None:
            key = (event.source, event.dedupe_id)
            if key in seen:
                duplicates.append(position)
                continue
            seen.add(key)
        fresh.append((position, event))
    return fresh, duplicates


def _event_values(fresh: list[tuple[int, NewEvent]], request_id: str, received_at_ms: int) -> list[Any]:
    values: list[Any] = []
    for position, e in fresh:
        if type(e.payload) is not bytes:
            kind = type(e.payload).__name__
            raise TypeError(f"event at position {position}: payload must be bytes, not {kind}")
        values += (
            e.api, e.source, e.name, e.event_time_ms, received_at_ms,
            _NULL if e.dedupe_id is None else e.dedupe_id,
            "stored" if e.destination is None else "pending",
            _NULL if e.test_tag is None else e.test_tag,
            request_id, bytearray(e.payload),
        )  # fmt: skip
    return values


def _key_values(fresh: list[tuple[int, NewEvent]], first_id: int, received_at_ms: int) -> list[Any]:
    values: list[Any] = []
    for offset, (_, event) in enumerate(fresh):
        if event.dedupe_id is not None:
            values += (event.source, event.dedupe_id, first_id + offset, received_at_ms)
    return values


def _record_request(cur: sqlite3.Cursor, row: tuple[Any, ...], minute: tuple[Any, ...]) -> None:
    cur.execute(_INSERT_REQUEST, row)
    cur.execute(_ADD_MINUTE, minute)


def _record_requests(cur: sqlite3.Cursor, rows: list[tuple[Any, ...]], minutes: list[tuple[Any, ...]]) -> None:
    cur.executemany(_INSERT_REQUEST, rows)
    cur.executemany(_ADD_MINUTE, minutes)


_MINUTE_MS: Final = 60_000
_ADD_MINUTE: Final = (
    "INSERT INTO request_minutes (minute, source, requests, failed, received, stored, duplicate, warnings) "
    "VALUES (?, ?, 1, ?, ?, ?, ?, ?) ON CONFLICT (minute, source) DO UPDATE SET requests = requests + 1, "
    "failed = failed + excluded.failed, received = received + excluded.received, stored = stored + excluded.stored, "
    "duplicate = duplicate + excluded.duplicate, warnings = warnings + excluded.warnings"
)


def _minute_row(r: RequestRecord) -> tuple[Any, ...]:
    return (
        r.received_at - r.received_at % _MINUTE_MS, r.source or "", int(r.status >= 400), r.events_received,
        r.events_stored, r.events_duplicate, len(r.warnings),
    )  # fmt: skip


def _probe(cur: sqlite3.Cursor) -> None:
    # A real write (a page in the WAL, then COMMIT) so a full disk or a lost lock shows.
    cur.execute("UPDATE schema_version SET version = version")


def _request_row(r: RequestRecord) -> tuple[Any, ...]:
    return (
        r.request_id, r.received_at, r.api, r.source, r.method, r.path, r.status, r.client_ip,
        r.user_agent, r.latency_ms, r.events_received, r.events_stored, r.events_duplicate,
        _encode(r.problems), _encode(r.warnings), r.test_tag,
    )  # fmt: skip


def _prune(cur: sqlite3.Cursor, now_ms: int, retention: Retention) -> PruneResult:
    """The dedupe keys and the journal; the events follow in chunks (sqlite_prune.py)."""
    keys_before = cutoff_ms(now_ms, retention.dedupe_days)
    journal_before = cutoff_ms(now_ms, retention.journal_days)
    keys = cur.execute("DELETE FROM dedupe_keys WHERE seen_at < ?", (keys_before,)).rowcount
    old = cur.execute("DELETE FROM requests WHERE received_at < ?", (journal_before,)).rowcount
    cur.execute("DELETE FROM request_minutes WHERE minute < ?", (journal_before - journal_before % _MINUTE_MS,))
    over = cur.execute(
        "DELETE FROM requests WHERE id <= (SELECT id FROM requests ORDER BY id DESC LIMIT 1 OFFSET ?)",
        (max(0, retention.journal_max_rows),),
    ).rowcount
    return PruneResult(dedupe_keys=keys, requests=old + over, events=0)


# --- the readers ------------------------------------------------------------------------


class _Readers:
    """Read-only connections, each used by one thread at a time."""

    def __init__(self, path: Path, size: int, busy_timeout_ms: int) -> None:
        self._path, self._size, self._busy_timeout_ms = path, size, busy_timeout_ms
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    async def open(self) -> None:
        self._all = await asyncio.to_thread(self._connect_all)
        for conn in self._all:
            self._idle.put(conn)
        self._executor = concurrent.futures.ThreadPoolExecutor(self._size, thread_name_prefix="capigate-sqlite-read")

    def _connect_all(self) -> list[sqlite3.Connection]:
        uri = self._path.resolve().as_uri() + "?mode=ro"
        timeout = self._busy_timeout_ms / 1000
        try:
            return [
                sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)
                for _ in range(self._size)
            ]
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown)
        for conn in self._all:
            conn.close()
        self._all = []

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._executor is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._idle.get()
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc
        finally:
            self._idle.put(conn)


# --- the queries ------------------------------------------------------------------------


def events_sql(query: EventQuery) -> tuple[str, list[Any]]:
    """The SELECT that ``query_events`` runs (exposed so tests can EXPLAIN it)."""
    if query.status in outbox.RELAY_STATES:
        return _relay_state_sql(query)
    equal = (("source", query.source), ("name", query.name), ("test_tag", query.test_tag))
    where, params = _where(equal, query.since_ms, query.until_ms, query.cursor)
    if query.status is not None:
        # Written out, not bound: the partial index events_stored serves only this literal.
        # An events row holds 'stored' or 'pending' (its outbox run's state overrides that):
        # any other status is held by no event, and reading nothing needs no index.
        where = _also(where, "status = 'stored'" if query.status == "stored" else "0")
    hint = _since_hint("events", query.since_ms, query.source, query.name, query.status, query.test_tag)
    sql = f"SELECT {_EVENT_COLUMNS} FROM events{hint}{outbox.EVENT_JOIN}{where} ORDER BY id DESC LIMIT ?"
    return sql, [*params, clamp(query.limit) + 1]


def _relay_state_sql(query: EventQuery) -> tuple[str, list[Any]]:
    """A relay state is the state of the outbox run holding the event (sqlite_outbox.py)."""
    equal = (("source", query.source), ("name", query.name), ("test_tag", query.test_tag))
    where, params = _where(equal, query.since_ms, query.until_ms, query.cursor)
    # The state is written out, not bound: a partial index serves only a literal that matches.
    where = _also(where, f"o.state = '{query.status}'")  # one of RELAY_STATES
    join = outbox.relay_state_join(query.status or "")
    sql = f"SELECT {_EVENT_COLUMNS} FROM events{join}{where} ORDER BY id DESC LIMIT ?"
    return sql, [*params, clamp(query.limit) + 1]


def _also(where: str, clause: str) -> str:
    return f"{where} AND {clause}" if where else f" WHERE {clause}"


def requests_sql(query: RequestQuery) -> tuple[str, list[Any]]:
    """The SELECT that ``query_requests`` runs (exposed so tests can EXPLAIN it)."""
    equal = (("source", query.source), ("api", query.api), ("status", query.status))
    where, params = _where(equal, query.since_ms, query.until_ms, query.cursor)
    hint = _since_hint("requests", query.since_ms, query.source, query.status)
    sql = f"SELECT {_REQUEST_COLUMNS} FROM requests{hint}{where} ORDER BY id DESC LIMIT ?"
    return sql, [*params, clamp(query.limit) + 1]


def _since_hint(table: str, since: int | None, *indexed_filters: object) -> str:
    """ "Since" asks for a recent window: read it through the received_at index, where SQLite
    (without statistics) would scan every row newest first until LIMIT rows match."""
    if since is None or any(f is not None for f in indexed_filters):
        return ""
    return f" INDEXED BY {table}_received_at"


def _where(
    equal: Iterable[tuple[str, object]], since: int | None, until: int | None, cursor: int | None
) -> tuple[str, list[Any]]:
    clauses = [(f"{column} = ?", value) for column, value in equal if value is not None]
    if since is not None:
        clauses.append(("received_at >= ?", since))
    if until is not None:
        clauses.append(("received_at < ?", until))
    if cursor is not None:
        clauses.append(("id < ?", cursor))
    if not clauses:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in clauses), [v for _, v in clauses]


def _fetch_page(
    conn: sqlite3.Connection,
    sql: str,
    params: list[Any],
    limit: int,
    convert: Callable[[Any], T],
) -> tuple[list[T], int | None]:
    """The SELECT asks for limit+1 rows: getting one more means another page exists."""
    rows = conn.execute(sql, params).fetchall()
    limit = clamp(limit)
    next_cursor: int | None = rows[limit - 1][0] if len(rows) > limit else None
    return [convert(row) for row in rows[:limit]], next_cursor


def stats_sql(source: str | None, since_ms: int, until_ms: int, bucket_ms: int) -> list[tuple[str, list[Any]]]:
    """The SELECTs of ``query_stats`` (exposed so tests can EXPLAIN them), each giving rows of
    (start, source, requests, failed, received, stored, duplicate, warnings), then the dead
    letters as (start, source, count).

    Whole minutes come from ``request_minutes`` when buckets are whole minutes; the partial
    minutes at the window's edges (or every row, for other buckets) from the journal, through
    its received_at index. Dead letters are read from the outbox's dead runs.
    """
    by_source = " AND source = ?" if source is not None else ""
    extra = [source] if source is not None else []
    journal = (
        "SELECT received_at - received_at % ? AS start, source, count(*), sum(status >= 400), "
        "sum(events_received), sum(events_stored), sum(events_duplicate), "
        "sum(CASE WHEN length(warnings) > 2 THEN json_array_length(CAST(warnings AS TEXT)) ELSE 0 END) "
        "FROM requests INDEXED BY requests_received_at "
        f"WHERE received_at >= ? AND received_at < ?{by_source} GROUP BY start, source"
    )
    queries: list[tuple[str, list[Any]]] = []
    first_minute = -(-since_ms // _MINUTE_MS) * _MINUTE_MS  # the first whole minute in the window
    last_minute = until_ms - until_ms % _MINUTE_MS  # the end of the last whole minute
    if bucket_ms % _MINUTE_MS == 0 and first_minute < last_minute:
        minutes = (
            "SELECT minute - minute % ? AS start, nullif(source, ''), sum(requests), sum(failed), sum(received), "
            "sum(stored), sum(duplicate), sum(warnings) FROM request_minutes "
            f"WHERE minute >= ? AND minute < ?{by_source} GROUP BY start, source"
        )
        queries.append((minutes, [bucket_ms, first_minute, last_minute, *extra]))
        for low, high in ((since_ms, first_minute), (last_minute, until_ms)):
            if low < high:
                queries.append((journal, [bucket_ms, low, high, *extra]))
    else:
        queries.append((journal, [bucket_ms, since_ms, until_ms, *extra]))
    # Dead letters: the outbox's dead runs (consecutive events of one request, one destination
    # "<api>:<source>"), through its partial index, from the first event of the window on.
    by_destination = " AND destination IN ('axon:' || ?, 'appsflyer:' || ?)" if source is not None else ""
    dead = (
        "SELECT arrived_at - arrived_at % ? AS start, destination, sum(last_id - first_id + 1) "
        "FROM outbox INDEXED BY outbox_dead WHERE state = 'dead' AND first_id >= coalesce("
        "(SELECT id FROM events INDEXED BY events_received_at WHERE received_at >= ? ORDER BY received_at LIMIT 1), "
        "(SELECT max(id) FROM events) + 1) "
        f"AND arrived_at >= ? AND arrived_at < ?{by_destination} GROUP BY start, destination"
    )
    # An event's id follows its commit, its received_at its arrival: a minute of slack for the
    # requests that arrived earlier but committed later than the first one of the window.
    queries.append((dead, [bucket_ms, since_ms - 60_000, since_ms, until_ms, *extra, *extra]))
    return queries


def _query_stats(
    conn: sqlite3.Connection, source: str | None, since_ms: int, until_ms: int, bucket_ms: int
) -> list[StatsBucket]:
    *totals, (dead, dead_params) = stats_sql(source, since_ms, until_ms, bucket_ms)
    buckets: dict[tuple[int, str | None], StatsBucket] = {}

    def bucket(start: int, src: str | None) -> StatsBucket:
        found = buckets.get((start, src))
        if found is None:
            found = buckets[start, src] = StatsBucket(start_ms=start, source=src)
        return found

    for sql, params in totals:
        for start, src, n, failed, received, stored, duplicate, warnings in conn.execute(sql, params):
            b = bucket(start, src)
            b.requests += n
            b.failed_requests += failed
            b.events_received += received
            b.events_accepted += stored
            b.events_duplicate += duplicate
            b.warnings += warnings
    for b in buckets.values():
        b.events_refused = max(0, b.events_received - b.events_accepted - b.events_duplicate)
    for start, destination, n in conn.execute(dead, dead_params):
        bucket(start, destination.partition(":")[2]).dead_letters += n
    return [buckets[key] for key in sorted(buckets, key=lambda k: (k[0], k[1] or ""))]
