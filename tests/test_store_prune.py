"""Event retention, run against every backend (``store`` fixture): ``prune`` deletes the events
older than ``event_days`` with their outbox rows and attempts, but never one the outbox still
holds (pending, or dead and replayable); plus the chunking and the newest id of SQLite, the
query plans of PostgreSQL and the configuration key."""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal

import msgspec
import psycopg
import pytest

from capigate.config import load_config
from capigate.errors import ConfigError, StoreError
from capigate.store import (
    AttemptOutcome,
    DeadLetterQuery,
    Delivery,
    JournalRecord,
    NewEvent,
    PostgresStore,
    RequestQuery,
    Retention,
    SQLiteStore,
    Store,
)
from capigate.store.postgres import prune as pg_prune
from capigate.store.sqlite import prune as sqlite_prune
from tests.conftest import DEFAULT_CONFIG, make_server
from tests.storekit import PG_URL, pg_schema, run
from tests.test_store_outbox import AXON, T0, claim, depth, events_by_id, ingest, new_event

DAY_MS = 86_400_000
NOW = T0 + 40 * DAY_MS
KEEP_30_DAYS = Retention(event_days=30)  # the cutoff: T0 + 10 days
RECENT = T0 + 39 * DAY_MS
OTHER = "axon:px2"
Result = Literal["delivered", "retry", "dead"]


def settle(store: Store, leased: list[Delivery], result: Result, *, at: int, **fields: Any) -> None:
    """As one upstream request answers: one attempt for all of ``leased`` (the outcomes share
    their response objects)."""
    headers: dict[str, str] = {}
    outcomes = [
        AttemptOutcome(
            event_id=d.event_id, destination=d.destination, at_ms=at, result=result, response_headers=headers, **fields
        )
        for d in leased
    ]
    run(store.settle(outcomes, owner="a"))


def ids_by_dedupe_id(store: Store) -> dict[str, int]:
    return {e.dedupe_id or "": e.id for e in events_by_id(store).values()}


def aged_outbox(store: Store) -> dict[str, int]:
    """Events received at T0, 40 days before NOW: px1-1 delivered and px1-2 dead (both carried
    first by one retried request), px1-3 leased and px1-4 queued (pending both), px1-5 not
    relayed, px1-6 sent in test mode; received recently: px1-7 not relayed, px2-8 delivered.
    Four upstream requests in all. Returns the event ids by dedupe_id."""
    ingest(store, new_event(1), new_event(2), new_event(3), at=T0)
    ingest(store, new_event(4), at=T0)
    ingest(store, new_event(5, destination=None), new_event(6, destination=None, test_tag="t"), at=T0)
    settle(store, claim(store, limit=2), "retry", at=T0 + 1_000, status=503, next_attempt_at_ms=T0 + 2_000)
    a, b, _leased = claim(store, limit=3, now=T0 + 2_000)
    settle(store, [a], "delivered", at=T0 + 3_000, status=200)
    settle(store, [b], "dead", at=T0 + 3_000, status=400)
    ingest(store, new_event(7, destination=None), new_event(8, source="px2", destination=OTHER), at=RECENT)
    settle(store, claim(store, dest=OTHER, now=RECENT), "delivered", at=RECENT + 1_000, status=200)
    return ids_by_dedupe_id(store)


def table_rows(store: Store) -> dict[str, Any]:
    """What the tables hold, read beside the store: the event ids, the event ids with an
    outbox row, the attempt ids, and the references to an event or attempt that is gone."""
    if isinstance(store, SQLiteStore):
        with closing(sqlite3.connect(store.path)) as conn:
            events = {i for (i,) in conn.execute("SELECT id FROM events")}
            runs = conn.execute("SELECT first_id, last_id, attempt_ids FROM outbox").fetchall()
            attempts = {i for (i,) in conn.execute("SELECT id FROM attempts")}
        queued = {i for first, last, _ in runs for i in range(first, last + 1)}
        linked = {int(n) for _, _, ids in runs for n in ids.split(",") if n}
        dangling = (queued - events) | (linked - attempts)
        return {"events": events, "queued": queued, "attempts": attempts, "dangling": dangling}
    assert isinstance(store, PostgresStore)
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={store.schema}") as pg:
        events = {i for (i,) in pg.execute("SELECT id FROM events")}
        runs = pg.execute("SELECT first_id, last_id, attempt_ids FROM outbox").fetchall()
        attempts = {i for (i,) in pg.execute("SELECT id FROM attempts")}
    queued = {i for first, last, _ in runs for i in range(first, last + 1)}
    linked = {n for _, _, ids in runs for n in ids}
    dangling = (queued - events) | (linked - attempts)
    return {"events": events, "queued": queued, "attempts": attempts, "dangling": dangling}


def test_prune_deletes_old_delivered_and_unrelayed_events_and_returns_their_count(store: Store) -> None:
    ids = aged_outbox(store)
    pruned = run(store.prune(NOW, KEEP_30_DAYS))
    assert pruned.events == 3
    left = {e.dedupe_id: e.status for e in events_by_id(store).values()}
    assert left == {"px1-2": "dead", "px1-3": "pending", "px1-4": "pending", "px1-7": "stored", "px2-8": "delivered"}
    assert run(store.query_attempts(ids["px1-1"])) == []
    assert run(store.prune(NOW, KEEP_30_DAYS)).events == 0


