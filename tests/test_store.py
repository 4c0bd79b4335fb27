"""The Store contract, run against every backend, plus what is particular to SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

import capigate.store
from capigate.errors import Problem, StoreError
from capigate.responses import RequestView
from capigate.store import (
    EventQuery,
    NewEvent,
    PostgresStore,
    RequestQuery,
    RequestRecord,
    Retention,
    SQLiteStore,
    Store,
    StoredEvent,
    base,
    open_store,
)
from capigate.store import sqlite as sqlite_module
from capigate.store.sqlite import ingest as sqlite_ingest
from capigate.store.sqlite import inspector as sqlite_inspector
from capigate.store.sqlite import prune as sqlite_prune
from tests.storekit import run

T = TypeVar("T")
DAY_MS = 86_400_000
T0 = 1_700_000_000_000


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "capigate.db", busy_timeout_ms=10_000)
    run(opened.open())
    yield opened
    run(opened.close())


def event(
    n: int = 0,
    *,
    api: str = "axon",
    source: str = "px1",
    name: str = "purchase",
    dedupe_id: str | None = None,
    test_tag: str | None = None,
    payload: Any = None,
) -> NewEvent:
    body = msgspec.json.encode({"n": n, "user": {"em": "a" * 64}}) if payload is None else payload
    return NewEvent(
        api=api,
        source=source,
        name=name,
        event_time_ms=T0 + n,
        dedupe_id=dedupe_id,
        payload=body,
        test_tag=test_tag,
    )


def record(n: int = 0, **fields: Any) -> RequestRecord:
    defaults: dict[str, Any] = {
        "request_id": f"req-{n}",
        "received_at": T0 + n,
        "api": "axon",
        "source": "px1",
        "method": "POST",
        "path": "/v1/event",
        "status": 200,
        "client_ip": "203.0.113.7",
        "user_agent": "test",
        "latency_ms": 1.25,
    }
    return RequestRecord(**(defaults | fields))


def ingest(store: Store, events: list[NewEvent], received_at_ms: int = T0, request: str = "r") -> Any:
    return run(store.ingest(events, request_id=request, received_at_ms=received_at_ms))


def all_events(store: Store, **filters: Any) -> list[StoredEvent]:
    rows, _ = run(store.query_events(EventQuery(limit=1000, **filters)))
    return rows


def pages(fetch: Callable[[int | None], tuple[list[Any], int | None]]) -> list[list[Any]]:
    result, cursor = [], None
    while True:
        rows, cursor = fetch(cursor)
        result.append(rows)
        if cursor is None:
            return result


# --- ingest and dedupe --------------------------------------------------------------------


def test_ingested_events_come_back_newest_first_with_every_field(store: Store) -> None:
    result = ingest(store, [event(1, dedupe_id="d1", test_tag="t"), event(2)], request="req-9")
    assert (result.stored, result.duplicates) == (2, [])
    newest, oldest = all_events(store)
    assert newest.id > oldest.id
    assert newest.payload == {"n": 2, "user": {"em": "a" * 64}}
    assert (oldest.api, oldest.source, oldest.name) == ("axon", "px1", "purchase")
    assert (oldest.event_time, oldest.received_at) == (T0 + 1, T0)
    assert (oldest.dedupe_id, oldest.test_tag, oldest.request_id) == ("d1", "t", "req-9")
    assert oldest.status == "stored"


def test_first_dedupe_id_wins_within_a_batch(store: Store) -> None:
    batch = [event(0, dedupe_id="a"), event(1, dedupe_id="b"), event(2, dedupe_id="a")]
    result = ingest(store, batch)
    assert (result.stored, result.duplicates) == (2, [2])
    assert sorted(e.payload["n"] for e in all_events(store)) == [0, 1]


def test_first_dedupe_id_wins_across_batches(store: Store) -> None:
    ingest(store, [event(0, dedupe_id="a")])
    result = ingest(store, [event(1, dedupe_id="b"), event(2, dedupe_id="a")])
    assert (result.stored, result.duplicates) == (1, [1])
    assert [e.payload["n"] for e in all_events(store)] == [1, 0]


def test_dedupe_ids_are_scoped_to_their_source(store: Store) -> None:
    result = ingest(store, [event(0, source="px1", dedupe_id="a"), event(1, source="px2", dedupe_id="a")])
    assert (result.stored, result.duplicates) == (2, [])


def test_test_events_dedupe_within_their_tag_and_never_against_real_events(store: Store) -> None:
    """The rule events.dedupe_scope: a test sent with an order's real id must not make the
    order a duplicate (dropped, never relayed), nor one test run the next run's events."""
    first = ingest(
        store, [event(0, dedupe_id="order-1", test_tag="ci-1"), event(1, dedupe_id="order-1", test_tag="ci-1")]
    )
    assert (first.stored, first.duplicates) == (1, [1])
    later = ingest(store, [event(2, dedupe_id="order-1"), event(3, dedupe_id="order-1", test_tag="ci-2")])
    assert (later.stored, later.duplicates) == (2, [])
    again = ingest(store, [event(4, dedupe_id="order-1"), event(5, dedupe_id="order-1", test_tag="ci-1")])
    assert (again.stored, again.duplicates) == (0, [0, 1])
    assert [(e.payload["n"], e.test_tag) for e in all_events(store)] == [(3, "ci-2"), (2, None), (0, "ci-1")]


