"""A PostgreSQL read that the server never answers (its backend stopped, or a connection a
partition left open and silent) fails after [store] read_timeout_s: the admin API answers 503
saying so instead of holding the request for ever, and the next read takes a new connection.
Writes have had their answer timeout (test_journal_partition.py); the read pool had none.

A statement that times out while the server is still there (waiting on a lock another
connection holds) is cancelled on the server, not only abandoned: a severed connection alone
left its backend waiting, holding its locks and a connection slot, until the lock was released."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from capigate.errors import StoreError
from capigate.store import EventQuery, IngestResult, NewEvent, PostgresStore
from capigate.store.postgres.deadline import CANCEL_TIMEOUT_S
from tests.conftest import DEFAULT_CONFIG, make_server
from tests.helpers import batch, purchase
from tests.ops.partition import partition
from tests.storekit import PG_URL, close_loop, pg_schema, run

pytestmark = pytest.mark.postgresql  # scripts/test-fast leaves it out: it needs the server

READ_TIMEOUT_S = 2.0
CONFIG = DEFAULT_CONFIG + f"\n[store]\nread_timeout_s = {READ_TIMEOUT_S:g}\n"
# Only query_events sends this: the read that goes unanswered, not the writers' statements.
EVENTS_READ = b"FROM events e LEFT JOIN LATERAL"
TIMED_OUT_READ = "a PostgreSQL read got no answer within"  # capigate's warning, once per read


def test_a_read_the_server_never_answers_is_a_503_saying_so_and_the_next_read_answers(tmp_path: Path) -> None:
    with pg_schema() as schema, partition(("127.0.0.1", 5432)) as network:
        server = make_server(tmp_path / "gw", CONFIG)
        server.db = f"postgresql://postgres@127.0.0.1:{network.port}/test?schema={schema}"
        server.start()
        try:
            with server.client() as client:
                stored = client.post(
                    "/v1/event?pixel_id=px_std", json=batch(purchase()), headers={"Authorization": "key-std"}
                )
            assert stored.status_code == 200, stored.text
            network.silence_before(EVENTS_READ)
            started = time.monotonic()
            with server.admin() as admin:
                answer = admin.get("/api/events", timeout=READ_TIMEOUT_S + 20)
            took_s = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["error"] == "store_unavailable", body
            assert f"PostgreSQL did not answer within {READ_TIMEOUT_S:g} s" in body["message"], body
            assert READ_TIMEOUT_S <= took_s < READ_TIMEOUT_S + 5, took_s
            with server.admin() as admin:
                again = admin.get("/api/events", timeout=10)
            assert again.status_code == 200, again.text
            assert len(again.json()["events"]) == 1
        finally:
            server.stop()
    log = server.output()
    assert log.count(TIMED_OUT_READ) == 1, log
    assert "discarding closed connection" not in log, log  # psycopg.pool's, for the connection we severed


# --- a statement waiting on a lock: cancelled on the server ---------------------------------

LOCK_TIMEOUT_S = 0.5  # the store's read and answer timeouts while a table is locked
T0 = 1_700_000_000_000
Conn = psycopg.AsyncConnection[tuple[Any, ...]]


class Locked:
    """A table of the store's schema held in ACCESS EXCLUSIVE mode by a transaction of the
    test's own, and a connection that watches the store's backends (application_name: the
    schema's name) in pg_stat_activity."""

    def __init__(self, schema: str, holder: Conn, watcher: Conn) -> None:
        self.schema, self.holder, self.watcher = schema, holder, watcher

    async def waiting(self) -> int:
        """How many of the store's backends wait on the lock."""
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND %s = ANY(pg_blocking_pids(pid))"
        row = await (await self.watcher.execute(sql, (self.schema, self.holder.info.backend_pid))).fetchone()
        assert row is not None
        return int(row[0])

    async def settles(self, count: int, within_s: float) -> int:
        """Polls until ``count`` of the store's backends wait on the lock, or the time is up."""
        deadline = time.monotonic() + within_s
        while (found := await self.waiting()) != count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return found

    async def times_out(self, call: Awaitable[object]) -> tuple[str, float, int]:
        """``call``, which must wait on the lock and fail: its error, the seconds it took, and
        the store's backends still waiting on the lock (held all along) a few seconds later."""
        started = time.monotonic()
        pending = asyncio.ensure_future(call)
        assert await self.settles(1, within_s=LOCK_TIMEOUT_S) == 1, "it never waited on the lock"
        with pytest.raises(StoreError) as failed:
            await asyncio.wait_for(pending, timeout=LOCK_TIMEOUT_S + 10)
        took_s = time.monotonic() - started
        return str(failed.value), took_s, await self.settles(0, within_s=5)

    async def release(self) -> None:
        await self.holder.rollback()

    async def count(self, table: str) -> int:
        row = await (await self.watcher.execute(f'SELECT count(*) FROM "{self.schema}".{table}')).fetchone()
        assert row is not None
        return int(row[0])


@asynccontextmanager
async def locked(schema: str, table: str) -> AsyncIterator[Locked]:
    holder = await psycopg.AsyncConnection.connect(PG_URL, connect_timeout=5)
    watcher = await psycopg.AsyncConnection.connect(PG_URL, autocommit=True, connect_timeout=5)
    try:
        await holder.execute(f'LOCK TABLE "{schema}".{table} IN ACCESS EXCLUSIVE MODE')
        yield Locked(schema, holder, watcher)
    finally:
        await holder.close()  # its transaction, if still open, rolls back: the lock is released
        await watcher.close()


def on_locked_table(table: str, scenario: Callable[[PostgresStore, Locked], Awaitable[None]]) -> None:
    """``scenario`` on a store with short timeouts while ``table`` is locked."""
    with pg_schema() as schema:

        async def locked_store() -> None:
            store = PostgresStore(
                f"{PG_URL}?application_name={schema}", schema=schema, writers=1,
                read_timeout_s=LOCK_TIMEOUT_S, answer_timeout_s=LOCK_TIMEOUT_S,
            )  # fmt: skip
            await store.open()
            try:
                async with locked(schema, table) as lock:
                    await scenario(store, lock)
            finally:
                await asyncio.wait_for(store.close(), timeout=15)

        try:
            run(locked_store())
        finally:
            close_loop()


def test_a_read_waiting_on_a_lock_is_cancelled_on_the_server_when_it_times_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario(store: PostgresStore, lock: Locked) -> None:
        for n in (1, 2):
            error, took_s, left = await lock.times_out(store.query_events(EventQuery()))
            assert f"PostgreSQL did not answer within {LOCK_TIMEOUT_S:g} s ([store] read_timeout_s)" in error
            assert LOCK_TIMEOUT_S <= took_s < LOCK_TIMEOUT_S + 3, took_s
            assert left == 0, "the read's backend still waits on the lock: its statement was not cancelled"
            warned = [r for r in caplog.records if r.getMessage().startswith(TIMED_OUT_READ)]
            assert len(warned) == n, caplog.text
            assert warned[-1].name.startswith("capigate") and warned[-1].levelname == "WARNING"
            assert "cancelled on the server, its connection dropped" in warned[-1].getMessage()
        assert "discarding closed connection" not in caplog.text  # psycopg.pool's, for the connections we severed
        await lock.release()
        assert await store.query_events(EventQuery()) == ([], None)  # a new connection answers

    on_locked_table("events", scenario)


def test_a_write_group_waiting_on_a_lock_is_cancelled_on_the_server_and_never_commits() -> None:
    """The writer's answer timeout cancels the group's statement too. It fails as may or may not
    be stored; here, cancelled before its COMMIT, nothing of it is, and its retry stores the
    event once."""
    new = NewEvent(
        api="axon", source="px1", name="purchase", event_time_ms=T0, dedupe_id="d1",
        payload=msgspec.json.encode({"n": 1}),
    )  # fmt: skip

    async def scenario(store: PostgresStore, lock: Locked) -> None:
        def ingest() -> Awaitable[IngestResult]:
            return store.ingest([new], request_id="r1", received_at_ms=T0)

        error, took_s, left = await lock.times_out(ingest())
        assert "may or may not be stored" in error, error
        assert LOCK_TIMEOUT_S <= took_s < LOCK_TIMEOUT_S + 3, took_s
        assert left == 0, "the writer's backend still waits on the lock: its statement was not cancelled"
        await lock.release()
        await asyncio.sleep(0.5)
        assert await lock.count("events") == 0
        for _ in range(50):  # the writer reconnects after a pause of its own (1 s)
            with contextlib.suppress(StoreError):
                assert (await ingest()).stored == 1
                break
            await asyncio.sleep(0.1)
        assert await lock.count("events") == 1

    on_locked_table("events", scenario)


def test_a_cancel_request_the_partition_never_answers_delays_the_error_by_its_bound_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Behind a partition the cancel request gets no answer either (the proxy holds its
    connection open): it is given CANCEL_TIMEOUT_S, then the read fails all the same."""
    with pg_schema() as schema, partition(("127.0.0.1", 5432)) as network:

        async def scenario() -> tuple[str, float]:
            url = f"postgresql://postgres@127.0.0.1:{network.port}/test"
            store = PostgresStore(url, schema=schema, read_timeout_s=LOCK_TIMEOUT_S, connect_timeout_s=1)
            await store.open()
            try:
                network.cut()
                started = time.monotonic()
                with pytest.raises(StoreError) as failed:
                    await asyncio.wait_for(store.query_events(EventQuery()), timeout=CANCEL_TIMEOUT_S + 10)
                return str(failed.value), time.monotonic() - started
            finally:
                network.heal()
                await asyncio.wait_for(store.close(), timeout=15)

        try:
            error, took_s = run(scenario())
        finally:
            close_loop()
    assert "([store] read_timeout_s)" in error, error
    bound_s = LOCK_TIMEOUT_S + CANCEL_TIMEOUT_S
    assert bound_s - 0.2 <= took_s < bound_s + 2, took_s
    assert "could not cancel a PostgreSQL statement on the server" in caplog.text
