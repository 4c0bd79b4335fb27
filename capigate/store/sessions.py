"""The inspector's login sessions, in the store so that every worker process and every node
sees a logout at once (``capigate/http/session.py`` decides what a session is).

A row is a key, a digest of the session id and the admin token (never the cookie itself, so
a read of the database gives no usable session), and the time it expires. Expired rows are
deleted by each new login: their number stays bounded by the logins of ``MAX_AGE``.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # psycopg costs ~0.4 s to import, which a SQLite gateway never pays
    from psycopg import AsyncConnection

__all__ = [
    "PG_SCHEMA",
    "SQLITE_SCHEMA",
    "pg_end",
    "pg_expires_at",
    "pg_put",
    "sqlite_end",
    "sqlite_expires_at",
    "sqlite_put",
]

SQLITE_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS inspector_sessions (
        key TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID""",
)
PG_SCHEMA: Final = (
    """CREATE TABLE inspector_sessions (
        key text PRIMARY KEY,
        expires_at bigint NOT NULL
    )""",
)


def sqlite_put(cur: sqlite3.Cursor, key: str, expires_at_ms: int, now_ms: int) -> None:
    cur.execute("DELETE FROM inspector_sessions WHERE expires_at <= ?", (now_ms,))
    cur.execute("INSERT OR REPLACE INTO inspector_sessions (key, expires_at) VALUES (?, ?)", (key, expires_at_ms))


def sqlite_expires_at(conn: sqlite3.Connection, key: str) -> int | None:
    row = conn.execute("SELECT expires_at FROM inspector_sessions WHERE key = ?", (key,)).fetchone()
    return None if row is None else int(row[0])


def sqlite_end(cur: sqlite3.Cursor, key: str) -> None:
    cur.execute("DELETE FROM inspector_sessions WHERE key = ?", (key,))


async def pg_put(conn: AsyncConnection[Any], key: str, expires_at_ms: int, now_ms: int) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM inspector_sessions WHERE expires_at <= %s", (now_ms,))
        await conn.execute(
            "INSERT INTO inspector_sessions (key, expires_at) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at",
            (key, expires_at_ms),
        )


async def pg_expires_at(conn: AsyncConnection[Any], key: str) -> int | None:
    row = await (await conn.execute("SELECT expires_at FROM inspector_sessions WHERE key = %s", (key,))).fetchone()
    return None if row is None else int(row[0])


async def pg_end(conn: AsyncConnection[Any], key: str) -> None:
    await conn.execute("DELETE FROM inspector_sessions WHERE key = %s", (key,))
