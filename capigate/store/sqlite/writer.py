"""The SQLite store's single writer: one thread with group commit.

Every write (ingest, the journal, prune, the relay's outbox jobs, the writability probe) is a
job on one queue. The writer thread owns the only read-write connection: it takes the first
pending job, runs ``BEGIN IMMEDIATE``, drains the jobs that are pending by then into the same
transaction (up to 1,000 jobs or 1,000 events: GroupSize), runs each under its own SAVEPOINT
(a failing job rolls back alone) and commits once. The awaiting coroutines get their results
through ``loop.call_soon_threadsafe``. The writers of several processes on one file
(``capigate serve --workers N``, ``capigate relay``) take turns through a lock file beside the
database (lock.py).

A job is committed once queued: cancelling the coroutine that awaits it does not undo it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from capigate.errors import StoreError
from capigate.store.base import WriterStats
from capigate.store.sql import store_error
from capigate.store.sqlite.dedupe import recent_keys
from capigate.store.sqlite.ingest import Batch, ingest
from capigate.store.sqlite.lock import ProcessLock
from capigate.store.sqlite.opened import OpenedFile
from capigate.store.sqlite.schema import connect_writer

__all__ = [
    "FILES_CHECK_S",
    "GroupSize",
    "Job",
    "QueuedJob",
    "Writer",
    "check_files",
    "close_writer",
    "deliver",
    "open_writer",
    "run_group",
    "sqlite_error",
]

T = TypeVar("T")

_MAX_GROUP_JOBS: Final = 1000  # bounds one transaction's size and latency under overload
# Every request of a group waits for its COMMIT. Taking in every batch queued, a group of a W1
# load held most clients while the event loop ran out of requests, then handed them back
# together while the writer waited for the next: each idle about a third of the time. Groups of
# ten W1 batches keep the answers coming: W1 over HTTP +9 % (lead-gen) and +6 % (bench/run.sh's
# own batches; +14-18 % in longer runs) (docs/performance.md). One-event requests are not held
# back: a thousand fill a group by _MAX_GROUP_JOBS as before.
_MAX_GROUP_EVENTS: Final = 1000


class QueuedJob:
    __slots__ = ("batch", "fn", "future", "loop")

    def __init__(
        self,
        fn: Callable[[sqlite3.Cursor], Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
        batch: Batch | None,
    ) -> None:
        self.fn, self.future, self.loop, self.batch = fn, future, loop, batch


_STOP: Final = None  # the sentinel: finish the jobs queued before it, then stop
# An idle writer checks its files this often: a backup moved over the database, or its -wal
# deleted, while no write came, was found only by the readiness probe's write (every 2 s), and a
# crash before it left the old WAL for the new file, or lost the deleted WAL's commits.
FILES_CHECK_S: Final = 0.25
Outcome = tuple[Any, BaseException | None]


def open_writer(
    path: Path, synchronous: str, busy_timeout_ms: int, use_lock: bool
) -> tuple[ProcessLock, sqlite3.Connection, OpenedFile]:
    """The writer's lock file and its read-write connection, the schema brought up to date,
    and the file it opened."""
    lock = ProcessLock.beside(path, busy_timeout_ms / 1000) if use_lock else ProcessLock(None, "", 0.0)
    try:
        with lock:  # processes starting together migrate the schema one after the other
            conn = connect_writer(path, synchronous, busy_timeout_ms)
    except BaseException:
        lock.close()
        raise
    return lock, conn, OpenedFile(path)


def close_writer(lock: ProcessLock, conn: sqlite3.Connection, opened: OpenedFile) -> None:
    try:
        if check_files(conn.cursor(), opened) is None:
            with contextlib.suppress(StoreError), lock, contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA optimize")
    finally:
        conn.close()
        lock.close()


def check_files(cur: sqlite3.Cursor, opened: OpenedFile) -> StoreError | None:
    """``opened.check()``; when the file was deleted or replaced, its WAL emptied too, once.
    Run after each group's COMMIT, and every ``FILES_CHECK_S`` by an idle writer. Not before
    BEGIN as well: a group that commits after a file moved over ours writes into our own WAL,
    which this copies into our file and empties (the checks before BEGIN cost a W2 request 3 %
    in-process, in groups of a few requests).
    SQLite keeps the WAL of a file that moved when it closes (it neither copies it back nor
    deletes it), and the file now at the path would be read with it: a restored backup came
    back with the replaced file's pages, or malformed. Copied into the file opened (complete,
    if it was moved elsewhere) and truncated, it is left empty."""
    lost = opened.check()
    if lost is not None and not opened.wal_emptied:
        try:
            busy, _, _ = cur.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            return lost  # tried again with the next write, and on close
        opened.wal_emptied = busy == 0  # a reader still in it: the next write tries again
    return lost


class Job(Protocol):
    """What a group runs: ``fn`` alone, or ``batch`` stored with the group's other ingests."""

    @property
    def fn(self) -> Callable[[sqlite3.Cursor], Any]: ...

    @property
    def batch(self) -> Batch | None: ...