def test_an_appsflyer_dedupe_id_counts_per_event_name_an_axon_one_per_pixel(store: Store) -> None:
    """The rule events.dedupe_scope: an AppsFlyer app's dedupe id is an eventValue parameter (its
    dedupe_key, af_order_id), which an af_refund shares with its af_purchase by design: the
    refund was dropped as the purchase's duplicate, never relayed (a trial)."""
    af = {"api": "appsflyer", "source": "com.example.orders"}
    first = ingest(
        store,
        [
            event(0, **af, name="af_purchase", dedupe_id="O-2"),
            event(1, **af, name="af_refund", dedupe_id="O-2"),
            event(2, **af, name="af_refund", dedupe_id="O-2"),
            event(3, name="purchase", dedupe_id="O-2"),
            event(4, name="refund", dedupe_id="O-2"),
        ],
    )
    assert (first.stored, first.duplicates) == (3, [2, 4])
    again = ingest(
        store, [event(5, **af, name="af_refund", dedupe_id="O-2"), event(6, **af, name="x", dedupe_id="O-2")]
    )
    assert (again.stored, again.duplicates) == (1, [0])
    tagged = ingest(store, [event(7, **af, name="af_refund", dedupe_id="O-2", test_tag="ci")])
    assert (tagged.stored, tagged.duplicates) == (1, [])


def test_events_without_dedupe_id_are_never_duplicates(store: Store) -> None:
    ingest(store, [event(0), event(0)])
    result = ingest(store, [event(0)])
    assert (result.stored, result.duplicates) == (1, [])
    assert len(all_events(store)) == 3


def test_batch_larger_than_one_statement_dedupes_every_position(store: Store) -> None:
    # 700 keys span several IN (...) lists and multi-row INSERT chunks.
    first = ingest(store, [event(i, dedupe_id=f"k{i}") for i in range(0, 700, 2)])
    result = ingest(store, [event(i, dedupe_id=f"k{i}") for i in range(700)])
    assert first.stored == 350
    assert (result.stored, result.duplicates) == (350, list(range(0, 700, 2)))
    assert len({e.id for e in all_events(store)}) == 700


def test_empty_batch_stores_nothing(store: Store) -> None:
    assert ingest(store, []).stored == 0
    assert all_events(store) == []


# --- prune ------------------------------------------------------------------------------


def test_prune_forgets_dedupe_keys_older_than_retention_so_the_id_is_accepted_again(
    store: Store,
) -> None:
    ingest(store, [event(0, dedupe_id="old")], received_at_ms=T0)
    ingest(store, [event(1, dedupe_id="new")], received_at_ms=T0 + 2 * DAY_MS)
    pruned = run(store.prune(T0 + 3 * DAY_MS, Retention(dedupe_days=2)))
    assert pruned.dedupe_keys == 1
    again = ingest(store, [event(2, dedupe_id="old"), event(3, dedupe_id="new")])
    assert (again.stored, again.duplicates) == (1, [1])


def test_record_requests_writes_every_entry_of_a_buffered_batch(store: Store) -> None:
    run(store.record_requests([record(n, status=200 + 100 * (n % 3)) for n in range(5)]))
    rows, _ = run(store.query_requests(RequestQuery()))
    assert [r.request_id for r in rows] == [f"req-{n}" for n in (4, 3, 2, 1, 0)]
    assert [r.status for r in rows] == [300, 200, 400, 300, 200]


