"""The inspector's login sessions on SQLite, in the store so that every worker process sees a
logout at once (``capigate/http/session.py`` decides what a session is).

A row is a key, a digest of the session id and the admin token (never the cookie itself, so
a read of the database gives no usable session), and the time it expires. Expired rows are
deleted by each new login: their number stays bounded by the logins of ``MAX_AGE``.
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = ["SCHEMA", "end", "expires_at", "put"]

SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS inspector_sessions (
        key TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID""",
)


def put(cur: sqlite3.Cursor, key: str, expires_at_ms: int, now_ms: int) -> None:
    cur.execute("DELETE FROM inspector_sessions WHERE expires_at <= ?", (now_ms,))
    cur.execute("INSERT OR REPLACE INTO inspector_sessions (key, expires_at) VALUES (?, ?)", (key, expires_at_ms))


def expires_at(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute("SELECT expires_at FROM inspector_sessions WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def end(cur: sqlite3.Cursor, key: str) -> None:
    cur.execute("DELETE FROM inspector_sessions WHERE key = ?", (key,))