def test_prune_keeps_old_events_still_pending_or_dead_in_the_outbox_with_their_attempts(store: Store) -> None:
    ids = aged_outbox(store)
    before = {name: run(store.query_attempts(ids[name])) for name in ("px1-2", "px1-3", "px1-4")}
    run(store.prune(NOW, KEEP_30_DAYS))
    assert depth(store) == (2, 1, 1)  # pending, delivered (the count of deliveries ever made), dead
    dead = run(store.query_attempts(ids["px1-2"]))
    assert [a.result for a in dead] == ["retry", "dead"]  # the retry was shared with the pruned px1-1
    assert dead == before["px1-2"]
    assert [run(store.query_attempts(ids[name])) for name in ("px1-3", "px1-4")] == [[], []]
    rows = table_rows(store)
    assert rows["queued"] == {ids["px1-2"], ids["px1-3"], ids["px1-4"], ids["px2-8"]}


def test_prune_leaves_no_outbox_row_or_attempt_link_to_a_pruned_event(store: Store) -> None:
    ids = aged_outbox(store)
    attempts_before = table_rows(store)["attempts"]
    run(store.prune(NOW, KEEP_30_DAYS))
    rows = table_rows(store)
    assert rows["dangling"] == set()
    assert rows["events"] == {ids[n] for n in ("px1-2", "px1-3", "px1-4", "px1-7", "px2-8")}
    # Of the four upstream requests, only the one that delivered px1-1 alone is gone.
    assert len(attempts_before) == 4 and len(rows["attempts"]) == 3


def test_prune_deletes_an_old_event_once_its_delivery_is_over(store: Store) -> None:
    ids = aged_outbox(store)
    run(store.prune(NOW, KEEP_30_DAYS))
    assert run(store.replay(DeadLetterQuery(), now_ms=NOW)) == 1
    later = NOW + 1_000
    leased = claim(store, limit=10, now=later)  # the replayed px1-2, the queued px1-4, px1-3 (lease expired)
    assert sorted(d.event_id for d in leased) == sorted(ids[n] for n in ("px1-2", "px1-3", "px1-4"))
    settle(store, leased, "delivered", at=later, status=200)
    assert run(store.prune(later, KEEP_30_DAYS)).events == 3
    assert sorted(e.dedupe_id or "" for e in events_by_id(store).values()) == ["px1-7", "px2-8"]
    assert table_rows(store)["dangling"] == set()


def test_prune_keeps_events_received_within_event_days(store: Store) -> None:
    ingest(store, new_event(1, destination=None), at=NOW - 30 * DAY_MS - 1)
    ingest(store, new_event(2, destination=None), at=NOW - 30 * DAY_MS)  # exactly 30 days: not older
    assert run(store.prune(NOW, KEEP_30_DAYS)).events == 1
    assert [e.dedupe_id for e in events_by_id(store).values()] == ["px1-2"]


def test_prune_with_event_days_inf_keeps_every_event(store: Store) -> None:
    aged_outbox(store)
    pruned = run(store.prune(NOW + 10_000 * DAY_MS, Retention(event_days=math.inf, dedupe_days=math.inf)))
    assert (pruned.events, pruned.dedupe_keys) == (0, 0)
    assert len(events_by_id(store)) == 8


def test_pruned_events_keep_their_dedupe_keys_until_dedupe_days(store: Store) -> None:
    ingest(store, new_event(1, destination=None), at=T0)
    ingest(store, new_event(2, destination=None), at=RECENT)
    pruned = run(store.prune(NOW, Retention(event_days=30, dedupe_days=60)))
    assert (pruned.events, pruned.dedupe_keys) == (1, 0)
    again = run(store.ingest([new_event(1, destination=None)], request_id="again", received_at_ms=NOW))
    assert (again.stored, again.duplicates) == (0, [0])


def _stored_again(store: Store, *events: NewEvent, at: int) -> list[int]:
    """How many of ``events``, sent again at ``at``, are stored: 1 where its key is gone."""
    return [
        run(store.ingest([e], request_id=f"again-{at}-{i}", received_at_ms=at)).stored for i, e in enumerate(events)
    ]


def _keyed_events() -> list[NewEvent]:
    """A real event, a test event and an AppsFlyer one (their keys are scoped by the test tag
    and by the event name: prune must find each key as the ingest made it)."""
    appsflyer = msgspec.structs.replace(new_event(3, destination=None), api="appsflyer", name="af_purchase")
    return [new_event(1, destination=None), new_event(2, destination=None, test_tag="t"), appsflyer]