def test_prune_removes_journal_entries_older_than_journal_days(store: Store) -> None:
    for n, age_days in enumerate([10, 7, 1]):
        run(store.record_requests([record(n, received_at=T0 - age_days * DAY_MS)]))
    pruned = run(store.prune(T0, Retention(journal_days=7)))
    assert pruned.requests == 1  # exactly 7 days old is not older than 7 days
    rows, _ = run(store.query_requests(RequestQuery()))
    assert [r.request_id for r in rows] == ["req-2", "req-1"]


def test_prune_keeps_at_most_journal_max_rows_removing_the_oldest(store: Store) -> None:
    for n in range(10):
        run(store.record_requests([record(n)]))
    pruned = run(store.prune(T0, Retention(journal_days=365, journal_max_rows=4)))
    assert pruned.requests == 6
    rows, _ = run(store.query_requests(RequestQuery()))
    assert [r.request_id for r in rows] == ["req-9", "req-8", "req-7", "req-6"]


# --- journal ----------------------------------------------------------------------------


def test_request_records_round_trip_with_problems_and_warnings(store: Store) -> None:
    problems = [Problem("events[0].name", "required", "name is required")]
    warnings = [Problem("", "deprecated", "use v2"), Problem("a", "b", "c")]
    original = record(
        1, problems=problems, warnings=warnings, events_received=3, events_stored=2,
        events_duplicate=1, test_tag="t", source=None, client_ip=None, user_agent=None,
    )  # fmt: skip
    run(store.record_requests([original]))
    [stored] = run(store.query_requests(RequestQuery()))[0]
    assert stored.id >= 1
    assert RequestRecord(**{f: getattr(stored, f) for f in RequestRecord.__struct_fields__}) == original
    assert all(isinstance(p, Problem) for p in stored.problems + stored.warnings)


# --- queries ----------------------------------------------------------------------------


@pytest.fixture
def filled(store: Store) -> Store:
    """24 events: 3 sources x 2 names x 2 tags, received at T0 .. T0+23 s, one per request."""
    n = 0
    for source in ("px1", "px2", "px3"):
        for name in ("purchase", "lead"):
            for tag in (None, "t1"):
                for _ in range(2):
                    ingest(store, [event(n, source=source, name=name, test_tag=tag)], T0 + n * 1000)
                    run(store.record_requests([record(n, source=source, status=200 + n % 3 * 100)]))
                    n += 1
    return store


EVENT_FILTERS = {
    "source": ({"source": "px2"}, lambda e: e.source == "px2"),
    "name": ({"name": "lead"}, lambda e: e.name == "lead"),
    "status": ({"status": "stored"}, lambda e: e.status == "stored"),
    "status-none": ({"status": "sent"}, lambda e: False),
    "test_tag": ({"test_tag": "t1"}, lambda e: e.test_tag == "t1"),
    "since-inclusive": ({"since_ms": T0 + 5000}, lambda e: e.received_at >= T0 + 5000),
    "until-exclusive": ({"until_ms": T0 + 5000}, lambda e: e.received_at < T0 + 5000),
    "since-until": (
        {"since_ms": T0 + 3000, "until_ms": T0 + 9000},
        lambda e: T0 + 3000 <= e.received_at < T0 + 9000,
    ),
    "combined": (
        {"source": "px1", "name": "lead", "test_tag": "t1"},
        lambda e: (e.source, e.name, e.test_tag) == ("px1", "lead", "t1"),
    ),
}


@pytest.mark.parametrize("case", EVENT_FILTERS.values(), ids=EVENT_FILTERS.keys())
def test_event_filters_return_exactly_the_matching_events_newest_first(
    filled: Store, case: tuple[dict[str, Any], Callable[[StoredEvent], bool]]
) -> None:
    filters, matches = case
    everything = all_events(filled)
    expected = [e.id for e in everything if matches(e)]
    assert [e.id for e in all_events(filled, **filters)] == expected
    assert everything == sorted(everything, key=lambda e: -e.id)


REQUEST_FILTERS = {
    "source": ({"source": "px3"}, lambda r: r.source == "px3"),
    "api": ({"api": "axon"}, lambda r: r.api == "axon"),
    "api-none": ({"api": "appsflyer"}, lambda r: False),
    "status": ({"status": 300}, lambda r: r.status == 300),
    "since-inclusive": ({"since_ms": T0 + 7}, lambda r: r.received_at >= T0 + 7),
    "until-exclusive": ({"until_ms": T0 + 7}, lambda r: r.received_at < T0 + 7),
    "since-until": (
        {"since_ms": T0 + 2, "until_ms": T0 + 4},
        lambda r: r.received_at in (T0 + 2, T0 + 3),
    ),
}


