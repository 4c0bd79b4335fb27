"""The SQLite store's single writer in a process of its own, fed by a pipe.

In one process, the writer thread's Python work (building the rows, the journal, the
inspector's keys) takes the GIL from the event loop: under load the gateway ran on one core
while the other idled. Here the child process
(``python -m capigate.store.sqlite.writer_child``)
runs the same group commit as the thread (writer.run_group) on its own core. The gateway's event
loop sends it frames of jobs (ingests and journal entries as msgpack, the rare others pickled)
down a non-blocking pipe, reads its answers from another, and settles each job's future with the
outcome the child sends back after its COMMIT: a request is still answered only once its events
are committed.

The child ends when its pipe closes: after a stop, or when the gateway dies, even by kill -9
(the kernel closes the pipe), committing first what it has read. It ignores SIGINT and
SIGTERM, which a terminal or a service manager sends to the whole group: its parent says when.
Should the child die, the jobs it had been sent fail as "may or may not be stored" (as on a
lost PostgreSQL connection) and the next job starts a new child. A child that stays silent
while jobs wait on it (stopped by SIGSTOP or a debugger, hung), or a new one not yet ready, is
killed, and so dies, after twice the busy timeout and a margin: the writer thread's groups give
up by then (waiting for the lock, then for BEGIN), and without it every write, the journal's at
a stop too, waited for ever.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import pickle
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from capigate.errors import StoreError
from capigate.store.base import IngestResult, WriterStats
from capigate.store.sqlite.ingest import Batch
from capigate.store.sqlite.jobs import IngestJob, RecordJob
from capigate.store.sqlite.lock import ProcessLock
from capigate.store.sqlite.memstatus import without_memory_statistics
from capigate.store.sqlite.opened import OpenedFile
from capigate.store.sqlite.pipe import (
    CallMsg,
    Group,
    Ingested,
    IngestMsg,
    IngestRead,
    JobMsg,
    Raised,
    Ready,
    RecordMsg,
    Returned,
    StartFailed,
    StopMsg,
    decode_answer,
    decode_frame,
    decode_job,
    encode,
    encoder,
)
from capigate.store.sqlite.writer import (
    FILES_CHECK_S,
    GroupSize,
    Outcome,
    QueuedJob,
    check_files,
    close_writer,
    deliver,
    open_writer,
    run_group,
    sqlite_error,
)

try:
    import fcntl
except ImportError:  # Windows: pipes keep their default size
    fcntl = None  # type: ignore[assignment]

__all__ = ["ProcessWriter"]

log = logging.getLogger("capigate.store")

T = TypeVar("T")

_MAX_FRAME_JOBS: Final = 256  # bounds one frame's size: a W1 ingest is ~50 KB
# A turn of the loop that takes W1 batches lasts long (~2 ms a batch): sent only at its end, they
# reached the child after it had finished its group and idled. A few batches' worth go at once.
_EAGER_EVENTS: Final = 200
_HEADER: Final = struct.Struct("<I")
# Starting a child costs a Python interpreter's start (~0.3 s of CPU): on a broken store (its
# directory removed, say) every frame of writes started one, a core burnt while writes failed.
_RESPAWN_PAUSE_S: Final = 1.0
_PIPE_SIZE: Final = 1 << 20  # Linux's default limit for a pipe's buffer
_READ_BYTES: Final = _PIPE_SIZE  # a full pipe in one read
_STALL_MARGIN_S: Final = 2.0  # beyond the two busy timeouts a group may wait: its own work and COMMIT


def _write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        written = os.write(fd, data)  # not in the slice: mypyc evaluates a memoryview's slice bounds twice
        data = data[written:]


class _FrameReader:
    """Whole frames from a pipe; blocking reads hand the GIL back while they wait.

    Reads land in one buffer kept for the pipe's life: ``os.read(fd, 1 MiB)`` allocates a
    mebibyte each time (mapped, then unmapped), ~14 µs a read, and a W2 answer is 30 bytes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._chunk = memoryview(bytearray(_READ_BYTES))
        self.eof = False

    def read(self) -> bool:
        """One read of what the pipe holds (blocking as its descriptor is); False at its end."""
        size = os.readv(self._fd, [self._chunk])
        if not size:
            self.eof = True
            return False
        self._buffer += self._chunk[:size]
        return True

    def ready(self, timeout_s: float) -> bool:
        """Whether a read would not block (a frame, or the pipe's end), waiting up to ``timeout_s``."""
        return bool(self._buffer) or self.eof or bool(select.select([self._fd], [], [], timeout_s)[0])

    def frames(self, *, block: bool) -> list[bytes]:
        """The frames that have arrived (waiting for one if ``block``); [] at the end."""
        if not block and not self.ready(0):
            return []
        while not self.eof:
            self.read()
            frames = self.complete()
            if frames or not self._buffer:
                return frames
        return []

    def complete(self) -> list[bytes]:
        """The whole frames read so far, taken out of the buffer."""
        frames, start, buffer = [], 0, self._buffer
        with memoryview(buffer) as view:  # one copy per frame, and released before the del
            while len(buffer) - start >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer, start)
                end = start + _HEADER.size + size
                if end > len(buffer):
                    break
                frames.append(bytes(view[start + _HEADER.size : end]))
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
    """One writer process, the jobs it has been sent and not yet answered, and the bytes of
    frames its pipe has not taken yet."""

    def __init__(self, proc: subprocess.Popen[bytes], answers: _FrameReader, memory_statistics: bool) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc, self.to_child, self.from_child = proc, proc.stdin.fileno(), proc.stdout.fileno()
        self.answers = answers
        self.memory_statistics = memory_statistics  # SQLite's, in the child (memstatus.py)
        self.pending: dict[int, QueuedJob] = {}
        self.unsent = bytearray()
        self.close_when_sent = False  # the stop is in unsent: close its pipe once that is written
        self.waiting_since = 0.0  # monotonic: when it was last answered, or sent work while idle
        self.stopping = False  # told to stop: it owes an exit
        self.stalled = False  # killed for its silence
        self.alive = True
        self.ended: asyncio.Future[None] | None = None


