"""The SQLite store's single writer in a process of its own, fed by a pipe.

In one process, the writer thread's Python work (building the rows, the journal, the
inspector's keys) takes the GIL from the event loop: under load the gateway ran on one core
while the other idled. Here the child process
(``python -m capigate.store.sqlite.writer_child``)
runs the same group commit as the thread (writer.run_group) on its own core. The gateway sends
it frames of jobs (ingests and journal entries as msgpack, the rare others pickled) from a
sender thread, and a reader thread settles each job's future with the outcome the child sends
back after its COMMIT: a request is still answered only once its events are committed.

The child ends when its pipe closes: after a stop, or when the gateway dies, even by kill -9
(the kernel closes the pipe), committing first what it has read. It ignores SIGINT and
SIGTERM, which a terminal or a service manager sends to the whole group: its parent says when.
Should the child die, the jobs it had been sent fail as "may or may not be stored" (as on a
lost PostgreSQL connection) and the next job starts a new child. A child that stays silent
while jobs wait on it (stopped by SIGSTOP or a debugger, hung) is killed, and so dies, after
twice the busy timeout and a margin: the writer thread's groups give up by then (waiting for the
lock, then for BEGIN), and without it every write, the journal's at a stop too, waited for ever.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import os
import pickle
import queue
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from capigate.errors import StoreError
from capigate.events import NewEvent
from capigate.store.base import IngestResult, JournalRecord, WriterStats
from capigate.store.sqlite.ingest import Batch
from capigate.store.sqlite.jobs import IngestJob, RecordJob
from capigate.store.sqlite.lock import ProcessLock
from capigate.store.sqlite.writer import (
    Outcome,
    QueuedJob,
    close_writer,
    deliver,
    open_writer,
    run_group,
    sqlite_error,
)

__all__ = ["ProcessWriter"]

T = TypeVar("T")

_MAX_FRAME_JOBS: Final = 256  # bounds one frame's size: a W1 ingest is ~50 KB
_MAX_GROUP_JOBS: Final = 1000  # as the writer thread's
_HEADER: Final = struct.Struct("<I")
# Starting a child costs a Python interpreter's start (~0.3 s of CPU): on a broken store (its
# directory removed, say) every frame of writes started one, a core burnt while writes failed.
_RESPAWN_PAUSE_S: Final = 1.0
_STALL_MARGIN_S: Final = 2.0  # beyond the two busy timeouts a group may wait: its own work and COMMIT


# --- the wire: gateway -> writer ------------------------------------------------


class IngestMsg(msgspec.Struct, tag="i", array_like=True):
    id: int
    request_id: str
    received_at_ms: int
    events: list[NewEvent]


class RecordMsg(msgspec.Struct, tag="r", array_like=True):
    id: int
    records: list[JournalRecord]  # a plain RequestRecord comes back as one without body or keys


class CallMsg(msgspec.Struct, tag="c", array_like=True):
    id: int
    call: bytes  # a pickled jobs.Call or functools.partial


class StopMsg(msgspec.Struct, tag="s", array_like=True):
    pass


JobMsg = IngestMsg | RecordMsg | CallMsg | StopMsg


# --- the wire: writer -> gateway ------------------------------------------------


class Ready(msgspec.Struct, tag="ready", array_like=True):
    pass


class StartFailed(msgspec.Struct, tag="failed", array_like=True):
    error: bytes  # pickled


class Ingested(msgspec.Struct, tag="i", array_like=True):
    id: int
    stored: int
    duplicates: list[int]


class Returned(msgspec.Struct, tag="v", array_like=True):
    id: int
    value: bytes | None  # pickled; None for None


class Raised(msgspec.Struct, tag="e", array_like=True):
    id: int
    error: bytes  # pickled


class Group(msgspec.Struct, tag="g", array_like=True):
    """One group commit's outcomes."""

    jobs: int
    outcomes: list[Ingested | Returned | Raised]


_encode = msgspec.msgpack.Encoder().encode
_decode_frame = msgspec.msgpack.Decoder(list[msgspec.Raw]).decode
_decode_job = msgspec.msgpack.Decoder(JobMsg).decode
_decode_answer = msgspec.msgpack.Decoder(Ready | StartFailed | Group).decode


def _write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


