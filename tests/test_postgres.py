"""What is particular to the PostgreSQL store: schema versions, several nodes (stores) on one
schema at once, leases under contention, lost connections, and the plans of its queries.

The Store contract itself runs against PostgreSQL in test_store.py (parametrised backends).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from click.testing import CliRunner

from capigate.cli import main
from capigate.config import write_default_config
from capigate.errors import StoreError
from capigate.store import (
    AttemptOutcome,
    EventQuery,
    NewEvent,
    PostgresStore,
    RequestQuery,
    RequestRecord,
    open_store,
)
from capigate.store import postgres as pg
from capigate.store.postgres import inspector as pg_inspector
from capigate.store.postgres import outbox as pg_outbox
from capigate.store.postgres import queries as pg_queries
from capigate.store.postgres import schema as pg_schema
from capigate.store.postgres import split_options
from tests.storekit import PG_URL, close_loop, run

T0 = 1_700_000_000_000
DEST = "http://127.0.0.1:9/upstream"


def new_store(schema: str, **kw: Any) -> PostgresStore:
    return PostgresStore(PG_URL, schema=schema, **kw)


def event(n: int, *, dedupe_id: str | None = None, destination: str | None = None, **kw: Any) -> NewEvent:
    return NewEvent(
        api="axon",
        source=kw.pop("source", "px1"),
        name=kw.pop("name", "purchase"),
        event_time_ms=kw.pop("event_time_ms", T0 + n),
        dedupe_id=dedupe_id,
        payload=msgspec.json.encode({"n": n}),
        destination=destination,
        **kw,
    )


def init(schema: str) -> None:
    """Create the tables, as a node's first start does."""
    store = new_store(schema)
    run(store.open())
    run(store.close())


