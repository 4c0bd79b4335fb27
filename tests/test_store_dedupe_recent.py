"""The SQLite store's recent dedupe keys (capigate/store/sqlite/dedupe.py): appended in order,
kept in the writer's memory for its lookups, moved into the index in key order every
FLUSH_KEYS keys. A key must be found wherever it is (the recent table, the index, another
worker's writes), and the memory must never hold a key the table lost."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from capigate.errors import StoreError
from capigate.store import RequestQuery, SQLiteStore
from capigate.store.base import Retention
from capigate.store.sqlite import dedupe
from capigate.store.sqlite import ingest as sqlite_ingest
from capigate.store.sqlite.dedupe import DIRECT_AT, FLUSH_KEYS
from tests.storekit import run
from tests.test_store import T0, event, record, write_lock_held


def counts(path: Path) -> tuple[int, int]:
    """(keys in dedupe_recent, keys in dedupe_keys)."""
    with closing(sqlite3.connect(path)) as conn:
        recent = conn.execute("SELECT count(*) FROM dedupe_recent").fetchone()[0]
        indexed = conn.execute("SELECT count(*) FROM dedupe_keys").fetchone()[0]
    return recent, indexed


DAY_MS = 86_400_000
T1 = T0 + 2 * DAY_MS  # a prune at T1 keeping a day of keys flushes every recent key, drops T0's
KEEP_A_DAY = Retention(dedupe_days=1.0)


def rid(name: str) -> str:
    """A random-looking id (a version 5 UUID of ``name``), as a client's version 4 UUIDs are:
    two or more of them in a group go through the recent table (dedupe.scattered)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


PAD = 4  # new random keys added to a group, so that it has enough to be judged scattered


def padded(ids: list[str], name: str) -> list[str]:
    return ids + [rid(f"pad-{name}-{n}") for n in range(PAD)]


def ingest_ids(store: SQLiteStore, ids: list[str], request: str, at: int = T1, pad: int = PAD) -> tuple[int, int]:
    """(new keys stored, duplicates) of ``ids``, sent with ``pad`` new random keys."""
    keys = ids + [rid(f"pad-{request}-{n}") for n in range(pad)]  # the same each run: no luck in the sample
    result = run(
        store.ingest([event(n, dedupe_id=d) for n, d in enumerate(keys)], request_id=request, received_at_ms=at)
    )
    return result.stored - pad, len(result.duplicates)


@pytest.mark.parametrize("writer_process", [False, True], ids=["thread", "process"])
def test_a_key_is_found_in_the_recent_table_and_while_and_after_the_flush_moves_it_into_the_index(
    tmp_path: Path, writer_process: bool
) -> None:
    """The real threshold: FLUSH_KEYS random keys (version 4 UUIDs, as clients send them) move
    into the index a sixteenth a group, and every one of them stays a duplicate meanwhile."""
    path = tmp_path / "capigate.db"
    store = SQLiteStore(path, writer_process=writer_process)
    ids = [str(uuid.uuid4()) for _ in range(FLUSH_KEYS)]
    more = [str(uuid.uuid4()) for _ in range(1500)]
    sample = [event(n, dedupe_id=ids[n]) for n in range(0, FLUSH_KEYS, 97)]
    chunk = FLUSH_KEYS // 16

    async def scenario() -> list[Any]:
        await store.open()
        out: list[Any] = []

        async def send(keys: list[str], request: str) -> None:
            result = await store.ingest(
                [event(n, dedupe_id=d) for n, d in enumerate(keys)], request_id=request, received_at_ms=T0
            )
            out.append((result.stored, len(result.duplicates)))

        try:
            await send(ids[:5], "r0")
            await send(ids[:5], "r1")  # found in the recent keys
            for start in range(5, FLUSH_KEYS, 100):
                await send(ids[start : start + 100], f"b{start}")
            del out[2:]
            for n in range(8):  # the first starts the flush: each moves a sixteenth
                await send(more[n * 100 : n * 100 + 100], f"m{n}")
            late = await store.ingest(sample, request_id="late", received_at_ms=T0)  # the ninth
            out.append(((late.stored, len(late.duplicates)), counts(path)))
            for n in range(8, 15):  # the last seven
                await send(more[n * 100 : n * 100 + 100], f"m{n}")
            again = await store.ingest(sample, request_id="again", received_at_ms=T0)
            out.append(((again.stored, len(again.duplicates)), counts(path)))
        finally:
            await store.close()
        return out

    first, dup, *rest = run(scenario())
    assert (first, dup) == ((5, 0), (0, 5))
    assert rest[:8] == [(100, 0)] * 8
    (late, mid), (again, end) = rest[8], rest[16]
    assert late == again == (0, len(sample))  # each found, in the recent keys or the index
    assert mid == (FLUSH_KEYS + 800, 9 * chunk)  # the moved keys stay in the recent table until the last chunk
    assert end == (1500, FLUSH_KEYS)  # then go; the keys that came meanwhile wait for the next flush


