"""The inspector's login sessions on PostgreSQL, in the store so that every node sees a logout
at once (``capigate/http/session.py`` decides what a session is). The rows are the SQLite
store's: a key (a digest, never the cookie) and its expiry; each login deletes the expired."""

from __future__ import annotations

from typing import Final

import psycopg
from psycopg.rows import TupleRow

__all__ = ["SCHEMA", "end", "expires_at", "put"]

Connection = psycopg.AsyncConnection[TupleRow]

SCHEMA: Final = (
    """CREATE TABLE inspector_sessions (
        key text PRIMARY KEY,
        expires_at bigint NOT NULL
    )""",
)


async def put(conn: Connection, key: str, expires_at_ms: int, now_ms: int) -> None:
    async with conn.transaction():
        await conn.execute("DELETE FROM inspector_sessions WHERE expires_at <= %s", (now_ms,))
        await conn.execute(
            "INSERT INTO inspector_sessions (key, expires_at) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at",
            (key, expires_at_ms),
        )


async def expires_at(conn: Connection, key: str) -> int | None:
    row = await (await conn.execute("SELECT expires_at FROM inspector_sessions WHERE key = %s", (key,))).fetchone()
    return None if row is None else int(row[0])


async def end(conn: Connection, key: str) -> None:
    await conn.execute("DELETE FROM inspector_sessions WHERE key = %s", (key,))