@pytest.mark.parametrize("case", REQUEST_FILTERS.values(), ids=REQUEST_FILTERS.keys())
def test_request_filters_return_exactly_the_matching_records_newest_first(
    filled: Store, case: tuple[dict[str, Any], Callable[[RequestRecord], bool]]
) -> None:
    filters, matches = case
    everything, _ = run(filled.query_requests(RequestQuery(limit=1000)))
    assert [r.id for r in everything] == sorted((r.id for r in everything), reverse=True)
    expected = [r.id for r in everything if matches(r)]
    rows, _ = run(filled.query_requests(RequestQuery(limit=1000, **filters)))
    assert [r.id for r in rows] == expected


@pytest.mark.parametrize("limit", [1, 5, 6, 24, 25])
@pytest.mark.parametrize("filters", [{}, {"name": "lead"}], ids=["all", "name"])
def test_event_cursor_pages_cover_every_row_once_without_gaps(
    filled: Store, limit: int, filters: dict[str, Any]
) -> None:
    def fetch(cursor: int | None) -> tuple[list[StoredEvent], int | None]:
        return run(filled.query_events(EventQuery(limit=limit, cursor=cursor, **filters)))

    paged = pages(fetch)
    assert all(len(page) == limit for page in paged[:-1])
    assert 0 < len(paged[-1]) <= limit  # a full last page ends the paging too
    ids = [e.id for page in paged for e in page]
    assert ids == [e.id for e in all_events(filled, **filters)]


@pytest.mark.parametrize("limit", [1, 7, 24, 30])
def test_request_cursor_pages_cover_every_row_once_without_gaps(filled: Store, limit: int) -> None:
    def fetch(cursor: int | None) -> tuple[list[RequestView], int | None]:
        return run(filled.query_requests(RequestQuery(limit=limit, cursor=cursor, source="px1")))

    ids = [r.id for page in pages(fetch) for r in page]
    everything, _ = run(filled.query_requests(RequestQuery(limit=1000, source="px1")))
    assert ids == [r.id for r in everything]
    assert len(ids) == 8


def test_cursor_returns_only_rows_with_smaller_ids(filled: Store) -> None:
    oldest_first = [e.id for e in all_events(filled)][::-1]  # not 1, 2, 3 … on PostgreSQL: blocks
    rows, _ = run(filled.query_events(EventQuery(cursor=oldest_first[9], limit=1000)))
    assert [e.id for e in rows] == oldest_first[8::-1]


def test_limit_is_clamped_between_1_and_1000(store: Store) -> None:
    ingest(store, [event(i) for i in range(1001)])
    assert len(run(store.query_events(EventQuery(limit=0)))[0]) == 1
    rows, next_cursor = run(store.query_events(EventQuery(limit=5000)))
    assert (len(rows), next_cursor) == (1000, rows[-1].id)


# --- concurrency, failures, lifecycle ----------------------------------------------------


def test_concurrent_ingest_from_50_coroutines_keeps_counts_exact(store: Store) -> None:
    async def worker(w: int) -> tuple[int, int]:
        stored = duplicates = 0
        for b in range(10):
            # Every worker races for the same 100 shared keys, plus 5 keys of its own.
            batch = [event(w, source=f"px{i % 2}", dedupe_id=f"shared-{i}") for i in range(b * 10, b * 10 + 10)]
            batch += [event(w, dedupe_id=f"own-{w}-{b}-{i}") for i in range(5)] + [event(w)]
            result = await store.ingest(batch, request_id=f"w{w}", received_at_ms=T0)
            stored, duplicates = stored + result.stored, duplicates + len(result.duplicates)
        return stored, duplicates

    async def scenario() -> list[tuple[int, int]]:
        return await asyncio.gather(*(worker(w) for w in range(50)))

    totals = run(scenario())
    assert sum(s for s, _ in totals) == 100 + 50 * 10 * 6
    assert sum(d for _, d in totals) == 50 * 100 - 100
    events = [e for page in pages(lambda c: run(store.query_events(EventQuery(limit=1000, cursor=c)))) for e in page]
    assert len(events) == 100 + 50 * 10 * 6
    keyed = [(e.source, e.dedupe_id) for e in events if e.dedupe_id is not None]
    assert len(keyed) == len(set(keyed))


