"""A deadline on one exchange with PostgreSQL: a read's or a prune transaction's (``[store]
read_timeout_s``) or a write group's (the writer's answer timeout).

Unanswered in time, the statement is first cancelled on the server, then the connection is
severed. Severing alone fails the client's wait at once, but a server that is still there hears
of it only when it next reads or writes: a statement waiting on a lock stayed waiting (``active``
in ``pg_stat_activity``), holding its locks and a connection slot, until that lock was released.
The cancel request goes on a connection of its own, which a partition may leave unanswered too:
it is given ``CANCEL_TIMEOUT_S``, then the connection is severed all the same.

A pooled connection severed here makes psycopg.pool warn "discarding closed connection" when
it comes back; its user logs a warning of its own saying why, so that line is dropped for the
connections severed here (``_SeveredFilter``), and kept for any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import weakref
from typing import Final

import psycopg
from psycopg.rows import TupleRow

__all__ = ["CANCEL_TIMEOUT_S", "Deadline", "sever"]

log = logging.getLogger("capigate.store")

Connection = psycopg.AsyncConnection[TupleRow]

CANCEL_TIMEOUT_S: Final = 2.0  # a cancel request is a connection and one message: milliseconds when the server is there


class Deadline:
    """``async with Deadline(conn, seconds) as deadline:`` around the work on ``conn``. Unfinished
    after ``seconds``, its statement is cancelled on the server and ``conn`` severed, so that
    the work's wait fails; leaving the block waits for both and closes ``conn`` (a pool drops
    it, a writer reconnects), answered or not. ``expired`` tells whether that happened."""

    def __init__(self, conn: Connection, seconds: float) -> None:
        self._conn = conn
        self._seconds = seconds
        self._timer: asyncio.TimerHandle | None = None
        self._ending: asyncio.Task[bool] | None = None

    @property
    def expired(self) -> bool:
        return self._ending is not None

    @property
    def cancelled(self) -> bool:
        """Whether the server confirmed the cancel request (known once the block is left)."""
        ending = self._ending
        if ending is None or not ending.done() or ending.cancelled():
            return False
        return ending.result()

    async def __aenter__(self) -> Deadline:
        self._timer = asyncio.get_running_loop().call_later(self._seconds, self._expire)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._ending is not None:
            try:
                await self._ending
            finally:
                await self._conn.close()

    def _expire(self) -> None:
        self._ending = asyncio.create_task(cancel_and_sever(self._conn))


async def cancel_and_sever(conn: Connection) -> bool:
    """Asks the server to cancel what ``conn`` runs, for ``CANCEL_TIMEOUT_S`` at most (psycopg's
    timeout, and asyncio's: with a libpq older than 17, psycopg's cancel runs in a thread that
    has no timeout), then severs ``conn``. True if the cancel request was answered."""
    try:
        async with asyncio.timeout(CANCEL_TIMEOUT_S):
            await conn.cancel_safe(timeout=CANCEL_TIMEOUT_S)
    except (psycopg.Error, TimeoutError) as exc:
        why = str(exc) if isinstance(exc, psycopg.Error) else f"no answer within {CANCEL_TIMEOUT_S:g} s"
        log.warning("could not cancel a PostgreSQL statement on the server: %s", why)
        return False
    finally:
        sever(conn)
    return True


def sever(conn: Connection) -> None:
    """Ends a connection that stopped answering. shutdown() on a duplicate of the socket:
    psycopg's pending read sees the end of the stream at once (closing the connection under it
    would leave that read waiting), and the server, if it can still hear, ends the transaction
    instead of holding its locks, once it next reads the connection: a statement it is running
    (waiting on a lock) keeps them until it ends, hence ``cancel_and_sever``."""
    _severed.add(conn)
    with contextlib.suppress(OSError, psycopg.Error), socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


_severed: weakref.WeakSet[Connection] = weakref.WeakSet()


class _SeveredFilter(logging.Filter):
    """Drops psycopg.pool's "discarding closed connection" for a connection severed here."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.msg == "discarding closed connection: %s"
            and isinstance(args, tuple)
            and len(args) == 1
            and args[0] in _severed
        )


logging.getLogger("psycopg.pool").addFilter(_SeveredFilter())