def test_keys_of_events_pruned_before_them_go_once_dedupe_days_have_passed(store: Store) -> None:
    """Events kept 30 days and their keys 60: the events go at 30 days and their keys stay
    (a resend is a duplicate), then go at 60 (a resend is stored), counted, each once."""
    ingest(store, *_keyed_events(), at=T0)
    ingest(store, new_event(9, destination=None), at=RECENT)
    keep = Retention(event_days=30, dedupe_days=60)
    assert run(store.prune(NOW, keep)).dedupe_keys == 0
    assert len(events_by_id(store)) == 1
    assert _stored_again(store, *_keyed_events(), at=NOW) == [0, 0, 0]
    later = T0 + 61 * DAY_MS
    pruned = run(store.prune(later, keep))
    assert (pruned.events, pruned.dedupe_keys) == (0, 3)
    assert run(store.prune(later, keep)).dedupe_keys == 0
    assert _stored_again(store, *_keyed_events(), at=later) == [1, 1, 1]


def test_keys_go_before_their_events_when_dedupe_days_are_fewer(store: Store) -> None:
    """Keys kept 5 days and events 30: the keys of events 40 days old go with them, and those
    of events 6 days old go while their events stay (found through the events); a second
    prune finds none left to delete."""
    ingest(store, new_event(7, destination=None), at=T0)
    six_days = NOW - 6 * DAY_MS
    ingest(store, *_keyed_events(), at=six_days)
    keep = Retention(event_days=30, dedupe_days=5)
    pruned = run(store.prune(NOW, keep))
    assert (pruned.events, pruned.dedupe_keys) == (1, 4)
    assert len(events_by_id(store)) == 3
    assert run(store.prune(NOW + 1, keep)).dedupe_keys == 0
    assert _stored_again(store, *_keyed_events(), at=NOW + 2) == [1, 1, 1]


@pytest.mark.parametrize("event_days", [30, math.inf], ids=["events-30", "events-kept"])
def test_keys_of_events_received_before_an_earlier_prunes_cutoff_still_go(store: Store, event_days: float) -> None:
    """A trial: a prune given a later time (or a clock set back after one) walked the events
    up to its cutoff, and an event received before it afterwards kept its key for ever (a
    resend a duplicate past dedupe_days). Such a key now waits by its time."""
    ingest(store, new_event(1, destination=None), at=T0)
    keep = Retention(event_days=event_days, dedupe_days=30)
    assert run(store.prune(T0 + 40 * DAY_MS, keep)).dedupe_keys == 1
    ingest(store, *_keyed_events(), at=T0 + DAY_MS)  # before that prune's cutoff, T0 + 10 days
    assert _stored_again(store, *_keyed_events(), at=T0 + 2 * DAY_MS) == [0, 0, 0]
    assert run(store.prune(T0 + 80 * DAY_MS, keep)).dedupe_keys == 3
    assert _stored_again(store, *_keyed_events(), at=T0 + 81 * DAY_MS) == [1, 1, 1]


def test_scattered_keys_received_before_later_ones_are_pruned_on_time(store: Store) -> None:
    """A trial: random ids (written in order first, on SQLite: dedupe.py) received with a time
    before earlier ones (a clock set back) were never moved where prune finds them, so kept
    for ever. Each key goes once its own time is past the cutoff."""

    def random_ids(first: int) -> list[NewEvent]:
        return [
            msgspec.structs.replace(new_event(n, destination=None), dedupe_id=uuid.uuid4().hex)
            for n in range(first, first + 80)
        ]

    later, earlier = random_ids(0), random_ids(100)
    ingest(store, *later, at=T0 + 10 * DAY_MS)
    ingest(store, *earlier, at=T0)  # the clock set back
    keep = Retention(event_days=30, dedupe_days=30)
    assert run(store.prune(T0 + 35 * DAY_MS, keep)).dedupe_keys == 80
    assert sum(_stored_again(store, *earlier, at=T0 + 36 * DAY_MS)) == 80
    assert sum(_stored_again(store, *later[:5], at=T0 + 36 * DAY_MS)) == 0
    # A prune that found none due among them, then more received behind its cutoff: the next
    # prune at that time looks again (dedupe.flush_older reads their times once per new key).
    ingest(store, *random_ids(300), at=T0 + 36 * DAY_MS)
    assert run(store.prune(T0 + 36 * DAY_MS, keep)).dedupe_keys == 0
    behind = random_ids(200)
    ingest(store, *behind, at=T0 + DAY_MS)
    assert run(store.prune(T0 + 36 * DAY_MS, keep)).dedupe_keys == 80


def test_prune_deletes_more_events_than_a_chunk_holds_and_counts_them_all(store: Store) -> None:
    chunk = sqlite_prune.CHUNK if isinstance(store, SQLiteStore) else pg_prune.CHUNK
    total = 2 * chunk + 150
    # Requests of 100 events (the first of 150), every other one relayed: with chunks of 2,000,
    # the run of events 1950-2049 straddles the edge of SQLite's first chunk.
    edges = [0, *range(150, total, 100), total]
    for i, (first, end) in enumerate(itertools.pairwise(edges)):
        batch = [new_event(n, destination=AXON if i % 2 else None) for n in range(first, end)]
        ingest(store, *batch, at=T0 + first)
    for leased in iter(lambda: claim(store, limit=300, now=T0 + total), []):  # delivered by 300s
        settle(store, leased, "delivered", at=T0 + total, status=200)
    ingest(store, new_event(total, source="px2", destination=OTHER), at=RECENT)
    settle(store, claim(store, dest=OTHER, now=RECENT), "delivered", at=RECENT, status=200)
    attempts = table_rows(store)["attempts"]
    assert run(store.prune(NOW, KEEP_30_DAYS)).events == total
    rows = table_rows(store)
    assert len(rows["events"]) == len(rows["queued"]) == 1 and rows["dangling"] == set()
    assert rows["attempts"] == {max(attempts)}