@pytest.mark.parametrize("payload", ["not bytes", bytearray(b"{}")], ids=["str", "bytearray"])
def test_a_failing_ingest_stores_none_of_its_events_or_keys(store: Store, payload: Any) -> None:
    """A payload must be bytes, on every backend (the SQLite writer process decodes them as
    bytearrays, pipe.PipedEvent: a bytearray given to the store is refused all the same)."""
    bad = [event(0, dedupe_id="x"), event(1, dedupe_id="y", payload=payload)]
    with pytest.raises(TypeError, match="position 1: payload must be bytes"):
        ingest(store, bad)
    assert all_events(store) == []
    assert ingest(store, [event(2, dedupe_id="x"), event(3, dedupe_id="y")]).stored == 2


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another connection holds the database's write lock through the block: the writes
    submitted meanwhile pile up behind it, and are taken in by the writer's next groups."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("COMMIT")
        blocker.close()


def test_a_failing_job_rolls_back_alone_inside_its_group_commit(
    sqlite_store: SQLiteStore,
) -> None:
    async def scenario() -> list[Any]:
        with write_lock_held(sqlite_store.path):
            jobs = [
                sqlite_store.ingest([event(0, dedupe_id="a")], request_id="r1", received_at_ms=T0),
                sqlite_store.ingest(
                    [event(1, dedupe_id="b"), event(2, payload="not bytes")],
                    request_id="r2",
                    received_at_ms=T0,
                ),
                sqlite_store.record_requests([record(3)]),
            ]
            tasks = [asyncio.ensure_future(job) for job in jobs]
            await asyncio.sleep(0)  # every task has queued its job
        return await asyncio.gather(*tasks, return_exceptions=True)

    before = sqlite_store.stats.groups, sqlite_store.stats.jobs
    good, failed, journal = run(scenario())
    assert (sqlite_store.stats.groups - before[0], sqlite_store.stats.jobs - before[1]) == (1, 3)
    assert isinstance(failed, TypeError)
    assert good.stored == 1
    assert journal is None
    assert [e.dedupe_id for e in all_events(sqlite_store)] == ["a"]
    assert ingest(sqlite_store, [event(4, dedupe_id="b")]).stored == 1  # its key rolled back


def test_ingests_of_one_group_are_stored_together_and_the_first_event_wins_across_them(
    sqlite_store: SQLiteStore,
) -> None:
    batches = [
        [event(0, dedupe_id="a"), event(1, dedupe_id="b")],
        [event(2, dedupe_id="b"), event(3), event(4, dedupe_id="c")],
        [event(5, dedupe_id="c"), event(6, dedupe_id="a"), event(7, dedupe_id="d")],
    ]

    async def scenario() -> list[Any]:
        with write_lock_held(sqlite_store.path):
            tasks = [
                asyncio.ensure_future(sqlite_store.ingest(b, request_id=f"r{i}", received_at_ms=T0))
                for i, b in enumerate(batches)
            ]
            await asyncio.sleep(0)
        return await asyncio.gather(*tasks)

    before = sqlite_store.stats.groups
    results = run(scenario())
    assert sqlite_store.stats.groups - before == 1
    assert [(r.stored, r.duplicates) for r in results] == [(2, []), (2, [0]), (1, [0, 1])]
    stored = all_events(sqlite_store)[::-1]  # newest first
    assert [(e.request_id, e.dedupe_id) for e in stored] == [
        ("r0", "a"), ("r0", "b"), ("r1", None), ("r1", "c"), ("r2", "d"),
    ]  # fmt: skip
    assert [e.id for e in stored] == list(range(stored[0].id, stored[0].id + 5))


@pytest.mark.parametrize("writer_process", [False, True], ids=["thread", "process"])
def test_a_group_commit_stores_at_most_a_thousand_events(tmp_path: Path, writer_process: bool) -> None:
    """Every request of a group waits for its commit: 25 batches of 100 queued at once are
    stored in groups of 10, 10 and 5 batches, not one (writer.GroupSize), so answers come
    back while the rest are stored."""
    store = SQLiteStore(tmp_path / "capigate.db", busy_timeout_ms=10_000, writer_process=writer_process)

    async def scenario() -> list[Any]:
        await store.open()
        with write_lock_held(store.path):
            tasks = [
                asyncio.ensure_future(
                    store.ingest([event(b * 100 + i) for i in range(100)], request_id=f"r{b}", received_at_ms=T0)
                )
                for b in range(25)
            ]
            await asyncio.sleep(0.3)  # every ingest has reached the writer (the process: its pipe)
        results = await asyncio.gather(*tasks)
        await store.close()
        return results

    before = store.stats.groups
    results = run(scenario())
    assert [r.stored for r in results] == [100] * 25
    assert store.stats.groups - before == 3


