"""The SQLite store: one writer thread with group commit (writer.py), concurrent read-only
readers (queries.py), on one file shared safely with other processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

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
    cutoff_ms,
)
from capigate.store.sql import page, request_view, stored_event
from capigate.store.sqlite import inspector, outbox, sessions
from capigate.store.sqlite import prune as pruning
from capigate.store.sqlite.checkpoint import Checkpointer
from capigate.store.sqlite.ingest import Batch, probe
from capigate.store.sqlite.jobs import Call, IngestJob, RecordJob
from capigate.store.sqlite.queries import Readers, events_sql, query_stats, requests_sql
from capigate.store.sqlite.schema import (
    SCHEMA_VERSION,
    SYNCHRONOUS_MODES,
    check_sqlite_path,
    pending_steps,
    read_version,
)
from capigate.store.sqlite.writer import Writer
from capigate.store.sqlite.writer_process import ProcessWriter

__all__ = ["SQLiteStore"]


class SQLiteStore:
    """The ``Store`` on one SQLite file, shared safely with other processes (WAL, busy_timeout).

    ``synchronous="FULL"`` (the default) makes every acknowledged write survive power loss;
    ``"NORMAL"`` survives a crash of the process but may lose the last commits on power loss.
    """

    finds_stored_dedupe_ids = True  # its dedupe keys name the event (queries.requests_sql)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        read_connections: int = 4,
        process_lock: bool = True,
        writer_process: bool = False,
    ) -> None:
        """``process_lock=False`` leaves out the lock file that queues the writers of several
        processes (lock.py): they then wait in SQLite's busy handler, as before it.
        ``writer_process=True`` runs the writer in a child process (writer_process.py) rather
        than a thread: the gateway's event loop then has its core to itself."""
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        if busy_timeout_ms < 0 or read_connections < 1:
            raise ValueError("busy_timeout_ms must be >= 0 and read_connections >= 1")
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        writer = ProcessWriter if writer_process else Writer
        self._writer: Writer | ProcessWriter = writer(self.path, synchronous, busy_timeout_ms, process_lock)
        self._readers = Readers(self.path, read_connections, busy_timeout_ms)
        self._checkpointer = Checkpointer(self.path, synchronous)
        self._opened = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, synchronous={self.synchronous!r})"

    @property
    def stats(self) -> WriterStats:
        live = self._writer.stats
        return WriterStats(groups=live.groups, jobs=live.jobs)

    async def schema_status(self) -> SchemaStatus:
        check_sqlite_path(self.path)
        version = await asyncio.to_thread(read_version, self.path)
        return SchemaStatus(str(self.path), version, SCHEMA_VERSION, pending_steps(version))

    async def migrate(self) -> None:
        writer = Writer(self.path, self.synchronous, self.busy_timeout_ms, process_lock=True)
        await writer.start()  # its connection applies the pending steps
        await writer.stop()

    async def open(self) -> None:
        if self._opened:
            raise StoreError("this store was already opened; create a new SQLiteStore")
        self._opened = True
        await self._writer.start()
        try:
            await self._readers.open()
            self._checkpointer.start()
        except BaseException:
            await self._readers.close()
            await self._writer.stop()
            raise

    async def close(self) -> None:
        """Finish every write queued so far, then release the file. Safe to call twice.

        The writer's connection closes last: the last connection to a WAL database copies the
        WAL back and deletes it and the -shm file, which a read-only one cannot do (a reader
        that has read holds its lock until it closes)."""
        await asyncio.to_thread(self._checkpointer.stop)
        await self._readers.close()
        await self._writer.stop()

    async def ingest(self, events: Sequence[NewEvent], *, request_id: str, received_at_ms: int) -> IngestResult:
        batch = Batch(list(events), request_id, received_at_ms)  # the caller may reuse its list
        return await self._writer.submit(IngestJob(batch), batch)

    async def record_requests(self, records: Sequence[RequestRecord]) -> None:
        records = list(records)  # the caller may reuse its list
        await self._writer.submit(RecordJob(records))

    async def prune(self, now_ms: int, retention: Retention) -> PruneResult:
        """The dedupe keys, the journal, the match-key rollups, the events and the attempts,
        a chunk per job (prune.py): the ingests queued meanwhile wait for one chunk."""
        result = PruneResult(dedupe_keys=0, requests=0, events=0)
        keys_before = cutoff_ms(now_ms, retention.dedupe_days)
        result.dedupe_keys = await self._prune_chunks(pruning.prune_keys, keys_before)
        journal_before = cutoff_ms(now_ms, retention.journal_days)
        result.requests = await self._prune_chunks(pruning.prune_journal, journal_before)
        last = await self._readers.run(partial(pruning.journal_over, max_rows=retention.journal_max_rows))
        if last is not None:
            result.requests += await self._prune_chunks(pruning.prune_over, last, journal_before)
        before = cutoff_ms(now_ms, retention.event_days)
        if before == 0:  # kept for ever
            return result
        await self._prune_chunks(pruning.prune_rollups, before)
        after: pruning.EventCursor | None = pruning.START
        while after is not None:
            deleted, after = await self._writer.submit(
                partial(pruning.prune_events, before_ms=before, after=after, keys_before=keys_before)
            )
            result.events += deleted
        kept = await self._readers.run(partial(pruning.kept_attempts, before_ms=before))
        next_id: int | None = 0
        while next_id is not None:
            next_id = await self._writer.submit(
                partial(pruning.prune_attempts, before_ms=before, after_id=next_id, kept=kept)
            )
        return result

    async def _prune_chunks(self, job: Callable[..., pruning.Chunk], *args: int) -> int:
        """Submits ``job(cur, *args)`` until it is done; the rows it deleted."""
        deleted, done = 0, False
        while not done:
            n, done = await self._writer.submit(Call(job, *args))
            deleted += n
        return deleted

    async def check_writable(self) -> None:
        await self._writer.submit(Call(probe))

    async def put_session(self, key: str, expires_at_ms: int, now_ms: int) -> None:
        await self._writer.submit(Call(sessions.put, key, expires_at_ms, now_ms))

    async def session_expires_at(self, key: str) -> int | None:
        return await self._readers.run(lambda conn: sessions.expires_at(conn, key))

    async def end_session(self, key: str) -> None:
        await self._writer.submit(Call(sessions.end, key))

    async def query_events(self, query: EventQuery) -> tuple[list[StoredEvent], int | None]:
        sql, params = events_sql(query)
        return await self._readers.run(
            lambda conn: page(conn.execute(sql, params).fetchall(), query.limit, stored_event)
        )

    async def query_requests(self, query: RequestQuery) -> tuple[list[RequestView], int | None]:
        sql, params = requests_sql(query)
        return await self._readers.run(
            lambda conn: page(conn.execute(sql, params).fetchall(), query.limit, request_view)
        )

    async def query_stats(
        self, source: str | None, *, since_ms: int, until_ms: int, bucket_ms: int
    ) -> list[StatsBucket]:
        if bucket_ms < 1:
            raise ValueError("bucket_ms must be at least 1")
        return await self._readers.run(lambda conn: query_stats(conn, source, since_ms, until_ms, bucket_ms))

    async def query_request(self, request_id: str) -> tuple[RequestView, bytes | None, list[tuple[str, str]]] | None:
        return await self._readers.run(lambda conn: inspector.query_request(conn, request_id))

    async def query_quality(self, source: str | None, *, since_ms: int, until_ms: int) -> list[QualityRow]:
        return await self._readers.run(lambda conn: inspector.query_quality(conn, source, since_ms, until_ms))

    # --- relay outbox (outbox.py) ---------------------------------------------------

    async def claim(self, destination: str, *, owner: str, limit: int, now_ms: int, lease_ms: int) -> list[Delivery]:
        return await self._writer.submit(Call(outbox.claim, destination, owner, limit, now_ms, lease_ms))

    async def settle(self, outcomes: Sequence[AttemptOutcome], *, owner: str) -> None:
        if outcomes:
            batch = list(outcomes)
            await self._writer.submit(Call(outbox.settle, batch, owner))

    async def release(self, *, owner: str) -> int:
        return await self._writer.submit(Call(outbox.release, owner))

    async def replay(self, query: DeadLetterQuery, *, now_ms: int) -> int:
        return await self._writer.submit(Call(outbox.replay, query, now_ms))

    async def replayed_since(self, destination: str, since_ms: int) -> bool:
        return await self._readers.run(lambda conn: outbox.replayed_since(conn, destination, since_ms))

    async def query_attempts(self, event_id: int) -> list[DeliveryAttempt]:
        return await self._readers.run(lambda conn: outbox.query_attempts(conn, event_id))

    async def outbox_depths(self) -> list[OutboxDepth]:
        return await self._readers.run(outbox.outbox_depths)
