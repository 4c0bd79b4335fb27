"""Journal writes that the network never answers: a partition that leaves the PostgreSQL
writer's connection open and silent for good (test_health_store_outage.py saw it as refusals
never journaled after the heal). The writer gives up on that connection after its answer
timeout and ends it, and the entry that waited in the journal buffer reaches the store, once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psycopg
import pytest

from capigate.http.journal import JournalBuffer
from capigate.store import PostgresStore
from capigate.store.base import RequestRecord
from tests.ops.partition import Partition, partition
from tests.storekit import PG_URL, pg_schema, run

pytestmark = pytest.mark.postgresql  # scripts/test-fast leaves it out: it needs the server

ANSWER_TIMEOUT_S = 2.0


def refused(request_id: str) -> RequestRecord:
    return RequestRecord(
        request_id=request_id, received_at=time.time_ns() // 1_000_000, api="axon", source="px_std",
        method="POST", path="/v1/event", status=503, client_ip=None, user_agent=None, latency_ms=1.0,
    )  # fmt: skip


def on_server(sql: str, *params: object) -> object:
    """One value read past the partition, as an operator's psql would."""
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def journaled(schema: str, request_id: str) -> int:
    return int(str(on_server(f'SELECT count(*) FROM "{schema}".requests WHERE request_id = %s', request_id)))


def open_transactions(app: str) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND xact_start IS NOT NULL"
    return int(str(on_server(sql, app)))


def counted(schema: str) -> int:
    """The requests the journal's per-minute totals count."""
    return int(str(on_server(f'SELECT coalesce(sum(requests), 0) FROM "{schema}".request_minutes')))


def journal_through(partition_at: Callable[[Partition], None]) -> tuple[tuple[int, int], int, float, int, int, bool]:
    """Journals one entry while ``partition_at`` cuts the network; then heals it for new
    connections only. (times journaled and counted in the per-minute totals, transactions left
    open by the cut, seconds from the heal until it was journaled, entries waiting, dropped,
    closed in time)."""
    with pg_schema() as schema, partition(("127.0.0.1", 5432)) as network:
        # the schema's name as the sessions' application_name: told apart from other tests'
        url = f"postgresql://postgres@127.0.0.1:{network.port}/test?application_name={schema}"

        async def scenario() -> tuple[tuple[int, int], int, float, int, int, bool]:
            store = PostgresStore(url, schema=schema, writers=1, connect_timeout_s=1, answer_timeout_s=ANSWER_TIMEOUT_S)
            await store.open()
            journal = JournalBuffer(store)
            journal.start()
            try:
                partition_at(network)
                cut_at = time.monotonic()
                journal.add(refused("r1"))
                await asyncio.sleep(0.5)  # its flush sent the group into the partition
                left_open = await asyncio.to_thread(open_transactions, schema)
                network.heal(drop_held=False)  # new connections pass; the writer's stays silent
                healed = time.monotonic()
                while not await asyncio.to_thread(journaled, schema, "r1"):
                    if time.monotonic() - healed > ANSWER_TIMEOUT_S + 15:
                        break
                    await asyncio.sleep(0.2)
                took_s, waiting, dropped = time.monotonic() - healed, journal.waiting, journal.dropped
                # A write given up on is retried after the answer timeout, a failed flush's pause
                # and a reconnect's: by then a second row of it would be in.
                await asyncio.sleep(max(0.0, cut_at + ANSWER_TIMEOUT_S + 4 - time.monotonic()))
                while journal.waiting and time.monotonic() - healed < ANSWER_TIMEOUT_S + 15:
                    await asyncio.sleep(0.2)
                stored = (await asyncio.to_thread(journaled, schema, "r1"), await asyncio.to_thread(counted, schema))
            finally:  # bounded: a writer stuck on the silent connection would hold close() forever
                _, stuck = await asyncio.wait(
                    {asyncio.ensure_future(journal.stop()), asyncio.ensure_future(store.close())}, timeout=10
                )
            return stored, left_open, took_s, waiting, dropped, not stuck

        return run(scenario())


def test_a_journal_write_the_partition_never_answers_is_written_on_a_new_connection() -> None:
    count, left_open, took_s, waiting, dropped, closed = journal_through(Partition.cut)
    assert (count, left_open, waiting, dropped, closed) == ((1, 1), 0, 0, 0, True)
    # the answer timeout, a failed flush's pause (1 s) and a reconnect (1 s pause): not much more
    assert took_s < ANSWER_TIMEOUT_S + 5, took_s


def test_a_transaction_the_partition_leaves_open_lets_the_journal_entry_through() -> None:
    """Cut as the writer sends COMMIT: PostgreSQL holds the entry's rows uncommitted, in
    mid-pipeline where idle_in_transaction_session_timeout does not apply. Giving up on the
    connection is not enough: the retry would wait on those rows; the writer ends it."""
    count, left_open, took_s, waiting, dropped, closed = journal_through(lambda p: p.cut_before(b"COMMIT"))
    assert (count, left_open, waiting, dropped, closed) == ((1, 1), 1, 0, 0, True)
    assert took_s < ANSWER_TIMEOUT_S + 5, took_s


def test_a_journal_write_whose_commit_answer_is_lost_is_journaled_once() -> None:
    """Cut once COMMIT has reached the server: the entry is committed, and the writer, which
    never hears so, fails it as may-or-may-not-be-stored. The journal writes it again on a new
    connection: the request id is journaled once (it was twice), counted once in the totals."""
    count, left_open, _, waiting, dropped, closed = journal_through(lambda p: p.cut_after(b"COMMIT"))
    assert (count, left_open, waiting, dropped, closed) == ((1, 1), 0, 0, 0, True)