def test_cancelling_an_awaiting_coroutine_leaves_the_writer_serving(store: Store) -> None:
    async def scenario() -> int:
        task = asyncio.ensure_future(store.ingest([event(0)], request_id="r", received_at_ms=T0))
        await asyncio.sleep(0)
        task.cancel()
        result = await store.ingest([event(1)], request_id="r", received_at_ms=T0)
        return result.stored

    assert run(scenario()) == 1
    assert len(all_events(store)) == 2  # a queued write is committed even when cancelled


def test_close_finishes_the_writes_queued_before_it(make_store: Callable[[], Store]) -> None:
    async def scenario() -> list[Any]:
        store = make_store()
        await store.open()
        tasks = [asyncio.ensure_future(store.ingest([event(i)], request_id="r", received_at_ms=T0)) for i in range(300)]
        await asyncio.sleep(0)  # every ingest is queued
        await store.close()
        return await asyncio.gather(*tasks)

    assert [r.stored for r in run(scenario())] == [1] * 300
    reopened = make_store()
    run(reopened.open())
    try:
        assert len(all_events(reopened)) == 300
    finally:
        run(reopened.close())


@pytest.mark.parametrize("writer_process", [False, True], ids=["thread", "process"])
def test_close_leaves_no_wal_or_shm_file_after_reads(tmp_path: Path, writer_process: bool) -> None:
    """The writer's connection closes last, so it copies the WAL back and deletes it: a
    reader that has read holds its lock until it closes, and a read-only connection closing
    last leaves the -wal (tens of MB after load) and -shm files beside the database."""
    path = tmp_path / "capigate.db"
    store = SQLiteStore(path, writer_process=writer_process)

    async def scenario() -> None:
        await store.open()
        for n in range(20):
            await store.ingest([event(n * 100 + i) for i in range(100)], request_id=f"r{n}", received_at_ms=T0)
        await asyncio.gather(*(store.query_events(EventQuery(limit=5)) for _ in range(8)))  # every reader reads
        assert path.with_name("capigate.db-wal").stat().st_size > 0
        await store.close()

    run(scenario())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["capigate.db", "capigate.db-writer.lock"]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (2000,)


def test_writes_and_reads_after_close_raise_store_error(store: Store) -> None:
    run(store.close())
    with pytest.raises(StoreError):
        ingest(store, [event(0)])
    with pytest.raises(StoreError):
        run(store.query_events(EventQuery()))
    run(store.close())  # closing twice is harmless


def test_a_reopened_store_sees_everything_written_before(make_store: Callable[[], Store]) -> None:
    first = make_store()
    run(first.open())
    ingest(first, [event(0, dedupe_id="a"), event(1)])
    run(first.record_requests([record(0)]))
    run(first.close())
    second = make_store()
    run(second.open())
    try:
        assert len(all_events(second)) == 2
        assert len(run(second.query_requests(RequestQuery()))[0]) == 1
        assert ingest(second, [event(2, dedupe_id="a")]).duplicates == [0]
    finally:
        run(second.close())


def test_check_writable_passes_on_an_open_store(store: Store) -> None:
    run(store.check_writable())


def test_check_writable_raises_store_error_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "c.db", busy_timeout_ms=50)
    run(store.open())
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            run(store.check_writable())
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    run(store.check_writable())
    run(store.close())


# --- SQLite specifics -------------------------------------------------------------------


def test_sqlite_file_uses_wal_and_records_the_schema_version(sqlite_store: SQLiteStore) -> None:
    with closing(sqlite3.connect(sqlite_store.path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(sqlite_module.SCHEMA_VERSION,)]
    assert sqlite_store.synchronous == "FULL"


def test_sqlite_refuses_a_database_with_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (?)", (sqlite_module.SCHEMA_VERSION + 1,))
    store = SQLiteStore(path)
    with pytest.raises(StoreError, match=f"schema version {sqlite_module.SCHEMA_VERSION + 1}"):
        run(store.open())
    run(store.close())


def test_sqlite_rejects_an_unknown_synchronous_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "x.db", synchronous="SOMETIMES")


def explain(path: Path, sql: str, params: list[Any]) -> str:
    with closing(sqlite3.connect(path)) as conn:
        return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


