"""The lock file that queues the writers of several processes on one SQLite database.

An exclusive ``flock`` on ``<db>-writer.lock`` beside the database, which the writer thread of
every SQLiteStore on the file (every gateway worker process, ``capigate relay``) holds around
each group transaction.

Without it a writer that finds the database locked waits in SQLite's busy handler, which
sleeps 1, 2, 5 … 100 ms between tries, whenever the holder commits (bench/store_ingest.py
--processes 2: an ingest's p99 ~1 s, against ~0.2 s with the lock). Blocked in ``flock``, a
writer wakes as soon as the holder lets go, and the jobs that queued meanwhile join its group.

No timeout can interrupt a blocking ``flock``, yet a holder that is stopped (SIGSTOP, a
debugger) must not hang every request: so a writer that finds the lock taken has a helper
thread block in ``flock`` for it, and waits for that thread the store's busy timeout at most,
as SQLite would; then it fails with a StoreError, as ``database is locked`` does. Polling
with ``LOCK_NB`` instead (every 0.2 ms, backing off) lost the race to a holder with more work
queued, again and again: an ingest's p99 doubled under load. A helper still blocked when its
writer gave up hands the lock back as soon as it gets it, or to the writer's next wait.

The kernel drops the lock with the process holding it, so a crash leaves nothing to clean up
(the empty file stays). busy_timeout still paces writers that take no lock (the sqlite3 shell,
an older capigate). Where the file cannot be opened, or there is no ``fcntl`` (Windows), the
lock does nothing and busy_timeout alone serves.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import weakref
from pathlib import Path

from capigate.errors import StoreError

try:
    import fcntl
except ImportError:  # Windows: no flock; the writers of several processes meet in busy_timeout alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["ProcessLock"]


class ProcessLock:
    """``with lock:`` or ``acquire()`` / ``release()``, from one thread (the store's writer)."""

    def __init__(self, fd: int | None, path: str, timeout_s: float) -> None:
        self._fd, self._path, self._timeout_s = fd, path, timeout_s
        self._mutex = threading.Lock()  # guards the three below, shared with the helper thread
        self._blocked = False  # the helper thread is in a blocking flock
        self._wanted = False  # and the writer waits for it
        self._closing = False  # closed meanwhile: the helper closes the file once it returns
        self._granted = threading.Event()
        self._requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()  # fds to flock, None: stop
        self._helper: threading.Thread | None = None  # started at the first wait, stopped by close()
        if fd is not None:
            _open_locks.add(self)

    @classmethod
    def beside(cls, db: Path, timeout_s: float) -> ProcessLock:
        path = f"{db}-writer.lock"
        if fcntl is None:
            return cls(None, path, timeout_s)
        try:  # the database's permissions, as SQLite gives its -wal and -shm files
            mode = db.stat().st_mode & 0o666
        except OSError:
            mode = 0o644
        try:  # flock needs no write access: read-only lets every user of the database take it
            return cls(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, mode), path, timeout_s)
        except OSError:
            return cls(None, path, timeout_s)

    def acquire(self) -> None:
        """Take the lock, waiting ``timeout_s`` at most; StoreError once it has passed."""
        fd = self._fd
        if fd is None:
            return
        with self._mutex:
            if not self._blocked:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:  # another process holds it
                    pass
                except OSError:  # e.g. ENOLCK: go on as without the lock
                    return
                self._blocked = True
                if self._helper is None:
                    self._helper = threading.Thread(target=self._serve, name="capigate-sqlite-lock", daemon=True)
                    self._helper.start()
                self._requests.put(fd)
            self._wanted = True
        if self._granted.wait(self._timeout_s):
            self._granted.clear()
            return
        with self._mutex:
            self._wanted = False
            if self._granted.is_set():  # given as the time ran out
                self._granted.clear()
                return
        raise StoreError(
            f"{self._path}: another capigate process has held the writer lock for over "
            f"{self._timeout_s:g} s (stopped, or in a debugger?); nothing was written"
        )

    def _serve(self) -> None:
        while (fd := self._requests.get()) is not None:
            self._block(fd)

    def _block(self, fd: int) -> None:
        """The helper thread: wait in flock, then hand the lock over (or back)."""
        with contextlib.suppress(OSError):  # ENOLCK …: the writer goes on as without the lock
            fcntl.flock(fd, fcntl.LOCK_EX)
        with self._mutex:
            self._blocked = False
            if self._closing:
                os.close(fd)
            elif self._wanted:
                self._wanted = False
                self._granted.set()
            else:  # its writer gave up waiting
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def close(self) -> None:
        with self._mutex:
            fd, self._fd = self._fd, None
            helper, self._helper = self._helper, None
            _open_locks.discard(self)
            if fd is not None and self._blocked:
                self._closing = True  # the file stays open while the helper thread is in flock
            elif fd is not None:
                os.close(fd)
        if helper is not None:
            self._requests.put(None)  # after the flock it may be in

    def _close_in_child(self) -> None:
        # No thread but the forking one survives a fork, and the mutex may have been held.
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


_open_locks: weakref.WeakSet[ProcessLock] = weakref.WeakSet()


def _close_inherited_locks() -> None:
    # A forked child shares its parent's open lock file, and so its flock: were the parent to
    # die holding it, the child would keep every writer waiting. The child has no writer.
    for lock in list(_open_locks):
        lock._close_in_child()
    _open_locks.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)