J = TypeVar("J", bound=Job)
Drain = Callable[[J], tuple[list[J], bool]]


def run_group(
    cur: sqlite3.Cursor, lock: ProcessLock, opened: OpenedFile, stats: WriterStats, first: J, drain: Drain[J]
) -> tuple[list[J], bool, list[Outcome]]:
    """One group commit: ``first`` and what ``drain`` adds to it (True: the sentinel came),
    with each job's outcome. The writer thread and the writer process both run this."""
    lost = opened.lost  # found by an earlier group or the idle check: no BEGIN into that file
    if lost is not None:
        jobs, stop = drain(first)
        return jobs, stop, [(None, lost)] * len(jobs)
    try:
        lock.acquire()  # held from before BEGIN to after COMMIT (or ROLLBACK), no longer
    except StoreError as exc:  # as when BEGIN IMMEDIATE finds the database locked
        jobs, stop = drain(first)
        return jobs, stop, [(None, exc)] * len(jobs)
    try:
        return _transact(cur, opened, stats, first, drain)
    finally:
        lock.release()


def _transact(
    cur: sqlite3.Cursor, opened: OpenedFile, stats: WriterStats, first: J, drain: Drain[J]
) -> tuple[list[J], bool, list[Outcome]]:
    try:
        cur.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as locked:  # still locked after busy_timeout: so would the others be
        jobs, stop = drain(first)
        return jobs, stop, [(None, locked)] * len(jobs)
    jobs, stop = drain(first)  # after the locks: the jobs that came while it waited join
    try:
        outcomes = _run_jobs(cur, jobs)
        cur.execute("COMMIT")
    except Exception as exc:  # the transaction itself is lost: every job in it failed
        if cur.connection.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                cur.execute("ROLLBACK")
        recent_keys(cur).forget()  # it may hold keys the rollback took back
        outcomes = [(None, _lost(exc)) for _ in jobs]
    else:
        lost = check_files(cur, opened)
        if lost is not None:
            recent_keys(cur).forget()  # their retries are not duplicates
            outcomes = [(None, lost)] * len(jobs)
    stats.groups += 1
    stats.jobs += len(jobs)
    return jobs, stop, outcomes


class GroupSize:
    """What a group holds so far: it takes no more once it has _MAX_GROUP_JOBS jobs or
    _MAX_GROUP_EVENTS events to store."""

    __slots__ = ("events", "jobs")

    def __init__(self) -> None:
        self.jobs = self.events = 0

    def add(self, job: Job) -> bool:
        """Counts ``job`` in; True while the group takes more."""
        self.jobs += 1
        batch = job.batch
        if batch is not None:
            self.events += len(batch.events)
        return self.jobs < _MAX_GROUP_JOBS and self.events < _MAX_GROUP_EVENTS


