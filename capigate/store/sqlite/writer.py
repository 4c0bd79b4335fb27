"""The SQLite store's single writer: one thread with group commit.

Every write (ingest, the journal, prune, the relay's outbox jobs, the writability probe) is a
job on one queue. The writer thread owns the only read-write connection: it takes the first
pending job, runs ``BEGIN IMMEDIATE``, drains the jobs that are pending by then into the same
transaction, runs each under its own SAVEPOINT (a failing job rolls back alone) and commits
once. The awaiting coroutines get their results through ``loop.call_soon_threadsafe``. The
writers of several processes on one file (``capigate serve --workers N``, ``capigate relay``)
take turns through a lock file beside the database (lock.py).

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
from typing import Any, Final, TypeVar

from capigate.errors import StoreError
from capigate.store.base import WriterStats
from capigate.store.sql import store_error
from capigate.store.sqlite.ingest import Batch, ingest
from capigate.store.sqlite.lock import ProcessLock
from capigate.store.sqlite.schema import connect_writer

__all__ = ["Writer", "sqlite_error"]

T = TypeVar("T")

_MAX_GROUP_JOBS: Final = 1000  # bounds one transaction's size and latency under overload


class _Job:
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
Outcome = tuple[Any, BaseException | None]


class Writer:
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

    async def submit(self, fn: Callable[[sqlite3.Cursor], T], batch: Batch | None = None) -> T:
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
                conn = connect_writer(self._path, self._synchronous, self._busy_timeout_ms)
        except BaseException as exc:
            self._lock.close()
            self._ready.set_exception(sqlite_error(exc))
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
        results = ingest(cur, [job.batch for job in jobs if job.batch is not None])
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
            future.set_exception(sqlite_error(error))


def sqlite_error(exc: BaseException) -> BaseException:
    """A sqlite3 error as a StoreError; any other exception as it is."""
    return store_error(exc) if isinstance(exc, sqlite3.Error) else exc