# --- SQLite specifics -------------------------------------------------------------------


def test_sqlite_a_pruned_keys_dedupe_id_stays_a_journal_key_while_its_entry_stays(tmp_path: Path) -> None:
    """A stored event's dedupe id finds its request through its key (the journal leaves it
    out); a key pruned while the journal keeps the entry makes the id a journal key, whether
    the walk found it or it waited in dedupe_aging (an event received behind the walk)."""
    store = SQLiteStore(tmp_path / "journaled.db")
    run(store.open())
    try:
        keep = Retention(event_days=math.inf, dedupe_days=30, journal_days=math.inf)
        # the walk's (one holding a NUL, which json_each would cut), then one behind it
        ids = {T0: ["px1-1", "px1-\x00x"], T0 + 2 * DAY_MS: ["px1-2"]}
        for at, dedupe_ids in ids.items():
            if at > T0:  # received behind the walk: its key waits in dedupe_aging
                assert run(store.prune(T0 + 40 * DAY_MS, keep)).dedupe_keys == 2
            events = [msgspec.structs.replace(new_event(1, destination=None), dedupe_id=d) for d in dedupe_ids]
            ingest(store, *events, at=at)
            entry = msgspec.structs.replace(journal(1, at), request_id=f"r{at}", status=200, keys=[])
            write_journal(store, [entry])
        assert run(store.prune(T0 + 80 * DAY_MS, keep)).dedupe_keys == 1
        for at, dedupe_ids in ids.items():
            for d in dedupe_ids:
                rows, _ = run(store.query_requests(RequestQuery(keys=[("dedupe_id", d)])))
                assert [r.request_id for r in rows] == [f"r{at}"], d
    finally:
        run(store.close())


def test_sqlite_prune_runs_one_writer_job_per_chunk_so_ingests_wait_for_one_chunk_at_most(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "chunks.db")
    run(store.open())
    try:
        total = 3 * sqlite_prune.CHUNK
        for first in range(0, total, 100):
            ingest(store, *(new_event(n, destination=None) for n in range(first, first + 100)), at=T0)
        ingest(store, new_event(total, destination=None), at=RECENT)
        jobs = store.stats.jobs
        assert run(store.prune(NOW, KEEP_30_DAYS)).events == total
        # the keys (their events walked: three full chunks and an empty one), the journal and the
        # rollups (a job each), three full chunks of events and an empty one, the attempts
        assert store.stats.jobs - jobs == 4 + 2 + 4 + 1
    finally:
        run(store.close())


def test_sqlite_prune_keeps_the_newest_event_and_its_run_so_no_id_is_given_twice(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "newest.db")
    run(store.open())
    try:
        ingest(store, new_event(0, destination=None), at=T0)
        ingest(store, new_event(1), new_event(2), at=T0)  # one run
        settle(store, claim(store), "delivered", at=T0, status=200)
        assert run(store.prune(NOW, KEEP_30_DAYS)).events == 1
        newest = max(events_by_id(store))
        assert sorted(events_by_id(store)) == [newest - 1, newest]
        ingest(store, new_event(3), at=NOW)
        assert max(events_by_id(store)) == newest + 1
        assert depth(store) == (1, 2, 0)
        assert table_rows(store)["dangling"] == set()
    finally:
        run(store.close())


def test_sqlite_prune_reads_old_events_and_their_runs_through_indexes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "plan.db")
    run(store.open())
    run(store.close())
    plans = {
        "old events": (sqlite_prune._OLD_EVENTS, [T0, 0, 0, 10]),
        "kept attempts": (sqlite_prune._KEPT, [T0]),
    }
    with closing(sqlite3.connect(tmp_path / "plan.db")) as conn:
        for name, (sql, params) in plans.items():
            plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "event_blocks_received_at" in plan and "TEMP B-TREE FOR ORDER BY" not in plan, (name, plan)
            assert "SCAN outbox" not in plan, (name, plan)