EVENTS, REQUESTS = sqlite_module.events_sql, sqlite_module.requests_sql
PLANS = {
    "events-source": (
        EVENTS(EventQuery(source="a", cursor=9)),
        "event_blocks_source (source=? AND first_id<?)",
    ),
    "events-source-api": (
        EVENTS(EventQuery(source="a", api="axon", cursor=9)),
        "event_blocks_source (source=? AND first_id<?)",
    ),
    "events-name": (EVENTS(EventQuery(name="a", since_ms=1)), "k USING PRIMARY KEY (name=?)"),
    "events-name-cursor": (EVENTS(EventQuery(name="a", cursor=9)), "k USING PRIMARY KEY (name=? AND first_id<?)"),
    "events-stored": (EVENTS(EventQuery(status="stored", cursor=9)), "event_blocks_stored (first_id<?)"),
    "events-since": (EVENTS(EventQuery(since_ms=1)), "event_blocks_received_at (received_at>?)"),
    "events-since-until": (
        EVENTS(EventQuery(since_ms=1, until_ms=2)),
        "event_blocks_received_at (received_at>? AND received_at<?)",
    ),
    "events-request": (EVENTS(EventQuery(request=("r", 5))), "event_blocks_received_at (received_at=?)"),
    "events-test-tag": (EVENTS(EventQuery(test_tag="t", source="a")), "events_test_tag_id (test_tag=?)"),
    "events-delivered-source": (
        EVENTS(EventQuery(status="delivered", source="a")),
        "event_blocks_source (source=?)",
    ),
    "events-cursor": (EVENTS(EventQuery(cursor=9)), "INTEGER PRIMARY KEY (rowid<?)"),
    "requests-source": (REQUESTS(RequestQuery(source="a")), "requests_source_id (source=?)"),
    "requests-status": (REQUESTS(RequestQuery(status=500)), "requests_unusual_status_id (status=?)"),
    "requests-status-class": (
        REQUESTS(RequestQuery(status_class=4)),
        "requests_unusual_status_id (status>? AND status<?)",
    ),
    "requests-since": (
        REQUESTS(RequestQuery(since_ms=1, api="axon")),
        "requests_received_at (received_at>?)",
    ),
    # a name is read off the rows (store/sqlite/inspector.journal_name): the window's index still
    "requests-since-name": (
        REQUESTS(RequestQuery(since_ms=1, keys=[("name", "purchase")])),
        "requests_received_at (received_at>?)",
    ),
    "prune-keys-walk": (
        (sqlite_prune._WALK, [1, 0, 0, 10]),
        "event_blocks_received_at (received_at>? AND received_at<?)",
    ),
    "prune-key": ((sqlite_prune._DELETE_KEY, ["s", "d", 1]), "PRIMARY KEY (source=? AND dedupe_id=?)"),
    "prune-keys-aging": ((sqlite_prune._AGING, [1, 10]), "PRIMARY KEY (seen_at<?)"),
    "prune-journal": (
        ("DELETE FROM requests WHERE received_at < ?", [1]),
        "requests_received_at (received_at<?)",
    ),
    "request-keys": ((sqlite_inspector.REQUEST_KEYS_SQL, [1, "r"]), "request_keys_received_at (received_at=?)"),
}


def test_the_dedupe_lookup_reads_the_ids_then_searches_the_index_for_each(sqlite_store: SQLiteStore) -> None:
    """Rule: the ids of a group go as one JSON array, each found through the dedupe keys' primary
    key, never a scan of the index."""
    plan = explain(sqlite_store.path, sqlite_ingest.SEEN_SQL, ['["a", "b"]', "s"])
    scan, search = plan.split(" | ")
    assert scan.startswith("SCAN j VIRTUAL TABLE"), plan
    assert search == "SEARCH d USING PRIMARY KEY (source=? AND dedupe_id=?)", plan


@pytest.mark.parametrize("case", PLANS.values(), ids=PLANS.keys())
def test_sqlite_query_plans_search_through_the_indexes(
    sqlite_store: SQLiteStore, case: tuple[tuple[str, list[Any]], str]
) -> None:
    (sql, params), expected = case
    plan = explain(sqlite_store.path, sql, params)
    assert plan.startswith("SEARCH ") and expected in plan, plan


