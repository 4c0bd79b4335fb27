"""The database's files as the writer opened them, and whether their paths still name them.

A file deleted while open lives on, unlinked, until the process ends: SQLite commits into it
without an error. So it does into the old database file when another one is moved over the
path, and into the WAL a file moved over it will be read with; and into a deleted `-wal`, whose
frames no checkpoint had copied into the database yet were lost at a kill -9 (the whole schema
of a young database with them). Answered 200, those writes were lost. The writer compares the
paths' files (the database, its `-wal` and `-shm`) with the ones it opened after each COMMIT
and when idle (a ``stat`` each, ~0.75 µs) and fails the group, and every later one, when they
differ, or when the database file shrank: SQLite never shrinks it here (no VACUUM, no
auto_vacuum), so a smaller file was truncated or copied over in place (``cp backup.db`` onto
the live file), and SQLite would go on committing into what is left of it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from capigate.errors import StoreError

__all__ = ["OpenedFile"]


class OpenedFile:
    __slots__ = ("_size", "_watched", "lost", "wal_emptied")

    def __init__(self, path: Path) -> None:
        """``path`` just opened by the writer, its `-wal` and `-shm` there (each watched if so)."""
        files = (("file", str(path)), ("WAL", f"{path}-wal"), ("WAL index", f"{path}-shm"))
        found = [(kind, p, _stat(p)) for kind, p in files]
        self._watched = [(kind, p, _identity(st)) for kind, p, st in found if not isinstance(st, str)]
        first = found[0][2]
        self._size = 0 if isinstance(first, str) else first.st_size
        self.lost: StoreError | None = None  # once set, every later write fails with it
        self.wal_emptied = False  # once lost: the WAL copied into the file opened, and truncated

    def check(self) -> StoreError | None:
        """None while the paths name the files opened; else the error of this write and the later ones."""
        if self.lost is None:
            for kind, path, identity in self._watched:
                found = _stat(path)
                if found == "unreadable":
                    continue  # a directory made unreadable: not proof it is gone
                if found == "gone" or _identity(found) != identity:
                    self.lost = StoreError(
                        f"the database's {kind} {path} was deleted or replaced while the gateway ran: writes go "
                        "to the file it opened, which no restart finds, and are not stored; restart the gateway"
                    )
                    break
                if kind == "file":
                    if found.st_size < self._size:
                        self.lost = _shrank(path, self._size, found.st_size)
                        break
                    self._size = found.st_size
        return self.lost


def _shrank(path: str, was: int, now: int) -> StoreError:
    return StoreError(
        f"the database's file {path} shrank from {was:,} to {now:,} bytes while the gateway ran: it was "
        "truncated or copied over in place (a restore onto the live file, a VACUUM by another program), and "
        "writes into it would be lost; stop the gateway, restore a complete copy, start it again"
    )


def _stat(path: str) -> os.stat_result | Literal["gone", "unreadable"]:
    """The path's ``stat``; "unreadable" when it cannot be read (a directory made unreadable)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "gone"
    except OSError:
        return "unreadable"


def _identity(found: os.stat_result) -> tuple[int, int]:
    return found.st_dev, found.st_ino
