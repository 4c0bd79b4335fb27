"""The database file as the writer opened it, and whether its path still names that file.

A file deleted while open lives on, unlinked, until the process ends: SQLite commits into it
without an error (so it does into the old file when another one is moved over the path, and
into the WAL that file will be read with). Answered 200, those writes were lost with the process.
The writer compares the path's file with the one it opened before BEGIN and after COMMIT (a
``stat`` each, ~1 µs) and fails the group, and every later one, when they differ.
"""

from __future__ import annotations

import os
from pathlib import Path

from capigate.errors import StoreError

__all__ = ["OpenedFile"]


class OpenedFile:
    __slots__ = ("_identity", "lost", "path", "wal_emptied")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity = _identity(path)
        self.lost: StoreError | None = None  # once set, every later write fails with it
        self.wal_emptied = False  # once lost: the WAL copied into the file opened, and truncated

    def check(self) -> StoreError | None:
        """None while the path names the file opened; else the error of this write and the later ones."""
        if self.lost is None and self._identity != _UNKNOWN and _identity(self.path) not in (self._identity, _UNKNOWN):
            self.lost = StoreError(
                f"the database file {self.path} was deleted or replaced while the gateway ran: "
                "writes go to the file it opened, which no restart finds, and are not stored; restart the gateway"
            )
        return self.lost


_GONE = (-1, -1)
_UNKNOWN = (-2, -2)  # the path could not be read (a directory made unreadable): not proof it is gone


def _identity(path: Path) -> tuple[int, int]:
    try:
        found = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return _GONE
    except OSError:
        return _UNKNOWN
    return found.st_dev, found.st_ino
