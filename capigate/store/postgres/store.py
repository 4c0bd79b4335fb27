"""The PostgreSQL store: many gateway nodes on one database.

Writes go through group-committing writer tasks (writer.py); reads, relay leases and
pruning run on a pool of autocommit connections (psycopg 3, ``AsyncConnectionPool``), each a
single statement or one short transaction. Everything a node knows lives in the database, so
nodes are stateless and any node answers for all of them:

- dedupe: the (source, dedupe_id) primary key; the first transaction to insert a key wins;
- relay: ``claim`` leases due outbox runs with ``FOR UPDATE SKIP LOCKED``, so two nodes never
  lease one delivery at once; a lease that expires (its node died) makes the run due again;
- schema: numbered steps applied at ``open()`` under an advisory lock (schema.py).

Isolation: ``schema="name"`` (or ``?schema=name`` in the URL) keeps every table in that
PostgreSQL schema, created if missing, so one database can hold several deployments, or one
schema per test. Without it, tables go where the connection's search_path points (``public``).

A store belongs to the event loop that opened it, as its connections do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from capigate.errors import StoreError
from capigate.events import NewEvent
from capigate.store.base import (
    AttemptOutcome,
    DeadLetterQuery,
    Delivery,
    DeliveryAttempt,
    EventQuery,
    IngestResult,
    OutboxDepth,
    PruneResult,
    QualityRow,
    RequestQuery,
    RequestRecord,
    RequestView,
    Retention,
    SchemaStatus,
    StatsBucket,
    StoredEvent,
    WriterStats,
)
from capigate.store.postgres import inspector, outbox, prune, schema, sessions
from capigate.store.postgres.deadline import Deadline
from capigate.store.postgres.ingest import IngestJob, ProbeJob, RecordJob, check_payloads
from capigate.store.postgres.queries import events_sql, query_stats, requests_sql
from capigate.store.postgres.writer import ANSWER_TIMEOUT_S, Writer
from capigate.store.sql import page, request_view, store_error, stored_event

__all__ = ["PostgresStore"]

log = logging.getLogger("capigate.store")

T = TypeVar("T")
Connection = psycopg.AsyncConnection[TupleRow]

_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
URL_OPTIONS: Final = frozenset({"schema", "writers", "pool_size"})


def split_options(url: str) -> tuple[str, dict[str, Any]]:
    """``(the URL without them, options)`` for capigate's own URL parameters: ``schema``,
    ``writers`` and ``pool_size``; every other parameter is libpq's and stays."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    found = {key: value for key, value in query if key in URL_OPTIONS}
    if not found:
        return url, {}
    options: dict[str, Any] = {}
    for key, value in found.items():
        if key == "schema":
            options[key] = value
        elif value.isdigit() and int(value) >= 1:
            options[key] = int(value)
        else:
            raise StoreError(f"{_redact(url)}: {key} must be a whole number >= 1, not {value!r}")
    rest = urlencode([(key, value) for key, value in query if key not in URL_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), options


def _redact(url: str) -> str:
    """The URL with its password (if any) as ``***``."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{host}"))


_IDLE_IN_TRANSACTION_MS = 15_000
READ_TIMEOUT_S: Final = 30.0  # the [store] setting's default: an admin page's slowest read takes seconds


class PostgresStore:
    """The ``Store`` on PostgreSQL, shared by any number of gateway nodes.

    ``pool_size`` (default 8) bounds the connections for reads, leases and pruning;
    ``writers`` (default 2) adds that many connections for group commit: a large group is
    shared among the idle writers, whose transactions run at the same time on the server's
    CPUs. Each also comes from the URL (``?schema=capigate&writers=4``); a keyword argument
    wins. A write group unanswered after ``answer_timeout_s`` fails and its writer reconnects
    (writer.py); a read, a lease or a session unanswered after ``read_timeout_s`` fails as
    ``StoreError``, its statement cancelled on the server and its connection dropped: a backend
    that stops answering (stopped, or behind a partition that left its connection open) would
    hold the request for ever, and one waiting on a lock would keep waiting (deadline.py).
    Options of the SQLite store (``synchronous`` …) are refused here: durability is the
    server's ``synchronous_commit``, on by default.
    """

    finds_stored_dedupe_ids = False  # its dedupe keys do not name the event: the journal indexes them

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int | None = None,
        writers: int | None = None,
        connect_timeout_s: float = 10.0,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        url, given = split_options(url)  # the keyword arguments win over the URL's parameters
        schema = schema if schema is not None else given.get("schema")
        pool_size = pool_size if pool_size is not None else given.get("pool_size", 8)
        writers = writers if writers is not None else given.get("writers", 2)
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(
                f"schema {schema!r}: use lower-case letters, digits and _, not starting with a digit, "
                "at most 63 characters (capigate_eu)"
            )
        if pool_size < 1 or writers < 1 or min(connect_timeout_s, answer_timeout_s, read_timeout_s) <= 0:
            raise ValueError("pool_size and writers must be >= 1, the timeouts > 0")
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        self.writers = writers
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        try:
            given = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"{_redact(url)}: not a valid PostgreSQL URL: {exc}") from None
        # JIT compiles plans for 100+ ms when a statement looks costly, as a group-commit
        # INSERT of thousands of rows does; capigate's statements never gain from it.
        # A transaction whose client vanished (a network partition) would hold its row locks
        # until TCP gave up, hours later: the retry of its writes (the same journal entries,
        # a client resending the same dedupe_id) would wait on its uncommitted keys that long.
        # PostgreSQL times only a wait after a Sync, though: a writer's group waits for its
        # statements' results (a Flush) before it sends COMMIT, and a partition there leaves a
        # transaction no timer ends; the end of its connection does (writer.py cuts one that
        # stops answering, so that the server hears of it when the network lets it).
        options = [
            str(given.get("options") or ""),
            "-c jit=off",
            f"-c idle_in_transaction_session_timeout={_IDLE_IN_TRANSACTION_MS}",
        ]
        if schema is not None:
            options.append(f"-c search_path={schema}")
        self._kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout_s)),
            "options": " ".join(o for o in options if o),
            "application_name": given.get("application_name") or "capigate",
        }
        self._writer = Writer(self._connect_writer, self.node, writers, answer_timeout_s)
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._opened = False

    def __repr__(self) -> str:
        return f"PostgresStore({_redact(self.url)!r}, schema={self.schema!r})"

    @property
    def location(self) -> str:
        """The URL without its password, and the schema."""
        return _redact(self.url) + (f" (schema {self.schema})" if self.schema else "")

    @property
    def stats(self) -> WriterStats:
        live = self._writer.stats
        return WriterStats(groups=live.groups, jobs=live.jobs)

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, then start the pool and the writers."""
        if self._opened:
            raise StoreError("this store was already opened; create a new PostgresStore")
        self._opened = True
        await self.migrate()
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self.url,
            kwargs={**self._kwargs, "autocommit": True},
            min_size=1,
            max_size=self.pool_size,
            open=False,
            name="capigate",
            timeout=self._connect_timeout_s,
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout_s)
            await self._writer.start()
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, psycopg.Error):
                raise store_error(exc) from exc
            raise
        self._pool = pool

    async def schema_status(self) -> SchemaStatus:
        version = await self.schema_version()
        pending = [(m.version, m.description) for m in schema.MIGRATIONS if m.version > version]
        return SchemaStatus(self.location, version, schema.SCHEMA_VERSION, pending)

    async def schema_version(self) -> int:
        """The database's schema version (0: none yet), read without changing anything."""
        conn = await self._connect()
        try:
            if self.schema is not None:
                found = await (await conn.execute("SELECT to_regnamespace(%s)", (self.schema,))).fetchone()
                if found is None or found[0] is None:
                    return 0
            return await schema.read_version(conn)
        except psycopg.Error as exc:
            raise store_error(exc) from exc
        finally:
            await conn.close()

    async def migrate(self) -> None:
        """Create the schema if missing and apply the pending steps. ``open()`` does this
        first; it needs no open store."""
        conn = await self._connect()
        try:
            if self.schema is not None:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await schema.apply_pending(conn)
        except psycopg.Error as exc:
            raise store_error(exc) from exc
        finally:
            await conn.close()

    async def close(self) -> None:
        """Finish every write queued so far, then close the connections. Safe to call twice."""
        await self._writer.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _connect(self, *, autocommit: bool = True) -> Connection:
        try:
            return await psycopg.AsyncConnection.connect(self.url, autocommit=autocommit, **self._kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {_redact(self.url)}: {exc}".strip()) from exc

    async def _connect_writer(self) -> Connection:
        return await self._connect(autocommit=False)

    # --- writes -------------------------------------------------------------------------

    async def ingest(self, events: Sequence[NewEvent], *, request_id: str, received_at_ms: int) -> IngestResult:
        batch = list(events)  # the caller may reuse its list while the job waits
        check_payloads(batch)
        result: IngestResult = await self._writer.submit(
            IngestJob(self._writer.future(), batch, request_id, received_at_ms)
        )
        return result

    async def record_requests(self, records: Sequence[RequestRecord]) -> None:
        # The writer groups these jobs into one pipelined transaction already.
        await asyncio.gather(*(self._writer.submit(RecordJob(self._writer.future(), r)) for r in records))

    async def check_writable(self) -> None:
        await self._writer.submit(ProbeJob(self._writer.future()))

    async def put_session(self, key: str, expires_at_ms: int, now_ms: int) -> None:
        await self._with_conn(lambda conn: sessions.put(conn, key, expires_at_ms, now_ms))

    async def session_expires_at(self, key: str) -> int | None:
        return await self._with_conn(lambda conn: sessions.expires_at(conn, key))

    async def end_session(self, key: str) -> None:
        await self._with_conn(lambda conn: sessions.end(conn, key))

    async def prune(self, now_ms: int, retention: Retention) -> PruneResult:
        """One node prunes at a time; the others skip (and report nothing pruned). A chunk
        per transaction (prune.py), each within ``read_timeout_s``."""
        try:
            return await prune.prune(self._bounded_connection, now_ms, retention)
        except psycopg.Error as exc:
            raise store_error(exc) from exc

    # --- reads --------------------------------------------------------------------------

    async def query_events(self, query: EventQuery) -> tuple[list[StoredEvent], int | None]:
        sql, params = events_sql(query)
        return await self._page(sql, params, query.limit, stored_event)

    async def query_requests(self, query: RequestQuery) -> tuple[list[RequestView], int | None]:
        sql, params = requests_sql(query)
        return await self._page(sql, params, query.limit, request_view)

    async def _page(
        self, sql: str, params: list[Any], limit: int, convert: Callable[[Any], T]
    ) -> tuple[list[T], int | None]:
        """The SELECT asks for limit+1 rows: getting one more means another page exists."""

        async def run(conn: Connection) -> list[TupleRow]:
            return await (await conn.execute(sql, params)).fetchall()

        return page(await self._with_conn(run), limit, convert)

    def _opened_pool(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    async def _with_conn(self, fn: Callable[[Connection], Awaitable[T]]) -> T:
        """``fn`` on a pooled connection, within ``read_timeout_s``."""
        pool = self._opened_pool()
        try:
            async with pool.connection() as conn:
                return await self._answered(conn, fn(conn))
        except psycopg.Error as exc:
            raise store_error(exc) from exc

    async def _answered(self, conn: Connection, work: Awaitable[T]) -> T:
        """``work``, with its statement cancelled on the server and ``conn`` severed if it gets
        no answer in time (deadline.py): its read then fails, and the pool drops the closed
        connection rather than lend it again. One warning says so (psycopg.pool's own about
        discarding that connection is dropped: deadline.py)."""
        async with Deadline(conn, self._read_timeout_s) as deadline:
            try:
                return await work
            except psycopg.Error:
                if not deadline.expired:
                    raise
        raise self._unanswered(deadline)

    @asynccontextmanager
    async def _bounded_connection(self) -> AsyncIterator[Connection]:
        """A pooled connection for one transaction of the prune, which ``read_timeout_s``
        bounds as ``_answered`` does a read: a chunk is a few thousand rows, so one waiting
        longer waits on a lock (an operator's session) or for a server that is gone."""
        unanswered = False
        async with self._opened_pool().connection() as conn, Deadline(conn, self._read_timeout_s) as deadline:
            try:
                yield conn
            except psycopg.Error:
                if not deadline.expired:
                    raise
                unanswered = True
        if unanswered:
            raise self._unanswered(deadline, "prune transaction")

    def _unanswered(self, deadline: Deadline, what: str = "read") -> StoreError:
        log.warning(
            "a PostgreSQL %s got no answer within %g s ([store] read_timeout_s): %s, its connection dropped",
            what,
            self._read_timeout_s,
            "cancelled on the server" if deadline.cancelled else "not cancelled on the server",
        )
        return StoreError(f"PostgreSQL did not answer within {self._read_timeout_s:g} s ([store] read_timeout_s)")

    # --- relay outbox and statistics (outbox.py) ----------------------------------------

    async def claim(self, destination: str, *, owner: str, limit: int, now_ms: int, lease_ms: int) -> list[Delivery]:
        return await self._with_conn(lambda c: outbox.claim(c, destination, owner, limit, now_ms, lease_ms))

    async def settle(self, outcomes: Sequence[AttemptOutcome], *, owner: str) -> None:
        if outcomes:
            batch = list(outcomes)
            await self._with_conn(lambda c: outbox.settle(c, batch, owner))

    async def release(self, *, owner: str) -> int:
        return await self._with_conn(lambda c: outbox.release(c, owner))

    async def replay(self, query: DeadLetterQuery, *, now_ms: int) -> int:
        return await self._with_conn(lambda c: outbox.replay(c, query, now_ms))

    async def replayed_since(self, destination: str, since_ms: int) -> bool:
        return await self._with_conn(lambda c: outbox.replayed_since(c, destination, since_ms))

    async def query_attempts(self, event_id: int) -> list[DeliveryAttempt]:
        return await self._with_conn(lambda c: outbox.query_attempts(c, event_id))

    async def outbox_depths(self) -> list[OutboxDepth]:
        return await self._with_conn(outbox.outbox_depths)

    async def query_stats(
        self, source: str | None, *, since_ms: int, until_ms: int, bucket_ms: int
    ) -> list[StatsBucket]:
        if bucket_ms < 1:
            raise ValueError("bucket_ms must be at least 1")
        return await self._with_conn(lambda c: query_stats(c, source, since_ms, until_ms, bucket_ms))

    async def query_request(self, request_id: str) -> tuple[RequestView, bytes | None, list[tuple[str, str]]] | None:
        return await self._with_conn(lambda c: inspector.query_request(c, request_id))

    async def query_quality(self, source: str | None, *, since_ms: int, until_ms: int) -> list[QualityRow]:
        return await self._with_conn(lambda c: inspector.query_quality(c, source, since_ms, until_ms))