class Writer:
    def __init__(self, path: Path, synchronous: str, busy_timeout_ms: int, process_lock: bool) -> None:
        self._path, self._synchronous, self._busy_timeout_ms = path, synchronous, busy_timeout_ms
        self._use_lock = process_lock
        self._lock = ProcessLock(None, "", 0.0)  # does nothing: beside() makes the real one
        self._queue: queue.SimpleQueue[QueuedJob | None] = queue.SimpleQueue()
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

    async def submit(self, fn: Callable[[sqlite3.Cursor], T], batch: Batch | None = None) -> T:
        """Run ``fn`` in the next group transaction; ``batch`` marks an ingest that may be
        stored together with the other ingests of its group (``fn`` then stores it alone)."""
        if not self._accepting:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(QueuedJob(fn, future, loop, batch))
        return await future

    def _run(self) -> None:
        try:
            self._lock, conn, opened = open_writer(self._path, self._synchronous, self._busy_timeout_ms, self._use_lock)
        except BaseException as exc:
            self._ready.set_exception(sqlite_error(exc))
            self._done.set_result(None)
            return
        self._ready.set_result(None)
        try:
            self._serve(conn.cursor(), opened)
        finally:
            close_writer(self._lock, conn, opened)
            self._accepting = False
            self._fail_pending()
            self._done.set_result(None)

    def _serve(self, cur: sqlite3.Cursor, opened: OpenedFile) -> None:
        while True:
            try:
                first = self._queue.get(timeout=FILES_CHECK_S)
            except queue.Empty:
                check_files(cur, opened)
                continue
            if first is _STOP or self._run_group(cur, opened, first):
                return

    def _run_group(self, cur: sqlite3.Cursor, opened: OpenedFile, first: QueuedJob) -> bool:
        """Run ``first`` and the jobs pending behind it in one transaction; True on the sentinel."""
        jobs, stop, outcomes = run_group(cur, self._lock, opened, self.stats, first, self._drain)
        deliver(jobs, outcomes)
        return stop

    def _drain(self, first: QueuedJob) -> tuple[list[QueuedJob], bool]:
        jobs, size = [first], GroupSize()
        more = size.add(first)
        while more:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return jobs, False
            if job is _STOP:
                return jobs, True
            jobs.append(job)
            more = size.add(job)
        return jobs, False

    def _fail_pending(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                deliver([job], [(None, StoreError("the store writer has stopped"))])


def _run_jobs(cur: sqlite3.Cursor, jobs: Sequence[Job]) -> list[Outcome]:
    """Each job's outcome. The ingests of the group are stored with one statement per table,
    not several per ingest: every statement hands the GIL back and waits to retake it from a
    busy event loop, so their count, more than their size, bounded the writer under load."""
    ingests = [job for job in jobs if job.batch is not None]
    together = _ingest_together(cur, ingests) if len(ingests) > 1 else {}
    return [together[id(job)] if id(job) in together else _run_job(cur, job) for job in jobs]


def _ingest_together(cur: sqlite3.Cursor, jobs: list[Job]) -> dict[int, Outcome]:
    """The ingests' outcomes by job id, or {} if storing them together failed: each then
    runs alone, so that one bad batch fails alone."""
    cur.execute("SAVEPOINT ingests")
    try:
        results = ingest(cur, [job.batch for job in jobs if job.batch is not None])
    except Exception:
        if not cur.connection.in_transaction:
            raise  # SQLite rolled the whole transaction back (disk full, I/O error …)
        cur.execute("ROLLBACK TO ingests")
        cur.execute("RELEASE ingests")
        return {}
    cur.execute("RELEASE ingests")
    return {id(job): (result, None) for job, result in zip(jobs, results, strict=True)}


def _run_job(cur: sqlite3.Cursor, job: Job) -> Outcome:
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


def deliver(
    jobs: Sequence[QueuedJob], outcomes: Sequence[Outcome], running: asyncio.AbstractEventLoop | None = None
) -> None:
    """Settles each job's future on its loop: at once for the jobs of ``running``, the loop the
    caller runs on, and with one wake-up per other loop for the whole group, not one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for job, outcome in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, outcome))
    for loop, settled in by_loop.items():
        if loop is running:
            _settle(settled)
            continue
        with contextlib.suppress(RuntimeError):  # that loop was closed while its job waited
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (result, error) in settled:
        if future.done():  # the awaiting coroutine was cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(sqlite_error(error))


def sqlite_error(exc: BaseException) -> BaseException:
    """A sqlite3 error as a StoreError; any other exception as it is."""
    return store_error(exc) if isinstance(exc, sqlite3.Error) else exc