def test_sqlite_prune_finds_and_deletes_each_chunk_of_keys_journal_and_rollups_through_an_index(
    tmp_path: Path,
) -> None:
    """A chunk's edge reads ``CHUNK`` entries of an index and its DELETE the rows under the
    edge through it (the journal's entries over the limit through the primary key; the dedupe
    keys through the events' blocks, each key by its own): no statement of a job reads a whole
    table, or sorts it."""
    store = SQLiteStore(tmp_path / "plan.db")
    run(store.open())
    run(store.close())
    statements: dict[str, tuple[str, list[Any]]] = {
        "over": (sqlite_prune._OVER_CHUNK, [T0]),
        "oldest entry": (sqlite_prune._OLDEST_ENTRY, []),
    }
    statements["keys' events walked"] = (sqlite_prune._WALK, [T0, 0, 0, sqlite_prune.CHUNK])
    statements["keys aging"] = (sqlite_prune._AGING, [T0, sqlite_prune.CHUNK])
    statements["key deleted"] = (sqlite_prune._DELETE_KEY, ["s", "d", 1])
    statements["aging deleted"] = (sqlite_prune._DELETE_AGING, [T0, "s", "d"])
    statements["keys aged"] = (sqlite_prune._aging_of_sql(4), [1, 2, 3, 4, T0])
    statements["events going"] = (sqlite_prune._events_going_sql(4), [1, 2, 3, 4])
    for table in sqlite_prune._TIME:
        statements[f"{table} edge"] = (sqlite_prune._EDGE[table], [T0])
        statements[f"{table} delete"] = (sqlite_prune._DELETE_BEFORE[table], [T0])
    with closing(sqlite3.connect(tmp_path / "plan.db")) as conn:
        for name, (sql, params) in statements.items():
            steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            # A chunk's own list (json_each) is read whole; no table is.
            listed = ("SCAN CONSTANT ROW", "SCAN json_each VIRTUAL TABLE")
            scans = [s for s in steps if (s.startswith("SCAN") and not s.startswith(listed)) or "TEMP B-TREE" in s]
            assert scans == [] and any(s.startswith("SEARCH") for s in steps), (name, steps)


# --- PostgreSQL specifics ---------------------------------------------------------------