def test_two_writers_on_one_file_find_each_others_recent_keys_and_flushes(tmp_path: Path) -> None:
    """``capigate serve --workers 2``: each writer reads the keys the other appended before
    its lookups, and drops from its memory what the other's flush moved (prune flushes)."""
    path = tmp_path / "capigate.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    run(a.open())
    run(b.open())
    try:
        k1, k2, k3, k4, k5, k6, k7, k8, k9, k10 = (rid(f"k{n}") for n in range(1, 11))
        # Each group has two new keys or more: a lone one is written directly (dedupe.scattered).
        assert ingest_ids(a, [rid("old-1"), rid("old-2")], "a0", at=T0) == (2, 0)
        assert ingest_ids(a, [k1, k2], "a1") == (2, 0)
        assert ingest_ids(b, [k2, k3, k6], "b1") == (2, 1)  # k2 from a's recent keys
        assert ingest_ids(a, [k3, k4, k7], "a2") == (2, 1)  # k3 from b's
        assert counts(path) == (8 + 4 * PAD, 0)
        run(b.prune(T1, KEEP_A_DAY))  # b moves every recent key into the index, then drops T0's
        assert counts(path) == (0, 6 + 3 * PAD)
        assert ingest_ids(a, [k1, k3, k5, k8], "a3") == (2, 2)  # from the index now
        assert ingest_ids(b, [k5, k4, k9, k10], "b2") == (2, 2)  # k5: a's recent key, after the flush
        assert counts(path) == (4 + 2 * PAD, 6 + 3 * PAD)
    finally:
        run(a.close())
        run(b.close())


def _kill_the_transaction(cur: sqlite3.Cursor) -> None:
    cur.execute("ROLLBACK")  # the group's RELEASE then fails: its whole transaction is lost


def test_a_lost_transaction_leaves_no_key_behind_in_the_writers_memory(tmp_path: Path) -> None:
    """An ingest whose group transaction is rolled back after it ran: its keys were in the
    writer's memory, and a retry (the client got an error) was turned away as a duplicate and
    lost. The writer forgets on a rollback and reads the table again."""
    store = SQLiteStore(tmp_path / "capigate.db", busy_timeout_ms=10_000)

    async def scenario() -> tuple[list[Any], Any]:
        await store.open()
        try:
            kept = [event(n, dedupe_id=d) for n, d in enumerate(padded([rid("k0"), rid("k00")], "kept"))]
            await store.ingest(kept, request_id="r0", received_at_ms=T0)  # the recent table not empty
            with write_lock_held(store.path):
                tasks = [
                    asyncio.ensure_future(store.ingest(lost_pair(), request_id="r1", received_at_ms=T0)),
                    asyncio.ensure_future(store._writer.submit(_kill_the_transaction)),
                ]
                await asyncio.sleep(0.2)
            lost = await asyncio.gather(*tasks, return_exceptions=True)
            retry = await store.ingest(lost_pair(), request_id="r2", received_at_ms=T0)
        finally:
            await store.close()
        return lost, retry

    lost, retry = run(scenario())
    assert all(isinstance(x, StoreError) and "rolled back" in str(x) for x in lost), lost
    assert (retry.stored, retry.duplicates) == (2 + PAD, [])
    assert counts(store.path) == (2 * (2 + PAD), 0)


def lost_pair() -> list[Any]:
    return [event(n, dedupe_id=d) for n, d in enumerate([rid(f"k{n}") for n in range(1, 2 + PAD + 1)])]


@pytest.mark.parametrize("flushed", [False, True], ids=["recent", "indexed"])
def test_the_journal_finds_the_request_that_stored_a_dedupe_id_wherever_its_key_is(
    tmp_path: Path, flushed: bool
) -> None:
    """``GET /api/requests?dedupe_id=`` reads the dedupe keys for the request that stored the
    event (the journal keeps no key for an id it would show as sent): the recent table's too."""
    store = SQLiteStore(tmp_path / "capigate.db")
    run(store.open())
    try:
        ingest_ids(store, [rid("old-1"), rid("old-2")], "before", at=T0)
        ingest_ids(store, [rid("order-1"), rid("order-2")], "stored-it")
        run(store.record_requests([record(1, request_id="stored-it", received_at=T1)]))
        if flushed:
            run(store.prune(T1, KEEP_A_DAY))
        assert counts(store.path) == ((0, 2 + PAD) if flushed else (2 * (2 + PAD), 0))
        found, _ = run(store.query_requests(RequestQuery(keys=[("dedupe_id", rid("order-2"))])))
        missing, _ = run(store.query_requests(RequestQuery(keys=[("dedupe_id", rid("order-3"))])))
    finally:
        run(store.close())
    assert [r.request_id for r in found] == ["stored-it"]
    assert missing == []


