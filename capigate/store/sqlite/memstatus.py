"""SQLite's memory statistics turned off in the writer process, a process whose connections
capigate alone opens.

With them on, SQLite's default, every allocation and free of SQLite's takes a global mutex to
count itself: 5.7 % of the writer's instructions a W2 request (``bench/instructions.py``'s
``writer W2``), for counts capigate never reads. Python's sqlite3 has no ``sqlite3_config``,
and SQLite takes it only before it initialises, which ``import sqlite3`` does, or after
``sqlite3_shutdown``, which no open connection may outlive: only a process that has opened
none may turn them off, before its first."""

from __future__ import annotations

import _sqlite3
import ctypes
import sys
from typing import Final

__all__ = ["without_memory_statistics"]

_SQLITE_CONFIG_MEMSTATUS: Final = 9


def without_memory_statistics() -> bool:
    """Turns SQLite's memory statistics off in this process, which must hold no open SQLite
    connection; True once done. False where it is left on: a platform whose variadic calls
    ctypes may pass wrongly (only Linux's are known right), or a Python whose sqlite3 does not
    show SQLite's functions (linked in statically)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        library = ctypes.CDLL(_sqlite3.__file__)  # its symbols, and those of the SQLite it links
        shutdown, config = library.sqlite3_shutdown, library.sqlite3_config
    except (OSError, AttributeError):
        return False
    if shutdown() != 0:
        return False
    return bool(config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == 0)