class _FrameReader:
    """Whole frames from a pipe; blocking reads hand the GIL back while they wait."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self.eof = False

    def frames(self, *, block: bool) -> list[bytes]:
        """The frames that have arrived (waiting for one if ``block``); [] at the end."""
        if not block and not self._buffer and not select.select([self._fd], [], [], 0)[0]:
            return []
        while not self.eof:
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                self.eof = True
            self._buffer += chunk
            frames = self._complete()
            if frames or not self._buffer:
                return frames
        return []

    def _complete(self) -> list[bytes]:
        frames, start, buffer = [], 0, self._buffer
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            end = start + _HEADER.size + size
            if end > len(buffer):
                break
            frames.append(bytes(buffer[start + _HEADER.size : end]))
            start = end
        del buffer[:start]
        return frames


def _pickled_error(exc: BaseException) -> bytes:
    error = sqlite_error(exc)
    try:
        data = pickle.dumps(error)
        pickle.loads(data)  # some exceptions pickle and then cannot be rebuilt
    except Exception:
        data = pickle.dumps(StoreError(f"{type(error).__name__}: {error}"))
    return data


# --- the gateway's side -----------------------------------------------------------


class _Child:
    """One writer process and the jobs it has been sent and not yet answered."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.to_child, self.from_child = proc, proc.stdin.fileno(), proc.stdout.fileno()
        self.mutex = threading.Lock()
        self.pending: dict[int, QueuedJob] = {}
        self.waiting_since = 0.0  # monotonic: when it was last answered, or sent work while idle
        self.stopping = False  # told to stop: it owes an exit
        self.stalled = False  # killed for its silence
        self.alive = True
        self.ended = threading.Event()


_STOP: Final = None