def test_the_writers_reads_of_the_recent_keys_search_the_rowid_rather_than_scan_the_table(tmp_path: Path) -> None:
    """Before each lookup the writer reads the table's bounds and its newer rows: min() and max()
    in one SELECT read every row (up to FLUSH_KEYS of them, a fifth of the writer's CPU)."""
    store = SQLiteStore(tmp_path / "capigate.db")
    run(store.open())
    run(store.close())
    with closing(sqlite3.connect(store.path)) as conn:
        for sql, params in ((sqlite_ingest._START, ()), (dedupe._NEWER, (1,))):
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            assert not [step for step in plan if step.startswith("SCAN dedupe_recent")], plan
            assert [step for step in plan if step.startswith("SEARCH dedupe_recent")], plan


def test_a_writer_finding_the_index_too_big_to_flush_into_writes_its_keys_there_directly(tmp_path: Path) -> None:
    """Past DIRECT_AT keys a flush writes nearly a page a key, all in one stall: new keys then go
    straight into the index, as before the recent table, and are found there."""
    store = SQLiteStore(tmp_path / "capigate.db")
    run(store.open())
    run(store.close())
    with closing(sqlite3.connect(store.path)) as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO dedupe_keys (source, dedupe_id, event_id, seen_at) SELECT 'px1', 'old-' || i, i, ? FROM n",
            (DIRECT_AT, T0),
        )
        conn.commit()
    store = SQLiteStore(store.path)
    run(store.open())
    try:
        assert ingest_ids(store, [rid("new-1"), "old-7", rid("new-3")], "r1") == (2, 1)
        assert ingest_ids(store, [rid("new-1"), rid("new-2")], "r2") == (1, 1)  # every key written directly
    finally:
        run(store.close())
    assert counts(store.path) == (0, DIRECT_AT + 3 + 2 * PAD)


@pytest.mark.parametrize(
    ("ids", "is_scattered"),
    [
        ([str(uuid.uuid4()) for _ in range(300)], True),  # clients' crypto.randomUUID()
        ([f"{n:064x}"[::-1] for n in range(300)], True),  # hash-like: the ends differ first
        ([f"G-12345.{1764700000000 + 37 * n}" for n in range(300)], False),  # GA4's client id and time
        ([f"r{n}" for n in range(1, 300)], False),  # a counter, "r10" sorting before "r9"
        ([f"1a2bt1r57-{ref}" for ref in range(100)], False),  # the bench's: one request's token, each event's ref
        ([f"app-open-{n}" for n in range(50)], False),
        (
            [f"r{1000 + n}-{(n * 7919) % 50000}" for n in range(35)],
            False,
        ),  # bench.in_process's W2: a counter, then a ref
        ([f"order-{uuid.uuid4()}" for _ in range(300)], True),  # random after a constant prefix
    ],
    ids=["uuid4", "hash-like", "ga4", "counter", "bench", "app-open", "in-process-w2", "prefixed-uuid4"],
)
def test_only_keys_that_would_each_dirty_a_page_of_the_index_go_through_the_recent_table(
    ids: list[str], is_scattered: bool
) -> None:
    """Ordered ids append to a few leaves, cheaply, and the recent table cost them three row
    operations more a key and a flush's stall (W1 over HTTP 0.97x, p99 612 against 245 ms)."""
    values: list[Any] = []
    for n, d in enumerate(ids):
        values += ("px1", d, n, T0)
    assert dedupe.scattered(values) is is_scattered


@pytest.mark.parametrize(
    ("keys", "is_scattered"),
    [
        ([(f"s{n % 50}", f"d{n}") for n in range(50)], False),  # one id a source: nothing to compare, written directly
        ([(f"s{n % 8}", str(uuid.uuid4())) for n in range(400)], True),  # 8 pixels' UUIDs, interleaved
        ([(f"s{n % 8}", f"t{1764700000000 + n}") for n in range(400)], False),  # 8 pixels' timestamps, interleaved
    ],
    ids=["one-a-source", "interleaved-uuid4", "interleaved-times"],
)
def test_a_sources_ids_are_compared_with_that_sources_own(keys: list[tuple[str, str]], is_scattered: bool) -> None:
    """Ids of several pixels in one group, interleaved: each is compared with its own source's
    ids (a group with one id a source was taken as scattered, and pruning's test found its keys
    in the recent table)."""
    values: list[Any] = []
    for n, (source, d) in enumerate(keys):
        values += (source, d, n, T0)
    assert dedupe.scattered(values) is is_scattered
