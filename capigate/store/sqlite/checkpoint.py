"""A background checkpointer: copies the WAL back into the database beside the writer.

With SQLite's automatic checkpoint alone, the commit that crosses ``wal_autocheckpoint``
copies every page of the WAL (~40 MiB) and syncs the database before its transaction's
requests are answered, and the requests queued behind it wait too. A ``PASSIVE`` checkpoint
from another connection copies concurrently with the writer's commits and never blocks them;
when the writer's own automatic checkpoint comes, little is left for it to copy, and it
completes, so the WAL still restarts from its beginning. W2 Axon at 1,000 req/s: p99 8.4 and
8.7 ms against 11.0 and 14.5 ms without it. Once a second, not more often: every checkpoint
syncs the database file and copies the hot index pages again (every 0.2 s cost W1 ~10 %).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Final

__all__ = ["Checkpointer"]

INTERVAL_S: Final = 1.0

log = logging.getLogger("capigate.store")


class Checkpointer:
    def __init__(self, path: Path, synchronous: str, interval_s: float = INTERVAL_S) -> None:
        self._path, self._synchronous, self._interval_s = path, synchronous, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """After the writer has opened the database (and switched it to WAL)."""
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        # A checkpoint syncs as its own connection says: as durably as the writer commits.
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        self._thread = threading.Thread(target=self._run, args=(conn,), name="capigate-sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, conn: sqlite3.Connection) -> None:
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's own checkpoints still run
                    log.warning("background checkpoint failed: %s", exc)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