class ProcessWriter:
    """The Writer's interface (start, submit, stop, stats), the writes made by a child process."""

    def __init__(self, path: Path, synchronous: str, busy_timeout_ms: int, process_lock: bool) -> None:
        self._args = [str(path), synchronous, str(busy_timeout_ms), "1" if process_lock else "0"]
        self._stall_s = 2 * busy_timeout_ms / 1000 + _STALL_MARGIN_S
        self._queue: queue.SimpleQueue[QueuedJob | None] = queue.SimpleQueue()  # a put costs less than Event.set
        self._ids = itertools.count()
        self._child: _Child | None = None
        self._respawn_at = 0.0  # monotonic: no new child before, after one failed to start
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._started = False
        self._accepting = False
        self.stats = WriterStats()

    async def start(self) -> None:
        self._child = await asyncio.to_thread(self._spawn)
        self._started = self._accepting = True
        threading.Thread(target=self._send, name="capigate-sqlite-sender", daemon=True).start()

    async def stop(self) -> None:
        if self._accepting:
            self._accepting = False
            self._queue.put(_STOP)
        if self._started:
            await asyncio.wrap_future(self._done)

    async def submit(self, fn: Callable[[sqlite3.Cursor], T], batch: Batch | None = None) -> T:
        if not self._accepting:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(QueuedJob(fn, future, loop, batch))
        return await future

    def _spawn(self) -> _Child:
        proc = subprocess.Popen(
            [sys.executable, "-m", "capigate.store.sqlite.writer_child", *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        child = _Child(proc)
        reader = _FrameReader(child.from_child)
        frames = reader.frames(block=True)
        answer = _decode_answer(frames[0]) if frames else None
        if not isinstance(answer, Ready):
            code = _close(proc)
            if isinstance(answer, StartFailed):
                raise pickle.loads(answer.error)
            raise StoreError(f"the store's writer process ended as it started (exit status {code})")
        threading.Thread(target=self._read, args=(child, reader), name="capigate-sqlite-reader", daemon=True).start()
        return child

    # the sender thread

    def _send(self) -> None:
        try:
            while self._next_frame():
                pass
        finally:
            self._end_child()
            self._fail_queued()
            self._done.set_result(None)

    def _next_frame(self) -> bool:
        """Send the next job and those queued behind it (a frame's worth at most); False once
        the stop has been sent."""
        job = self._queue.get()
        jobs: list[QueuedJob] = []
        while job is not _STOP:
            jobs.append(job)
            if len(jobs) == _MAX_FRAME_JOBS:
                break
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
        self._send_jobs(jobs)
        return job is not _STOP

    def _send_jobs(self, jobs: list[QueuedJob]) -> None:
        while jobs and not self._send_to_child(jobs):  # it died meanwhile: to the next one
            pass

    def _send_to_child(self, jobs: list[QueuedJob]) -> bool:
        """False when the child died before they could be sent."""
        child = self._live_child()
        if child is None:
            deliver(jobs, [(None, self._spawn_error)] * len(jobs))
            return True
        sendable: dict[int, QueuedJob] = {}
        messages: list[msgspec.Raw] = []
        for job in jobs:  # encoded before taking the mutex, which the reader needs to settle answers
            job_id = next(self._ids)
            try:
                messages.append(msgspec.Raw(_encode(_message(job_id, job))))
            except Exception as exc:  # a job that cannot be sent (an unencodable value) fails alone
                deliver([job], [(None, exc)])
                continue
            sendable[job_id] = job
        jobs[:] = sendable.values()  # for the next child, should this one have died
        with child.mutex:
            if not child.alive:
                return False
            if not child.pending:
                child.waiting_since = time.monotonic()
            child.pending.update(sendable)
        with contextlib.suppress(OSError):  # it died: its reader fails what it was sent
            _write_frame(child.to_child, _encode(messages))
        return True

    def _live_child(self) -> _Child | None:
        if self._child is not None and self._child.alive:
            return self._child
        if self._child is not None:
            self._child.ended.wait()
            self._child = None
        if time.monotonic() < self._respawn_at:  # it failed to start just now: so would it again
            return None
        try:
            self._child = self._spawn()
        except Exception as exc:
            self._spawn_error, self._respawn_at = exc, time.monotonic() + _RESPAWN_PAUSE_S
        return self._child

    _spawn_error: BaseException = StoreError("the store's writer process is not running")

    def _end_child(self) -> None:
        child = self._child
        if child is None:
            return
        with child.mutex:
            child.stopping, child.waiting_since = True, time.monotonic()
        with contextlib.suppress(OSError):
            _write_frame(child.to_child, _encode([StopMsg()]))
        with contextlib.suppress(OSError):
            child.proc.stdin.close()  # type: ignore[union-attr]
        child.ended.wait()

    def _fail_queued(self) -> None:
        jobs = []
        while not self._queue.empty():
            if (job := self._queue.get_nowait()) is not _STOP:
                jobs.append(job)
        deliver(jobs, [(None, StoreError("the store writer has stopped"))] * len(jobs))

    # one reader thread per child

    def _read(self, child: _Child, reader: _FrameReader) -> None:
        try:
            while self._answered(child) and (frames := reader.frames(block=True)):
                for frame in frames:
                    self._settle(child, _decode_answer(frame))
        finally:
            with child.mutex:
                child.alive = False
                lost = list(child.pending.values())
                child.pending.clear()
            if child.proc.poll() is None:  # silent, or an answer it could not read: done for
                child.proc.kill()
            code = _close(child.proc)
            ended = (
                f"did not answer within {self._stall_s:g} s and was killed"
                if child.stalled
                else f"ended (exit status {code})"
            )
            error = StoreError(
                f"the store's writer process {ended} before it answered: the write may or may not be stored"
            )
            deliver(lost, [(None, error)] * len(lost))
            child.ended.set()

    def _answered(self, child: _Child) -> bool:
        """Wait until the child has something to read; False when it stayed silent for
        ``_stall_s`` while it owed answers (jobs, or its exit)."""
        while not select.select([child.from_child], [], [], self._stall_s / 4)[0]:
            with child.mutex:
                owes = bool(child.pending) or child.stopping
                if owes and time.monotonic() - child.waiting_since >= self._stall_s:
                    child.stalled = True
                    return False
        return True

    def _settle(self, child: _Child, answer: Ready | StartFailed | Group) -> None:
        if not isinstance(answer, Group):
            return
        self.stats.groups += 1
        self.stats.jobs += answer.jobs
        with child.mutex:
            jobs = [child.pending.pop(o.id) for o in answer.outcomes]
            child.waiting_since = time.monotonic()
        deliver(jobs, [_outcome(o) for o in answer.outcomes])


def _close(proc: subprocess.Popen[bytes]) -> int:
    for pipe in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            pipe.close()  # type: ignore[union-attr]
    return proc.wait()


def _message(job_id: int, job: QueuedJob) -> JobMsg:
    fn = job.fn
    if type(fn) is IngestJob and _all_bytes(fn.batch.events):
        batch = fn.batch
        return IngestMsg(job_id, batch.request_id, batch.received_at_ms, batch.events)
    if type(fn) is RecordJob:
        return RecordMsg(job_id, fn.records)  # type: ignore[arg-type]  # encoded alike
    return CallMsg(job_id, pickle.dumps(fn))  # an ingest with a payload of the wrong type fails as it would here


def _all_bytes(events: list[NewEvent]) -> bool:
    return all(type(e.payload) is bytes for e in events)


def _outcome(answer: Ingested | Returned | Raised) -> Outcome:
    if type(answer) is Ingested:
        return IngestResult(stored=answer.stored, duplicates=answer.duplicates), None
    if type(answer) is Returned:
        return (None if answer.value is None else pickle.loads(answer.value)), None
    assert type(answer) is Raised
    return None, pickle.loads(answer.error)


# --- the writer process's side ----------------------------------------------------


class _ChildJob:
    __slots__ = ("batch", "fn", "id")

    def __init__(self, job_id: int, fn: Callable[[sqlite3.Cursor], Any], batch: Batch | None) -> None:
        self.id, self.fn, self.batch = job_id, fn, batch


class _Unpickled:
    """A pickled job, rebuilt when it runs: a job that cannot be rebuilt fails alone."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self, cur: sqlite3.Cursor) -> Any:
        return pickle.loads(self.data)(cur)


class _Refused:
    __slots__ = ("error",)

    def __init__(self, error: msgspec.ValidationError) -> None:
        self.error = error

    def __call__(self, cur: sqlite3.Cursor) -> Any:
        raise TypeError(f"the write job could not be sent to the writer process: {self.error}")


class _ChildWriter:
    def __init__(self, jobs_fd: int, answers_fd: int, lock: ProcessLock) -> None:
        self._reader = _FrameReader(jobs_fd)
        self._answers_fd, self._lock = answers_fd, lock
        self._backlog: collections.deque[_ChildJob] = collections.deque()
        self._stopping = False
        self._stats = WriterStats()

    def serve(self, cur: sqlite3.Cursor) -> None:
        while self._backlog or self._fill(block=True):
            first = self._backlog.popleft()
            jobs, _, outcomes = run_group(cur, self._lock, self._stats, first, self._drain)
            answers = [_answer(job.id, outcome) for job, outcome in zip(jobs, outcomes, strict=True)]
            _write_frame(self._answers_fd, _encode(Group(len(jobs), answers)))

    def _drain(self, first: _ChildJob) -> tuple[list[_ChildJob], bool]:
        jobs = [first]
        while len(jobs) < _MAX_GROUP_JOBS and (self._backlog or self._fill(block=False)):
            jobs.append(self._backlog.popleft())
        return jobs, False

    def _fill(self, *, block: bool) -> bool:
        """Read what has come into the backlog; False when none came (or the pipe is closed)."""
        while not self._stopping:
            frames = self._reader.frames(block=block)
            if not frames:
                return False
            for frame in frames:
                self._backlog += self._jobs(_decode_frame(frame))
            if self._backlog or not block:
                return bool(self._backlog)
        return False

    def _jobs(self, messages: list[msgspec.Raw]) -> list[_ChildJob]:
        jobs = []
        for raw in messages:
            try:
                m = _decode_job(raw)
            except msgspec.ValidationError as exc:  # a job of values no store takes fails alone
                jobs.append(_ChildJob(msgspec.msgpack.decode(raw)[1], _Refused(exc), None))
                continue
            if type(m) is IngestMsg:
                batch = Batch(m.events, m.request_id, m.received_at_ms)
                jobs.append(_ChildJob(m.id, IngestJob(batch), batch))
            elif type(m) is RecordMsg:
                jobs.append(_ChildJob(m.id, RecordJob(m.records), None))  # type: ignore[arg-type]
            elif type(m) is CallMsg:
                jobs.append(_ChildJob(m.id, _Unpickled(m.call), None))
            else:
                self._stopping = True
        return jobs


def _answer(job_id: int, outcome: Outcome) -> Ingested | Returned | Raised:
    result, error = outcome
    if error is not None:
        return Raised(job_id, _pickled_error(error))
    if type(result) is IngestResult:
        return Ingested(job_id, result.stored, result.duplicates)
    try:
        return Returned(job_id, None if result is None else pickle.dumps(result))
    except Exception as exc:
        return Raised(job_id, _pickled_error(exc))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the gateway says when to stop, by closing the pipe
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    jobs_fd, answers_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)  # a stray print must not corrupt the answers
    path, synchronous, busy_timeout_ms, use_lock = argv
    try:
        lock, conn = open_writer(Path(path), synchronous, int(busy_timeout_ms), use_lock == "1")
    except BaseException as exc:
        _write_frame(answers_fd, _encode(StartFailed(_pickled_error(exc))))
        return 1
    try:
        _write_frame(answers_fd, _encode(Ready()))
        _ChildWriter(jobs_fd, answers_fd, lock).serve(conn.cursor())
    finally:
        close_writer(lock, conn)
    return 0