@contextmanager
def pg_store_tables(settings: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a fresh schema that holds the store's tables, with ``settings`` run."""
    with pg_schema() as schema:
        store = PostgresStore(PG_URL, schema=schema)
        run(store.open())
        run(store.close())
        with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
            conn.execute(settings)
            yield conn


@pytest.mark.postgresql  # through pg_store_tables, which conftest's search does not name
def test_postgresql_prune_reads_old_events_through_their_index_and_the_rest_by_key() -> None:
    with pg_store_tables("SET enable_seqscan = off") as conn:
        params = {"from": 0, "before": T0, "offset": pg_prune.CHUNK - 1}
        events = " | ".join(r[0].strip() for r in conn.execute(f"EXPLAIN {pg_prune._EVENTS}", params))
        kept = " | ".join(r[0].strip() for r in conn.execute(f"EXPLAIN {pg_prune._KEPT}"))
    assert "events_received_at" in events and "Sort" not in events and "Seq Scan" not in events, events
    assert "outbox_pkey" in events, events
    assert "outbox_pending" in kept and "outbox_dead" in kept, kept


@pytest.mark.postgresql  # through pg_store_tables, which conftest's search does not name
def test_postgresql_prune_finds_and_deletes_each_chunk_of_keys_journal_and_rollups_through_an_index() -> None:
    """A chunk's edge reads ``CHUNK`` entries of an index and its DELETE the rows under the
    edge through it: no statement of a chunk reads a whole table, or sorts it (the planner
    told to avoid both finds a plan without: an empty table's costs tell it nothing else)."""
    tables = {
        "dedupe_keys": "seen_at", "requests": "received_at", "request_minutes": "minute",
        "request_bodies": "received_at", "request_keys": "received_at", "event_quality": "hour",
        "event_quality_days": "day",
    }  # fmt: skip
    with pg_store_tables("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off") as conn:
        plans = {}
        for table, column in tables.items():
            edge = pg_prune._edge_sql(table, column)
            for sql, params in ((edge, {"before": T0}), (f"DELETE FROM {table} WHERE {column} < %s", [T0])):
                plans[sql] = " | ".join(r[0].strip() for r in conn.execute(f"EXPLAIN {sql}", params))
        over = {"last": T0, "chunk": pg_prune.CHUNK}
        plans["over"] = " | ".join(r[0].strip() for r in conn.execute(f"EXPLAIN {pg_prune._OVER_CHUNK}", over))
    for name, plan in plans.items():
        assert "Seq Scan" not in plan and "Sort" not in plan, (name, plan)


def test_postgresql_prune_gives_its_pooled_connection_back_between_chunks_so_reads_wait_for_one_chunk(
    schema: str,
) -> None:
    """With a pool of one, a read asked for while a prune runs is answered before the prune
    ends: the prune takes a connection per transaction, not one for all of its chunks."""
    store = PostgresStore(PG_URL, schema=schema, pool_size=1)
    run(store.open())
    try:
        total = 4 * pg_prune.CHUNK
        for first in range(0, total, 1000):
            ingest(store, *(new_event(n, destination=None) for n in range(first, first + 1000)), at=T0)
        assert run(_read_while_pruning(store)) == (False, total)
    finally:
        run(store.close())


def test_postgresql_prune_gives_up_a_transaction_unanswered_within_read_timeout_s(schema: str) -> None:
    """A chunk waiting on a row lock (an operator's session holding an old dedupe key) fails
    after ``read_timeout_s``, its statement cancelled on the server, rather than wait for as
    long as the lock is held; the next prune does the work."""
    store = PostgresStore(PG_URL, schema=schema, read_timeout_s=0.5)
    run(store.open())
    try:
        ingest(store, new_event(1, destination=None), at=T0)
        with psycopg.connect(PG_URL, options=f"-c search_path={schema}") as holder:
            holder.execute("SELECT 1 FROM dedupe_keys FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"did not answer within 0\.5 s"):
                run(asyncio.wait_for(store.prune(NOW, KEEP_30_DAYS), 10))
            assert time.monotonic() - started < 5
            waiting = holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            assert waiting == (0,)
        pruned = run(store.prune(NOW, KEEP_30_DAYS))
        assert (pruned.dedupe_keys, pruned.events) == (1, 1)
    finally:
        run(store.close())


async def _read_while_pruning(store: Store) -> tuple[bool, int]:
    """Whether the prune had ended when a read asked for after it began was answered, and
    how many events it pruned."""
    pruning = asyncio.create_task(store.prune(NOW, KEEP_30_DAYS))
    await asyncio.sleep(0)  # the prune takes the pool's connection and sends its first statement
    await store.outbox_depths()
    ended = pruning.done()
    return ended, (await pruning).events


MINUTE_MS = 60_000
HOUR_MS = 3_600_000
# The per-minute totals, and the same counted afresh from the journal, per (minute, source, api).
MINUTE_TOTALS = (
    "SELECT minute, source, api, sum(requests)::int8, sum(failed)::int8, sum(received)::int8 FROM request_minutes "
    "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
JOURNAL_TOTALS = (
    "SELECT received_at - received_at % 60000, coalesce(source, ''), api, "
    "count(*), count(*) FILTER (WHERE status >= 400), sum(events_received) FROM requests GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
JOURNAL_TABLES = ("requests", "request_bodies", "request_keys", "request_minutes")


def journal(n: int, at: int) -> JournalRecord:
    """A refused request's entry, with its body and a key (one row of each table per entry)."""
    return JournalRecord(
        request_id=f"j{n}", received_at=at, api="axon", source=f"px{n % 3}" if n % 4 else None, method="POST",
        path="/v1/event", status=400, client_ip="203.0.113.9", user_agent="t", latency_ms=1.0,
        events_received=n % 5, body=b'{"n":%d}' % n, keys=[("transaction_id", f"T{n}")],
    )  # fmt: skip


def write_journal(store: Store, entries: list[JournalRecord]) -> None:
    for first in range(0, len(entries), 500):
        run(store.record_requests(entries[first : first + 500]))


def snapshot(schema: str) -> psycopg.Connection[Any]:
    """A connection whose transaction keeps seeing the rows as they are now (REPEATABLE READ):
    a row deleted since still shows, with the id of the transaction that deleted it as its xmax."""
    conn = psycopg.connect(PG_URL, options=f"-c search_path={schema}")
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    conn.execute("SELECT 1 FROM requests LIMIT 1")  # the snapshot is taken at the first statement
    return conn


def deleted_per_transaction(seen: psycopg.Connection[Any], table: str) -> list[int]:
    """How many rows of ``table`` each transaction deleted since ``seen``'s snapshot, most first."""
    sql = f"SELECT count(*) FROM {table} WHERE xmax::text <> '0' GROUP BY xmax::text ORDER BY 1 DESC"
    return [n for (n,) in seen.execute(sql)]


def rows_now(schema: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        return conn.execute(sql).fetchall()


def test_postgresql_prune_deletes_old_dedupe_keys_and_journal_a_chunk_per_transaction_and_keeps_the_minute_totals(
    schema: str,
) -> None:
    """More than two chunks of old dedupe keys and journal entries (each with a body, a key and
    a minute of its own) all go, counted, none of their tables losing more than a chunk of rows
    in one transaction; the per-minute totals stay those of the journal left."""
    store = PostgresStore(PG_URL, schema=schema)
    run(store.open())
    try:
        total = 2 * pg_prune.CHUNK + 150
        for first in range(0, total, 50):  # dedupe keys seen at 83 times, 50 at each
            ingest(store, *(new_event(n, destination=None) for n in range(first, first + 50)), at=T0 + first)
        ingest(store, new_event(total, destination=None), at=RECENT)
        old = [journal(n, T0 + n * MINUTE_MS) for n in range(total)]  # a minute each, from T0 on
        write_journal(store, old + [journal(total + n, RECENT + n * 1_000) for n in range(90)])
        seen = snapshot(schema)
        try:
            pruned = run(store.prune(NOW, Retention(dedupe_days=30, journal_days=30, event_days=30)))
            chunks = {t: deleted_per_transaction(seen, t) for t in ("dedupe_keys", *JOURNAL_TABLES)}
        finally:
            seen.close()
    finally:
        run(store.close())
    assert (pruned.dedupe_keys, pruned.requests) == (total, total)
    assert rows_now(schema, "SELECT count(*) FROM dedupe_keys") == [(1,)]
    assert rows_now(schema, "SELECT count(*), min(received_at) FROM requests") == [(90, RECENT)]
    assert rows_now(schema, f"SELECT count(*) FROM request_bodies WHERE received_at < {RECENT}") == [(0,)]
    assert rows_now(schema, f"SELECT count(*) FROM request_keys WHERE received_at < {RECENT}") == [(0,)]
    assert rows_now(schema, MINUTE_TOTALS) == rows_now(schema, JOURNAL_TOTALS)
    for table, deleted in chunks.items():
        assert sum(deleted) == total and max(deleted) <= pg_prune.CHUNK, (table, deleted)


def test_postgresql_prune_deletes_the_probe_rows_of_nodes_gone_for_a_day(schema: str) -> None:
    """Each node's writability probe keeps a row named host:pid: every restart added one, and
    none went (a trial). Rows not written for a day go; a live node's stays."""
    store = PostgresStore(PG_URL, schema=schema)
    run(store.open())
    try:
        rows_now(
            schema,
            f"INSERT INTO capigate_nodes VALUES ('gone:1', {NOW - DAY_MS - 1}), ('live:2', {NOW - 60_000}) RETURNING 1",
        )
        run(store.prune(NOW, Retention()))
    finally:
        run(store.close())
    assert rows_now(schema, "SELECT node FROM capigate_nodes WHERE node IN ('gone:1', 'live:2')") == [("live:2",)]


def test_postgresql_prune_trims_the_journal_to_its_row_limit_a_chunk_per_transaction(schema: str) -> None:
    """Entries over ``journal_max_rows`` go the oldest first, with their bodies and keys, at
    most a chunk of each in one transaction; their minutes keep counting them."""
    store = PostgresStore(PG_URL, schema=schema)
    run(store.open())
    try:
        total = 2 * pg_prune.CHUNK + 150
        write_journal(store, [journal(n, RECENT - (total - n) * MINUTE_MS) for n in range(total)])
        totals = rows_now(schema, MINUTE_TOTALS)
        seen = snapshot(schema)
        try:
            pruned = run(store.prune(NOW, Retention(journal_days=30, journal_max_rows=100)))
            chunks = {t: deleted_per_transaction(seen, t) for t in JOURNAL_TABLES[:3]}
        finally:
            seen.close()
    finally:
        run(store.close())
    assert pruned.requests == total - 100
    assert_trimmed_to_the_newest_100(lambda sql: rows_now(schema, sql), total, totals)
    for table, deleted in chunks.items():
        assert sum(deleted) == total - 100 and max(deleted) <= pg_prune.CHUNK, (table, deleted)


def assert_trimmed_to_the_newest_100(rows: Callable[[str], list[Any]], total: int, totals: list[Any]) -> None:
    """The journal of ``total`` entries j0… kept its newest 100, their bodies and keys, and its minutes."""
    kept = [(f"j{n}",) for n in range(total - 100, total)]
    assert rows("SELECT request_id FROM requests ORDER BY id") == kept
    assert rows("SELECT request_id FROM request_bodies ORDER BY received_at") == kept
    assert rows("SELECT request_id FROM request_keys ORDER BY received_at") == kept
    assert rows(MINUTE_TOTALS) == totals


def sqlite_rows(store: SQLiteStore, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(store.path)) as conn:
        return conn.execute(sql.replace("::int8", "")).fetchall()


ROLLUPS = ("event_quality", "event_quality_days")


def count_deletions_per_job(
    store: SQLiteStore, tables: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> dict[str, list[int]]:
    """How many rows of each of ``tables`` each write job submitted from now on deleted, most
    first: the rows counted beside the store before and after each job (the prune submits each
    once the one before is committed, and nothing else writes meanwhile). The jobs still run
    in the store's own writer, as they are."""
    deleted: dict[str, list[int]] = {t: [] for t in tables}
    submit = store._writer.submit

    def counts() -> dict[str, int]:
        with closing(sqlite3.connect(store.path)) as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}

    async def counting(fn: Any, batch: Any = None) -> Any:
        before = counts()
        result = await submit(fn, batch)
        for table, n in counts().items():
            deleted[table].append(before[table] - n)
            deleted[table].sort(reverse=True)
        return result

    monkeypatch.setattr(store._writer, "submit", counting)
    return deleted


@pytest.mark.parametrize("writer_process", [False, True], ids=["thread", "process"])
def test_sqlite_prune_deletes_old_dedupe_keys_journal_and_rollups_a_chunk_per_job_and_keeps_the_minute_totals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer_process: bool
) -> None:
    """More than two chunks of old dedupe keys, journal entries (each with a body, a key and a
    minute of its own) and hourly match-key rollups all go, counted, none of their tables losing
    more than a chunk of rows in one write job; the per-minute totals stay those of the journal left."""
    store = SQLiteStore(tmp_path / "journal.db", writer_process=writer_process)
    run(store.open())
    try:
        total = 2 * sqlite_prune.CHUNK + 150
        for first in range(0, total, 50):  # 83 hours of 50 sources: 50 dedupe keys and 50 rollup rows each
            batch = [new_event(n, source=f"s{n % 50}", destination=None) for n in range(first, first + 50)]
            ingest(store, *batch, at=T0 + first // 50 * HOUR_MS)
        ingest(store, new_event(total, destination=None), at=RECENT)
        old = [journal(n, T0 + n * MINUTE_MS) for n in range(total)]  # a minute each, from T0 on
        write_journal(store, old + [journal(total + n, RECENT + n * 1_000) for n in range(90)])
        hours = sqlite_rows(store, f"SELECT count(*) FROM event_quality WHERE hour < {NOW - 30 * DAY_MS}")
        tables = ("dedupe_keys", "events", *JOURNAL_TABLES, *ROLLUPS)
        deleted = count_deletions_per_job(store, tables, monkeypatch)
        pruned = run(store.prune(NOW, Retention(dedupe_days=30, journal_days=30, event_days=30)))
        assert (pruned.dedupe_keys, pruned.requests, pruned.events) == (total, total, total)
        assert sqlite_rows(store, "SELECT count(*) FROM dedupe_keys") == [(1,)]
        assert sqlite_rows(store, "SELECT count(*), min(received_at) FROM requests") == [(90, RECENT)]
        assert sqlite_rows(store, f"SELECT count(*) FROM request_bodies WHERE received_at < {RECENT}") == [(0,)]
        assert sqlite_rows(store, f"SELECT count(*) FROM request_keys WHERE received_at < {RECENT}") == [(0,)]
        assert sqlite_rows(store, MINUTE_TOTALS) == sqlite_rows(store, JOURNAL_TOTALS)
        assert sqlite_rows(store, f"SELECT count(*) FROM event_quality WHERE hour < {NOW - 30 * DAY_MS}") == [(0,)]
        assert hours == [(total,)]
        for table in ("dedupe_keys", "events", *JOURNAL_TABLES, "event_quality"):
            assert sum(deleted[table]) == total and deleted[table][0] <= sqlite_prune.CHUNK, (table, deleted[table][:5])
        assert 0 < sum(deleted["event_quality_days"]) <= sqlite_prune.CHUNK
    finally:
        run(store.close())


def test_sqlite_prune_trims_the_journal_to_its_row_limit_a_chunk_per_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries over ``journal_max_rows`` go the oldest first, with their bodies and keys, at
    most a chunk of each in one write job; their minutes keep counting them."""
    store = SQLiteStore(tmp_path / "max-rows.db")
    run(store.open())
    try:
        total = 2 * sqlite_prune.CHUNK + 150
        write_journal(store, [journal(n, RECENT - (total - n) * MINUTE_MS) for n in range(total)])
        totals = sqlite_rows(store, MINUTE_TOTALS)
        deleted = count_deletions_per_job(store, JOURNAL_TABLES[:3], monkeypatch)
        pruned = run(store.prune(NOW, Retention(journal_days=30, journal_max_rows=100)))
        assert pruned.requests == total - 100
        assert_trimmed_to_the_newest_100(lambda sql: sqlite_rows(store, sql), total, totals)
        for table, n in deleted.items():
            assert sum(n) == total - 100 and n[0] <= sqlite_prune.CHUNK, (table, n[:5])
    finally:
        run(store.close())


# --- the configuration ------------------------------------------------------------------


def test_event_retention_days_defaults_to_30_takes_inf_for_ever_and_refuses_0(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    head = '[server]\nadmin_token = "123456789"\n'
    config.write_text(head)
    assert load_config(config).store.event_retention_days == 30
    config.write_text(head + "[store]\nevent_retention_days = inf\n")
    assert load_config(config).store.event_retention_days == math.inf
    config.write_text(head + "[store]\nevent_retention_days = 0\n")
    with pytest.raises(ConfigError, match=r"store\.event_retention_days.*> 0"):
        load_config(config)


@pytest.mark.parametrize(("setting", "kept"), [("", False), ("event_retention_days = inf", True)])
def test_a_gateway_prunes_events_by_its_configured_event_retention(tmp_path: Path, setting: str, kept: bool) -> None:
    """The [store] key reaches the pruner a gateway runs at start-up (T0 lies years back). The
    default prunes within milliseconds of start-up; kept events are watched for 2 s."""
    db = tmp_path / "gw" / "capigate.db"
    db.parent.mkdir()
    store = SQLiteStore(db)
    run(store.open())
    ingest(store, new_event(1, destination=None), new_event(2, destination=None))
    run(store.close())
    server = make_server(tmp_path / "gw", DEFAULT_CONFIG.replace("[server]", f"[store]\n{setting}\n\n[server]"))
    server.start()
    try:
        deadline = time.monotonic() + 2
        while True:
            with server.admin() as c:
                found = c.get("/api/events", params={"source": "px1"}).json()["events"]
            if len(found) < 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        server.stop()
    assert len(found) == (2 if kept else 1)  # SQLite keeps the newest event so its id is never reused
