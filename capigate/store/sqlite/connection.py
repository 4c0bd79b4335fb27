"""The SQLite writer's connection. A module of its own, which mypyc does not compile: a compiled
subclass of ``sqlite3.Connection`` crashes the process in ``sqlite3.connect(..., factory=…)``."""

from __future__ import annotations

import sqlite3

from capigate.store.sqlite.dedupe import RecentKeys

__all__ = ["WriterConnection"]


class WriterConnection(sqlite3.Connection):
    """The writer's connection, which carries its copy of the recent keys."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.recent_keys = RecentKeys()