def sql(schema: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


# --- schema versions --------------------------------------------------------------------


def test_open_creates_the_schema_and_records_each_migration_step(schema: str) -> None:
    store = new_store(schema)
    run(store.open())
    run(store.close())
    rows = sql(schema, "SELECT version, description FROM capigate_schema ORDER BY version")
    assert [v for v, _ in rows] == [m.version for m in pg_schema.MIGRATIONS]
    assert rows[-1][0] == pg_schema.SCHEMA_VERSION
    tables = {r[0] for r in sql(schema, "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))}
    assert {"events", "dedupe_keys", "requests", "outbox", "attempts", "capigate_schema"} <= tables


def test_nodes_opening_together_migrate_once(schema: str) -> None:
    async def scenario() -> None:
        stores = [new_store(schema) for _ in range(4)]
        await asyncio.gather(*(s.open() for s in stores))
        await asyncio.gather(*(s.close() for s in stores))

    run(scenario())
    assert sql(schema, "SELECT count(*) FROM capigate_schema") == [(len(pg_schema.MIGRATIONS),)]


def test_a_node_refuses_a_database_with_a_newer_schema(schema: str) -> None:
    init(schema)
    future = pg_schema.SCHEMA_VERSION + 1
    sql(schema, "INSERT INTO capigate_schema VALUES (%s, 'from the future', 0)", (future,))
    store = new_store(schema)
    with pytest.raises(StoreError, match=f"schema version {future}; this capigate knows up to"):
        run(store.open())
    run(store.close())


def test_the_schema_option_can_come_from_the_url(schema: str) -> None:
    store = open_store(f"{PG_URL}?schema={schema}", synchronous="FULL")
    run(store.open())
    try:
        run(store.ingest([event(1)], request_id="r", received_at_ms=T0))
    finally:
        run(store.close())
    assert sql(schema, "SELECT count(*) FROM events") == [(1,)]


def test_capigate_options_come_out_of_the_url_and_libpq_parameters_stay() -> None:
    assert split_options("postgresql://u@h/db") == ("postgresql://u@h/db", {})
    url = "postgresql://u@h/db?sslmode=require&schema=a&writers=3&pool_size=4&connect_timeout=3"
    assert split_options(url) == (
        "postgresql://u@h/db?sslmode=require&connect_timeout=3",
        {"schema": "a", "writers": 3, "pool_size": 4},
    )
    store = PostgresStore(url, pool_size=5)  # a keyword argument wins over the URL
    assert (store.schema, store.pool_size, store.writers) == ("a", 5, 3)


@pytest.mark.parametrize("value", ["0", "two", ""])
def test_a_wrong_number_in_the_url_is_a_store_error(value: str) -> None:
    with pytest.raises(StoreError, match=f"writers must be a whole number >= 1, not '{value}'"):
        PostgresStore(f"postgresql://u:pw@h/db?writers={value}")


@pytest.mark.parametrize("name", ["Caps", "a-b", "a;drop", "", "x" * 64])
def test_a_schema_name_must_be_a_plain_identifier(name: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresStore(PG_URL, schema=name)


def test_an_unreachable_server_is_a_store_error_naming_it() -> None:
    store = PostgresStore("postgresql://postgres:pw@127.0.0.1:1/test", connect_timeout_s=2)
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at postgresql://postgres:\*\*\*@127.0.0.1:1"):
        run(store.open())
    run(store.close())
    close_loop()


# --- several nodes on one schema --------------------------------------------------------


def test_duplicates_sent_to_two_nodes_at_the_same_instant_are_stored_once(schema: str) -> None:
    async def scenario() -> list[tuple[int, int]]:
        a, b = new_store(schema), new_store(schema)
        await asyncio.gather(a.open(), b.open())
        try:
            totals = []
            for round_ in range(50):
                # The same 20 keys in opposite orders on the two nodes, plus one key of each.
                keys = [f"k{round_}-{i}" for i in range(20)]
                batch_a = [event(i, dedupe_id=k) for i, k in enumerate(keys)] + [event(99, dedupe_id=f"a{round_}")]
                batch_b = [event(i, dedupe_id=k) for i, k in enumerate(reversed(keys))]
                batch_b.append(event(99, dedupe_id=f"b{round_}"))
                ra, rb = await asyncio.gather(
                    a.ingest(batch_a, request_id="a", received_at_ms=T0),
                    b.ingest(batch_b, request_id="b", received_at_ms=T0),
                )
                totals.append((ra.stored + rb.stored, len(ra.duplicates) + len(rb.duplicates)))
            return totals
        finally:
            await asyncio.gather(a.close(), b.close())

    assert run(scenario()) == [(22, 20)] * 50
    assert sql(schema, "SELECT count(*), count(DISTINCT dedupe_id) FROM events") == [(50 * 22, 50 * 22)]


def test_each_node_sees_the_events_and_journal_of_the_others(schema: str) -> None:
    async def scenario() -> tuple[list[int], list[str]]:
        a, b = new_store(schema), new_store(schema)
        await asyncio.gather(a.open(), b.open())
        try:
            await a.ingest([event(1)], request_id="ra", received_at_ms=T0)
            await b.ingest([event(2)], request_id="rb", received_at_ms=T0 + 1)
            await b.record_requests([journal("rb")])
            await a.record_requests([journal("ra")])
            events, _ = await a.query_events(EventQuery())
            requests, _ = await b.query_requests(RequestQuery())
            return [e.payload["n"] for e in events], [r.request_id for r in requests]
        finally:
            await asyncio.gather(a.close(), b.close())

    assert run(scenario()) == ([2, 1], ["ra", "rb"])


def journal(request_id: str) -> RequestRecord:
    return RequestRecord(
        request_id=request_id, received_at=T0, api="axon", source="px1", method="POST", path="/v1/event",
        status=200, client_ip=None, user_agent=None, latency_ms=1.0,
    )  # fmt: skip


def test_concurrent_claims_from_two_nodes_never_lease_one_delivery_twice(schema: str) -> None:
    async def scenario() -> list[list[int]]:
        a, b = new_store(schema), new_store(schema)
        await asyncio.gather(a.open(), b.open())
        try:
            await a.ingest([event(i, destination=DEST) for i in range(500)], request_id="r", received_at_ms=T0)

            async def claimer(store: PostgresStore, owner: str) -> list[list[int]]:
                batches: list[list[int]] = []
                while batch := await store.claim(DEST, owner=owner, limit=7, now_ms=T0 + 1, lease_ms=60_000):
                    batches.append([d.event_id for d in batch])
                return batches

            claimers = await asyncio.gather(*(claimer(s, f"{s is a}-{i}") for s in (a, b) for i in range(4)))
            return [batch for batches in claimers for batch in batches]
        finally:
            await asyncio.gather(a.close(), b.close())

    batches = run(scenario())
    every = [i for batch in batches for i in batch]
    assert len(every) == len(set(every)) == 500
    # Oldest event first within each claim. Across one claimer's claims, not: the 500 events
    # fill four id blocks (ID_BLOCK), four runs, and a claimer that skipped a run another held
    # (SKIP LOCKED) takes a later one, then the older rest of the first (seen in a CI run).
    assert all(batch == sorted(batch) for batch in batches)


def test_a_lease_that_expires_is_taken_over_and_the_old_owner_cannot_settle_it(schema: str) -> None:
    async def scenario() -> None:
        a, b = new_store(schema), new_store(schema)
        await asyncio.gather(a.open(), b.open())
        try:
            await a.ingest([event(1, destination=DEST)], request_id="r", received_at_ms=T0)
            [leased] = await a.claim(DEST, owner="dead-node", limit=10, now_ms=T0, lease_ms=30_000)
            assert await b.claim(DEST, owner="b", limit=10, now_ms=T0 + 29_999, lease_ms=30_000) == []
            [taken] = await b.claim(DEST, owner="b", limit=10, now_ms=T0 + 30_000, lease_ms=30_000)
            assert (taken.event_id, taken.attempts) == (leased.event_id, 0)
            late = AttemptOutcome(event_id=leased.event_id, destination=DEST, at_ms=T0 + 31_000, result="dead")
            await a.settle([late], owner="dead-node")  # recorded, but the lease is b's now
            done = AttemptOutcome(
                event_id=leased.event_id, destination=DEST, at_ms=T0 + 32_000, result="delivered", status=200
            )
            await b.settle([done], owner="b")
            [stored], _ = await a.query_events(EventQuery())
            assert stored.status == "delivered"
            attempts = await b.query_attempts(leased.event_id)
            assert [t.result for t in attempts] == ["dead", "delivered"]
            [depth] = await a.outbox_depths()
            assert (depth.pending, depth.dead, depth.delivered) == (0, 0, 1)
        finally:
            await asyncio.gather(a.close(), b.close())

    run(scenario())


def test_two_settles_queued_on_one_run_each_move_their_half(schema: str) -> None:
    """Both halves of one run are settled at once, queued behind a lock on it: the first cuts
    the run and commits; the second must read the run again, find its half, and move it."""

    async def scenario() -> None:
        a, b = new_store(schema), new_store(schema)
        await asyncio.gather(a.open(), b.open())
        try:
            await a.ingest([event(i, destination=DEST) for i in range(10)], request_id="r", received_at_ms=T0)
            leased = await a.claim(DEST, owner="o", limit=10, now_ms=T0, lease_ms=60_000)
            assert sql(schema, "SELECT count(*) FROM outbox") == [(1,)]  # one run
            halves = [[d.event_id for d in leased[:5]], [d.event_id for d in leased[5:]]]
            done = [
                [
                    AttemptOutcome(event_id=i, destination=DEST, at_ms=T0 + 1, result="delivered", status=200)
                    for i in halves[0]
                ],
                [
                    AttemptOutcome(event_id=i, destination=DEST, at_ms=T0 + 1, result="dead", status=400)
                    for i in halves[1]
                ],
            ]
            holding = psycopg.AsyncConnection.connect(PG_URL, options=f"-c search_path={schema}")
            async with await holding as holder:
                await holder.execute("SELECT 1 FROM outbox FOR UPDATE")
                settles = [asyncio.ensure_future(s.settle(o, owner="o")) for s, o in zip((a, b), done, strict=True)]
                await asyncio.sleep(0.5)  # both wait for the lock now
                await holder.rollback()
                await asyncio.gather(*settles)
            states = {e.id: e.status for e in (await a.query_events(EventQuery()))[0]}
            assert [states[i] for i in halves[0]] == ["delivered"] * 5
            assert [states[i] for i in halves[1]] == ["dead"] * 5
            [depth] = await a.outbox_depths()
            assert (depth.pending, depth.delivered, depth.dead) == (0, 5, 5)
        finally:
            await asyncio.gather(a.close(), b.close())

    run(scenario())


# --- failures ----------------------------------------------------------------------------


def test_a_job_the_database_refuses_fails_alone_in_its_group(schema: str) -> None:
    async def scenario() -> list[Any]:
        store = new_store(schema)
        await store.open()
        try:
            return list(
                await asyncio.gather(
                    store.ingest([event(1, dedupe_id="a")], request_id="r1", received_at_ms=T0),
                    store.ingest([event(2, dedupe_id="b", event_time_ms=2**70)], request_id="r2", received_at_ms=T0),
                    store.ingest([event(3, dedupe_id="c")], request_id="r3", received_at_ms=T0),
                    return_exceptions=True,
                )
            )
        finally:
            await store.close()

    first, failed, third = run(scenario())
    assert isinstance(failed, StoreError)
    assert (first.stored, third.stored) == (1, 1)
    assert sql(schema, "SELECT dedupe_id FROM events ORDER BY id") == [("a",), ("c",)]
    assert sql(schema, "SELECT dedupe_id FROM dedupe_keys ORDER BY dedupe_id") == [("a",), ("c",)]


def test_nul_characters_in_text_are_stored_as_replacement_characters(schema: str) -> None:
    store = new_store(schema)
    run(store.open())
    try:
        result = run(store.ingest([event(1, dedupe_id="a\x00b", test_tag="t\x00")], request_id="r", received_at_ms=T0))
        assert result.stored == 1
        [stored], _ = run(store.query_events(EventQuery(test_tag="t\x00")))
        assert (stored.dedupe_id, stored.test_tag) == ("a\ufffdb", "t\ufffd")
        again = run(store.ingest([event(2, dedupe_id="a\x00b", test_tag="t\x00")], request_id="r", received_at_ms=T0))
        assert again.duplicates == [0]
    finally:
        run(store.close())


def test_the_writer_reconnects_after_the_server_drops_its_connection(schema: str) -> None:
    app = f"capigate_test_{uuid.uuid4().hex[:8]}"
    store = PostgresStore(f"{PG_URL}?application_name={app}", schema=schema)

    async def scenario() -> int:
        await store.open()
        try:
            await store.ingest([event(1)], request_id="r", received_at_ms=T0)
            killed = sql(
                schema,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
                (app,),
            )
            assert killed[0][0] >= 2  # the writer and the pool's connection
            for attempt in (lambda: store.ingest([event(2)], request_id="r", received_at_ms=T0), store.check_writable):
                for _ in range(100):  # each writer fails once on its dropped connection, then reconnects
                    try:
                        await attempt()
                        break
                    except StoreError:
                        await asyncio.sleep(0.05)
            for _ in range(100):
                try:
                    rows, _ = await store.query_events(EventQuery())
                    return len(rows)
                except StoreError:
                    await asyncio.sleep(0.05)
            raise AssertionError("the store did not recover")
        finally:
            await store.close()

    assert run(scenario()) == 2


# --- the plans of the queries ------------------------------------------------------------


def explain(schema: str, statement: str, params: list[Any] | dict[str, Any]) -> str:
    """The plan, with sequential scans priced out: shows whether an index can serve it."""
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        rows = conn.execute(f"EXPLAIN {statement}", params).fetchall()
    return " | ".join(r[0].strip() for r in rows)


EVENTS, REQUESTS = pg.events_sql, pg.requests_sql
PLANS = {
    "events-source": (EVENTS(EventQuery(source="a", cursor=9)), "Index Scan Backward using events_source_id"),
    "events-source-api": (
        EVENTS(EventQuery(source="a", api="axon", cursor=9)),
        "Index Scan Backward using events_source_id",
    ),
    "events-name": (EVENTS(EventQuery(name="a")), "Index Scan Backward using events_name_id"),
    "events-status": (EVENTS(EventQuery(status="a")), "Index Scan Backward using events_status_id"),
    "events-cursor": (EVENTS(EventQuery(cursor=9)), "Index Scan Backward using events_pkey"),
    "requests-source": (REQUESTS(RequestQuery(source="a")), "Index Scan Backward using requests_source_id"),
    "requests-status": (REQUESTS(RequestQuery(status=500)), "Index Scan Backward using requests_status_id"),
    "prune-keys": (("DELETE FROM dedupe_keys WHERE seen_at < %s", [1]), "Index Scan using dedupe_keys_seen_at"),
    "prune-journal": (("DELETE FROM requests WHERE received_at < %s", [1]), "Index Scan using requests_received_at"),
    "attempts": ((pg_outbox.ATTEMPTS, {"id": 1}), "Index Scan Backward using outbox_pkey"),
    "request-keys": ((pg_inspector.REQUEST_KEYS_SQL, [1, "r"]), "Index Scan using request_keys_received_at"),
}


@pytest.mark.parametrize("case", PLANS.values(), ids=PLANS.keys())
def test_postgresql_query_plans_read_through_the_indexes(schema: str, case: tuple[tuple[str, Any], str]) -> None:
    init(schema)
    (statement, params), expected = case
    plan = explain(schema, statement, params)
    assert expected in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("source", [None, "px1"])
def test_stats_read_only_the_window_of_the_journal_and_the_dead_letters(schema: str, source: str | None) -> None:
    init(schema)
    # Whole minutes from the per-minute totals, the two partial ones from the journal.
    minutes, head, tail, dead = pg_queries.stats_sql(source, T0 + 1_000, T0 + 300_500, 60_000)
    assert "request_minutes_pkey" in explain(schema, *minutes)
    for journal in (head, tail):
        assert "Index Scan using requests_received_at" in explain(schema, *journal)
    assert "outbox_dead" in explain(schema, *dead)
    # A window of whole minutes reads no journal row, the requests naming no source included.
    start = T0 - T0 % 60_000
    whole = pg_queries.stats_sql(source, start, start + 7 * 86_400_000, 168 * 60_000)
    assert len(whole) == 2
    assert not any(re.search(r"\bon requests\b", explain(schema, *query)) for query in whole)


def test_claim_reads_the_pending_rows_of_one_destination_through_a_partial_index(schema: str) -> None:
    init(schema)
    params = {"destination": DEST, "limit": 10, "now": T0}
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("SET enable_seqscan = off")
        plan = " | ".join(r[0] for r in conn.execute(f"EXPLAIN {pg_outbox.CLAIM}", params).fetchall())
    assert "outbox_pending" in plan and "LockRows" in plan, plan


def test_dead_and_pending_events_are_read_through_the_outbox_partial_indexes(schema: str) -> None:
    init(schema)
    for status in ("dead", "pending"):
        plan = explain(schema, *EVENTS(EventQuery(status=status)))
        assert f"outbox_{status}" in plan, plan


# --- capigate migrate, and serve's start-up check ------------------------------------------


def test_capigate_migrate_lists_then_applies_the_pending_steps(schema: str, tmp_path: Path) -> None:
    url = f"{PG_URL.replace('postgres@', 'postgres:hidden@')}?schema={schema}"
    runner = CliRunner()
    listed = runner.invoke(main, ["migrate", "--config", str(tmp_path / "none.toml"), "--db", url])
    assert listed.exit_code == 0, listed.output
    assert "schema version: none yet" in listed.output and "hidden" not in listed.output
    assert f"  1  {pg_schema.MIGRATIONS[0].description}" in listed.output
    applied = runner.invoke(main, ["migrate", "--config", str(tmp_path / "none.toml"), "--db", url, "--apply"])
    assert applied.exit_code == 0, applied.output
    assert f"schema version: {pg_schema.SCHEMA_VERSION}" in applied.output and "up to date" in applied.output
    assert sql(schema, "SELECT max(version) FROM capigate_schema") == [(pg_schema.SCHEMA_VERSION,)]


def test_capigate_serve_refuses_a_newer_schema_with_a_message_not_a_traceback(schema: str, tmp_path: Path) -> None:
    init(schema)
    sql(schema, "INSERT INTO capigate_schema VALUES (%s, 'from the future', 0)", (pg_schema.SCHEMA_VERSION + 1,))
    url = f"{PG_URL}?schema={schema}"
    write_default_config(tmp_path / "c.toml")
    result = CliRunner().invoke(main, ["serve", "--config", str(tmp_path / "c.toml"), "--db", url])
    assert result.exit_code == 1
    assert f"schema version {pg_schema.SCHEMA_VERSION + 1}; this capigate knows up to" in result.output
    assert "Traceback" not in result.output
    migrate = CliRunner().invoke(main, ["migrate", "--config", str(tmp_path / "c.toml"), "--db", url, "--apply"])
    assert migrate.exit_code == 1 and "upgrade capigate" in migrate.output


def test_a_capigate_session_left_idle_in_a_transaction_is_ended_by_postgresql(schema: str) -> None:
    """Rule: a transaction whose client vanished (a partition cut it mid-way) while PostgreSQL
    waited after a Sync releases its locks within idle_in_transaction_session_timeout, not when
    TCP gives up hours later: a retry of the same journal entries or dedupe_ids would wait on
    its uncommitted keys until then. (A wait in mid-pipeline has no timer: the writer's answer
    timeout ends that connection, tests/ops/test_journal_partition.py.)"""
    store = new_store(schema)

    async def session_setting() -> str:
        conn = await store._connect_writer()
        try:
            cur = await conn.execute("SHOW idle_in_transaction_session_timeout")
            row = await cur.fetchone()
            assert row is not None
            return str(row[0])
        finally:
            await conn.close()

    assert run(session_setting()) == "15s"
