"""The database's files as the writer opened them, and whether their paths still name them.

A file deleted while open lives on, unlinked, until the process ends: SQLite commits into it
without an error. So it does into the old database file when another one is moved over the
path, and into the WAL a file moved over it will be read with; and into a deleted `-wal`, whose
frames no checkpoint had copied into the database yet were lost at a kill -9 (the whole schema
of a young database with them). Answered 200, those writes were lost. The writer compares the
paths' files (the database, its `-wal` and `-shm`) with the ones it opened after each COMMIT
and when idle (a ``stat`` each, ~0.75 µs) and fails the group, and every later one, when they
differ.
"""

from __future__ import annotations

import os
from pathlib import Path

from capigate.errors import StoreError

__all__ = ["OpenedFile"]


class OpenedFile:
    __slots__ = ("_watched", "lost", "wal_emptied")

    def __init__(self, path: Path) -> None:
        """``path`` just opened by the writer, its `-wal` and `-shm` there (each watched if so)."""
        files = (("file", str(path)), ("WAL", f"{path}-wal"), ("WAL index", f"{path}-shm"))
        found = [(kind, p, _identity(p)) for kind, p in files]
        self._watched = [(kind, p, identity) for kind, p, identity in found if identity not in (_GONE, _UNKNOWN)]
        self.lost: StoreError | None = None  # once set, every later write fails with it
        self.wal_emptied = False  # once lost: the WAL copied into the file opened, and truncated

    def check(self) -> StoreError | None:
        """None while the paths name the files opened; else the error of this write and the later ones."""
        if self.lost is None:
            for kind, path, identity in self._watched:
                if _identity(path) not in (identity, _UNKNOWN):
                    self.lost = StoreError(
                        f"the database's {kind} {path} was deleted or replaced while the gateway ran: writes go "
                        "to the file it opened, which no restart finds, and are not stored; restart the gateway"
                    )
                    break
        return self.lost


_GONE = (-1, -1)
_UNKNOWN = (-2, -2)  # the path could not be read (a directory made unreadable): not proof it is gone


def _identity(path: str) -> tuple[int, int]:
    try:
        found = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return _GONE
    except OSError:
        return _UNKNOWN
    return found.st_dev, found.st_ino