class ProcessWriter:
    """The Writer's interface (start, submit, stop, stats), the writes made by a child process.

    Its pipes are the event loop's, as its sockets are: a job is encoded and written by the
    loop, and the loop reads the answers and settles the futures. With a sender and a reader
    thread, each round trip waited twice for the GIL, which the busy loop gives up only every
    switch interval (5 ms): that wait, not the work, bounded one worker's requests per second.
    """

    def __init__(self, path: Path, synchronous: str, busy_timeout_ms: int, process_lock: bool) -> None:
        self._args = [str(path), synchronous, str(busy_timeout_ms), "1" if process_lock else "0"]
        self._stall_s = 2 * busy_timeout_ms / 1000 + _STALL_MARGIN_S
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: list[QueuedJob] = []  # submitted, not yet sent
        self._outbox_events = 0  # the events of the ingests among them
        self._flush_scheduled = False
        self._child: _Child | None = None
        self._spawning: asyncio.Task[None] | None = None
        self._respawn_at = 0.0  # monotonic: no new child before, after one failed to start
        self._watchdog: asyncio.TimerHandle | None = None
        self._stopped: asyncio.Task[None] | None = None
        self._accepting = False
        self.stats = WriterStats()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._attach(await asyncio.to_thread(self._spawn))
        self._accepting = True
        self._watch()

    async def stop(self) -> None:
        if self._loop is None:
            return
        if self._stopped is None:
            self._accepting = False
            self._stopped = self._loop.create_task(self._stop())
        await asyncio.shield(self._stopped)

    async def submit(self, fn: Callable[[sqlite3.Cursor], T], batch: Batch | None = None) -> T:
        if not self._accepting or self._loop is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = QueuedJob(fn, future, loop, batch)
        if loop is self._loop:
            self._enqueue(job)
        else:  # another thread's loop: the writer's loop sends it
            try:
                self._loop.call_soon_threadsafe(self._enqueue, job)
            except RuntimeError:
                raise StoreError("the store's event loop is closed") from None
        return await future

    def _enqueue(self, job: QueuedJob) -> None:
        self._outbox.append(job)
        self._outbox_events += len(job.batch.events) if job.batch is not None else 1
        if self._outbox_events >= _EAGER_EVENTS:
            self._flush()
        elif not self._flush_scheduled:  # one frame for every job submitted in this turn of the loop
            self._flush_scheduled = True
            self._running_loop().call_soon(self._flush)

    def _take_outbox(self) -> list[QueuedJob]:
        jobs, self._outbox, self._outbox_events = self._outbox, [], 0
        return jobs

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    # starting a child

    def _spawn(self, timeout_s: float | None = None) -> _Child:
        """A new child, once it said it is ready, killed if it has not within ``timeout_s``
        (blocking: run in a thread)."""
        proc = subprocess.Popen(
            # -P: not the working directory first on the path, where a folder named capigate
            # would be the child's package (a trial: the gateway would not start).
            [sys.executable, "-P", "-m", "capigate.store.sqlite.writer_child", *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        answers = _FrameReader(proc.stdout.fileno())
        if timeout_s is not None and not select.select([proc.stdout], [], [], timeout_s)[0]:
            proc.kill()
            _close(proc)
            raise StoreError(f"the store's writer process did not start within {timeout_s:g} s and was killed")
        frames = answers.frames(block=True)
        answer = decode_answer(frames[0]) if frames else None
        if not isinstance(answer, Ready):
            code = _close(proc)
            if isinstance(answer, StartFailed):
                raise pickle.loads(answer.error)
            raise StoreError(f"the store's writer process ended as it started (exit status {code})")
        return _Child(proc, answers, answer.memory_statistics)

    def _attach(self, child: _Child) -> None:
        loop = self._running_loop()
        child.ended = loop.create_future()
        for fd in (child.to_child, child.from_child):
            os.set_blocking(fd, False)
            if fcntl is not None and hasattr(fcntl, "F_SETPIPE_SZ"):  # a W1 frame holds megabytes: fewer partial writes
                with contextlib.suppress(OSError):
                    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        loop.add_reader(child.from_child, self._on_answers, child)
        self._child = child

    def _respawn(self) -> None:
        if time.monotonic() < self._respawn_at:  # it failed to start just now: so would it again
            jobs = self._take_outbox()
            self._fail(jobs, self._spawn_error)
            return
        self._spawning = self._running_loop().create_task(self._replace_child(self._child))

    async def _replace_child(self, dead: _Child | None) -> None:
        try:
            if dead is not None and dead.ended is not None:
                await dead.ended  # its lock released, its lost jobs failed
            # as long as a silent child is given: a start after the first migrates nothing
            child = await asyncio.to_thread(self._spawn, self._stall_s)
        except Exception as exc:
            self._spawn_error, self._respawn_at = exc, time.monotonic() + _RESPAWN_PAUSE_S
            jobs = self._take_outbox()
            self._fail(jobs, exc)
        else:
            self._attach(child)
        finally:
            self._spawning = None
        self._flush()

    _spawn_error: BaseException = StoreError("the store's writer process is not running")

    # sending, on the loop

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._outbox or self._spawning is not None:
            return  # a child is starting: it gets them
        child = self._child
        if child is None or not child.alive:
            self._respawn()
            return
        jobs = self._take_outbox()
        if not child.pending:
            child.waiting_since = time.monotonic()
        for start in range(0, len(jobs), _MAX_FRAME_JOBS):
            frame = self._frame(child, jobs[start : start + _MAX_FRAME_JOBS])
            if frame is not None:
                self._send(child, frame)

    def _frame(self, child: _Child, jobs: list[QueuedJob]) -> bytearray | None:
        """The jobs' frame, each job registered as pending; None if none could be encoded.
        Encoded in one pass into the frame (a W1 batch is ~140 KB: encoded apart first, it
        was allocated, faulted in and copied once more)."""
        messages: list[JobMsg | msgspec.Raw] = []
        sent: list[tuple[int, QueuedJob]] = []
        for job in jobs:
            job_id = next(self._ids)
            try:
                messages.append(_message(job_id, job))
            except Exception as exc:  # a job that cannot be pickled fails alone
                self._fail([job], exc)
                continue
            sent.append((job_id, job))
        frame = bytearray(_HEADER.size)
        try:
            encoder.encode_into(messages, frame, _HEADER.size)
        except Exception:  # one of them holds a value msgpack cannot encode: that one fails alone
            messages, sent = self._encodable(sent, messages)
            try:
                encoder.encode_into(messages, frame, _HEADER.size)
            except Exception as exc:  # no memory for the frame: its jobs fail, rather than wait for ever
                self._fail([job for _, job in sent], exc)
                return None
        if not sent:
            return None
        for job_id, job in sent:
            child.pending[job_id] = job
        _HEADER.pack_into(frame, 0, len(frame) - _HEADER.size)
        return frame

    def _encodable(
        self, sent: list[tuple[int, QueuedJob]], messages: list[JobMsg | msgspec.Raw]
    ) -> tuple[list[JobMsg | msgspec.Raw], list[tuple[int, QueuedJob]]]:
        """The messages each encoded apart, and their jobs; the jobs of the others failed."""
        encoded: list[JobMsg | msgspec.Raw] = []
        kept: list[tuple[int, QueuedJob]] = []
        for (job_id, job), message in zip(sent, messages, strict=True):
            try:
                encoded.append(msgspec.Raw(encode(message)))
            except Exception as exc:
                self._fail([job], exc)
                continue
            kept.append((job_id, job))
        return encoded, kept

    def _send(self, child: _Child, data: bytes | bytearray) -> None:
        if child.unsent:  # the pipe is full: after what waits already
            child.unsent += data
            return
        try:
            written = os.write(child.to_child, data)
        except BlockingIOError:
            written = 0
        except OSError:  # it died: its end of file fails what it was sent
            return
        if written < len(data):
            child.unsent += memoryview(data)[written:]
            self._running_loop().add_writer(child.to_child, self._send_unsent, child)
        elif child.close_when_sent:
            self._close_pipe_to(child)

    def _send_unsent(self, child: _Child) -> None:
        try:
            written = os.write(child.to_child, child.unsent)
        except BlockingIOError:
            return
        except OSError:
            written = len(child.unsent)  # it died: its end of file fails what it was sent
        del child.unsent[:written]
        if not child.unsent:
            self._running_loop().remove_writer(child.to_child)
            if child.close_when_sent:
                self._close_pipe_to(child)

    def _close_pipe_to(self, child: _Child) -> None:
        with contextlib.suppress(OSError):
            child.proc.stdin.close()  # type: ignore[union-attr]

    # answers, on the loop

    def _on_answers(self, child: _Child) -> None:
        try:
            more = child.answers.read()
        except BlockingIOError:
            return
        except OSError:
            more = False
        if not more:
            self._child_ended(child)
            return
        try:
            for frame in child.answers.complete():
                self._settle(child, decode_answer(frame))
        except Exception:  # an answer it could not read: done for
            self._child_ended(child)

    def _settle(self, child: _Child, answer: Ready | StartFailed | Group) -> None:
        if not isinstance(answer, Group):
            return
        self.stats.groups += 1
        self.stats.jobs += answer.jobs
        jobs = [child.pending.pop(o.id) for o in answer.outcomes]
        child.waiting_since = time.monotonic()
        deliver(jobs, [_outcome(o) for o in answer.outcomes], self._loop)

    def _child_ended(self, child: _Child) -> None:
        if not child.alive:
            return
        child.alive = False
        loop = self._running_loop()
        loop.remove_reader(child.from_child)
        loop.remove_writer(child.to_child)
        child.unsent.clear()
        lost = list(child.pending.values())
        child.pending.clear()
        if child.proc.poll() is None:  # silent, or an answer it could not read: done for
            child.proc.kill()
        loop.create_task(self._bury(child, lost))

    async def _bury(self, child: _Child, lost: list[QueuedJob]) -> None:
        code = await asyncio.to_thread(_close, child.proc)
        ended = (
            f"did not answer within {self._stall_s:g} s and was killed"
            if child.stalled
            else f"ended (exit status {code})"
        )
        if child.stalled or not child.stopping:  # a death the operator hears of, idle or not
            log.warning(
                "the store's writer process (pid %d) %s; %d write(s) sent to it failed (they may or may not be "
                "stored); the next write starts another",
                child.proc.pid,
                ended,
                len(lost),
            )
        self._fail(
            lost,
            StoreError(
                f"the store's writer process {ended} before it answered: the write may or may not be stored",
                maybe_stored=True,
            ),
        )
        assert child.ended is not None
        child.ended.set_result(None)

    def _watch(self) -> None:
        """Kills a child that stayed silent for ``_stall_s`` while it owed answers (jobs, or its
        exit): its end of file then fails what it was sent."""
        child = self._child
        if child is not None and self._silent_too_long(child):
            child.stalled = True
            child.proc.kill()
        self._watchdog = self._running_loop().call_later(self._stall_s / 4, self._watch)

    def _silent_too_long(self, child: _Child) -> bool:
        owes = child.alive and (bool(child.pending) or child.stopping)
        return owes and time.monotonic() - child.waiting_since >= self._stall_s

    def _fail(self, jobs: list[QueuedJob], error: BaseException) -> None:
        deliver(jobs, [(None, error)] * len(jobs), self._loop)

    # stopping

    async def _stop(self) -> None:
        try:
            while self._outbox or self._spawning is not None:  # every job submitted before the stop is sent
                if self._spawning is not None:
                    await asyncio.shield(self._spawning)
                else:
                    self._flush()
            child = self._child
            if child is not None and child.alive:
                child.stopping, child.waiting_since = True, time.monotonic()
                child.close_when_sent = True
                self._send(child, _HEADER.pack(len(stop := encode([StopMsg()]))) + stop)
            if child is not None and child.ended is not None:
                await child.ended
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            jobs = self._take_outbox()
            self._fail(jobs, StoreError("the store writer has stopped"))


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


def _all_bytes(events: Sequence[Any]) -> bool:
    # Any, not NewEvent: compiled, reading a field declared bytes checks it, and a str payload
    # raised here rather than in the writer, which names the event at fault (ingest.py).
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
    def __init__(self, jobs_fd: int, answers_fd: int, lock: ProcessLock, opened: OpenedFile) -> None:
        self._reader = _FrameReader(jobs_fd)
        self._answers_fd, self._lock, self._opened = answers_fd, lock, opened
        self._backlog: collections.deque[_ChildJob] = collections.deque()
        self._stopping = False
        self._stats = WriterStats()

    def serve(self, cur: sqlite3.Cursor) -> None:
        while self._backlog or self._wait_for_jobs(cur):
            first = self._backlog.popleft()
            jobs, _, outcomes = run_group(cur, self._lock, self._opened, self._stats, first, self._drain)
            answers = [_answer(job.id, outcome) for job, outcome in zip(jobs, outcomes, strict=True)]
            _write_frame(self._answers_fd, encode(Group(len(jobs), answers)))

    def _drain(self, first: _ChildJob) -> tuple[list[_ChildJob], bool]:
        jobs, size = [first], GroupSize()
        more = size.add(first)
        while more and (self._backlog or self._fill(block=False)):
            job = self._backlog.popleft()
            jobs.append(job)
            more = size.add(job)
        return jobs, False

    def _wait_for_jobs(self, cur: sqlite3.Cursor) -> bool:
        """``_fill(block=True)``, the database's files checked while no job comes."""
        while not self._reader.ready(FILES_CHECK_S):
            check_files(cur, self._opened)
        return self._fill(block=True)

    def _fill(self, *, block: bool) -> bool:
        """Read what has come into the backlog; False when none came (or the pipe is closed)."""
        while not self._stopping:
            frames = self._reader.frames(block=block)
            if not frames:
                return False
            for frame in frames:
                self._backlog += self._jobs(decode_frame(frame))
            if self._backlog or not block:
                return bool(self._backlog)
        return False

    def _jobs(self, messages: list[msgspec.Raw]) -> list[_ChildJob]:
        jobs = []
        for raw in messages:
            try:
                m = decode_job(raw)
            except msgspec.ValidationError as exc:  # a job of values no store takes fails alone
                jobs.append(_ChildJob(msgspec.msgpack.decode(raw)[1], _Refused(exc), None))
                continue
            if type(m) is IngestRead:
                batch = Batch(m.events, m.request_id, m.received_at_ms)  # type: ignore[arg-type]  # only read
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
    memory_statistics = not without_memory_statistics()  # before the first connection
    try:
        lock, conn, opened = open_writer(Path(path), synchronous, int(busy_timeout_ms), use_lock == "1")
    except BaseException as exc:
        _write_frame(answers_fd, encode(StartFailed(_pickled_error(exc))))
        return 1
    try:
        _write_frame(answers_fd, encode(Ready(memory_statistics)))
        _ChildWriter(jobs_fd, answers_fd, lock, opened).serve(conn.cursor())
    finally:
        close_writer(lock, conn, opened)
    return 0