def test_sqlite_equality_filters_need_no_sort_step(sqlite_store: SQLiteStore) -> None:
    """Rule: blocks never overlap, so their events newest first are read in order, unsorted."""
    queries = (
        EventQuery(source="a"), EventQuery(name="b"), EventQuery(status="c"), EventQuery(status="stored"),
        EventQuery(source="a", api="axon", name="b", cursor=9), EventQuery(status="delivered", name="b"),
        # a trial: the window's blocks were read and sorted, 2 s for a page of a week's events
        EventQuery(status="delivered", since_ms=1), EventQuery(status="delivered", since_ms=1, api="axon"),
    )  # fmt: skip
    for query in queries:
        assert "TEMP B-TREE" not in explain(sqlite_store.path, *sqlite_module.events_sql(query)), query


FILTERS_ONE_EACH: list[dict[str, Any]] = [
    {"source": "a"}, {"api": "axon"}, {"name": "b"}, {"test_tag": "t"}, {"since_ms": 1}, {"until_ms": 2},
    {"cursor": 9}, {"request": ("r", 5)}, *({"status": s} for s in ("stored", "pending", "delivered", "dead", "x")),
]  # fmt: skip


def test_sqlite_no_event_query_makes_an_index_of_every_event(sqlite_store: SQLiteStore) -> None:
    """Rule: no filter, alone or with another, has SQLite build an automatic index of the
    events (a scan of every event, each time: it did for a relay state with a source)."""
    for first in FILTERS_ONE_EACH:
        for second in FILTERS_ONE_EACH:
            query = EventQuery(**(first | second))
            plan = explain(sqlite_store.path, *sqlite_module.events_sql(query))
            assert "AUTOMATIC" not in plan, (query, plan)


@pytest.mark.parametrize("query", [RequestQuery(status=200), RequestQuery(status_class=2)], ids=["200", "2xx"])
def test_sqlite_a_page_of_200s_is_read_off_the_journals_newest_rows(
    sqlite_store: SQLiteStore, query: RequestQuery
) -> None:
    """The status index has no 200s (schema.UNUSUAL_STATUS): they are most rows, read newest
    first with no sort step, a page found in the first rows."""
    plan = explain(sqlite_store.path, *sqlite_module.requests_sql(query))
    assert plan.startswith("SCAN requests") and "TEMP B-TREE" not in plan, plan


def test_sqlite_a_name_filter_reads_the_journal_newest_first_and_stops_at_the_page(sqlite_store: SQLiteStore) -> None:
    """A name on the journal's rows has no index: the rows are read newest first, no sort
    step, so that a page of a common name is found in its first rows; the key rows of the
    requests of several names are read once, as a list."""
    plan = explain(sqlite_store.path, *sqlite_module.requests_sql(RequestQuery(keys=[("name", "purchase")])))
    assert plan.startswith("SCAN requests") and "TEMP B-TREE" not in plan, plan
    assert "LIST SUBQUERY" in plan and "request_keys USING PRIMARY KEY (kind=? AND value=?)" in plan, plan


# --- open_store and the public surface --------------------------------------------------


def test_open_store_takes_a_plain_path_or_a_sqlite_url(tmp_path: Path) -> None:
    plain = open_store(str(tmp_path / "a.db"), synchronous="NORMAL")
    url = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    assert isinstance(plain, SQLiteStore) and isinstance(url, SQLiteStore)
    assert (plain.path, plain.synchronous) == (tmp_path / "a.db", "NORMAL")
    assert url.path == tmp_path / "b.db"
    run(url.open())
    run(url.close())
    assert (tmp_path / "b.db").exists()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_store_takes_a_postgresql_url_with_a_schema_and_drops_sqlite_options(scheme: str) -> None:
    opened = open_store(f"{scheme}://u:secret@h/db?schema=capigate_a&sslmode=disable", synchronous="NORMAL")
    assert isinstance(opened, PostgresStore)
    assert (opened.url, opened.schema) == (f"{scheme}://u:secret@h/db?sslmode=disable", "capigate_a")
    assert "secret" not in repr(opened)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "unknown store URL scheme"),
        ("sqlite:///", "needs a file path"),
        (":memory:", "needs a file path"),
    ],
)
def test_open_store_refuses_what_it_cannot_open(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(url)


def test_store_package_exports_a_sorted_complete_list() -> None:
    exported = capigate.store.__all__
    assert exported == sorted(exported)
    assert set(exported) == {*base.__all__, "SQLiteStore", "PostgresStore", "open_store"}
    assert all(hasattr(capigate.store, name) for name in exported)
