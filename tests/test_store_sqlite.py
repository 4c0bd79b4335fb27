"""What is particular to the SQLite store's writes: the schema-3 index of stored events, NULLs
bound as 0, and the lock file that queues the writers of several processes on one database
(and that a writer waits for the busy timeout at most)."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest

from capigate.errors import StoreError
from capigate.store import EventQuery, IngestResult, JournalRecord, NewEvent, RequestQuery, SQLiteStore
from capigate.store.base import Retention
from capigate.store.sqlite.lock import ProcessLock
from capigate.store.sqlite.schema import SCHEMA_VERSION
from tests.storekit import run

T0 = 1_700_000_000_000
_DAY = 86_400_000
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="flock and fork are POSIX")


def new_event(
    n: int, *, dedupe_id: str | None = None, test_tag: str | None = None, relayed: bool = False, name: str = "purchase"
) -> NewEvent:
    return NewEvent(
        api="axon",
        source="px1",
        name=name,
        event_time_ms=T0 + n,
        dedupe_id=dedupe_id,
        payload=msgspec.json.encode({"n": n}),
        test_tag=test_tag,
        destination="axon:px1" if relayed else None,
    )


def indexes(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}


def _downgrade(path: Path, version: int, *statements: str) -> None:
    """Take a closed store's file back to an older schema ``version``: what ``statements`` undo."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (version,))


# What version 11 changed: the blocks, for the events' own indexes.
_BEFORE_BLOCKS: Final = (
    "DROP TABLE event_blocks", "DROP TABLE block_names",
    "CREATE INDEX events_source_id ON events (source, id)", "CREATE INDEX events_name_id ON events (name, id)",
    "CREATE INDEX events_stored ON events (status) WHERE status = 'stored'",
    "CREATE INDEX events_received_at ON events (received_at)",
)  # fmt: skip


def _assert_at_current_version(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


# --- schema 3 and the values bound --------------------------------------------------------


def test_sqlite_migrates_a_version_2_database_to_the_index_of_stored_events(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    store = SQLiteStore(path)
    run(store.open())
    run(store.ingest([new_event(0), new_event(1, relayed=True)], request_id="r", received_at_ms=T0))
    run(store.close())
    _downgrade(
        path, 2, *_BEFORE_BLOCKS, "DROP INDEX events_stored", "CREATE INDEX events_status_id ON events (status, id)"
    )

    store = SQLiteStore(path)
    run(store.open())
    try:
        rows, _ = run(store.query_events(EventQuery(status="stored")))
        assert [e.payload for e in rows] == [{"n": 0}]
        rows, _ = run(store.query_events(EventQuery(status="pending")))
        assert [e.payload for e in rows] == [{"n": 1}]
    finally:
        run(store.close())
    assert "event_blocks_stored" in indexes(path) and not {"events_stored", "events_status_id"} & indexes(path)
    _assert_at_current_version(path)


def test_sqlite_migrates_a_version_10_database_to_a_block_for_each_event(tmp_path: Path) -> None:
    """Schema 11: an older file's events become a block each, found by every filter as before;
    the per-event indexes go, and new requests get a block of their events."""
    path = tmp_path / "v10.db"
    store = SQLiteStore(path)
    run(store.open())
    old = [new_event(0, name="a"), new_event(1, name="b", relayed=True), new_event(2, name="a")]
    run(store.ingest(old, request_id="r1", received_at_ms=T0))
    run(store.close())
    _downgrade(path, 10, *_BEFORE_BLOCKS)

    store = SQLiteStore(path)
    run(store.open())
    try:
        run(store.ingest([new_event(3, name="b"), new_event(4, name="a")], request_id="r2", received_at_ms=T0 + 5))
        found = {
            "a": [e.payload["n"] for e in run(store.query_events(EventQuery(name="a")))[0]],
            "source": [e.payload["n"] for e in run(store.query_events(EventQuery(source="px1")))[0]],
            "stored": [e.payload["n"] for e in run(store.query_events(EventQuery(status="stored")))[0]],
            "since": [e.payload["n"] for e in run(store.query_events(EventQuery(since_ms=T0)))[0]],
            "r1": [e.payload["n"] for e in run(store.query_events(EventQuery(request=("r1", T0))))[0]],
        }
        assert found == {
            "a": [4, 2, 0], "source": [4, 3, 2, 1, 0], "stored": [4, 3, 2, 0], "since": [4, 3, 2, 1, 0],
            "r1": [2, 1, 0],
        }  # fmt: skip
    finally:
        run(store.close())
    with closing(sqlite3.connect(path)) as conn:
        blocks = conn.execute("SELECT first_id, last_id, request_id, names FROM event_blocks ORDER BY 1").fetchall()
    assert [(last - first, r, names) for first, last, r, names in blocks] == [
        (0, "r1", '["a"]'), (0, "r1", '["b"]'), (0, "r1", '["a"]'), (1, "r2", '["a","b"]'),
    ]  # fmt: skip
    assert not {"events_source_id", "events_name_id", "events_stored", "events_received_at"} & indexes(path)
    _assert_at_current_version(path)


# What version 12 changed: the dedupe keys' time index, for a walk of their events.
_BEFORE_KEYS_AGING: Final = (
    "DROP TABLE dedupe_aging", "DROP TABLE prune_marks", "CREATE INDEX dedupe_keys_seen_at ON dedupe_keys (seen_at)",
)  # fmt: skip


def test_sqlite_migrates_a_version_11_database_to_keys_found_through_their_events(tmp_path: Path) -> None:
    """Schema 12: the keys' time index goes; a key whose event an older prune deleted waits in
    dedupe_aging, the walk starts at the oldest key; a prune then deletes every old key, by
    either way, and none that is new."""
    path = tmp_path / "v11.db"
    store = SQLiteStore(path)
    run(store.open())
    run(
        store.ingest(
            [new_event(0, dedupe_id="gone"), new_event(1, dedupe_id="kept")], request_id="r1", received_at_ms=T0
        )
    )
    run(store.ingest([new_event(2, dedupe_id="new")], request_id="r2", received_at_ms=T0 + 100 * _DAY))
    run(store.close())
    _downgrade(path, 11, *_BEFORE_KEYS_AGING, "DELETE FROM events WHERE dedupe_id = 'gone'")

    store = SQLiteStore(path)
    run(store.open())
    try:
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("SELECT dedupe_id FROM dedupe_aging").fetchall() == [("gone",)]
            assert conn.execute("SELECT received_at FROM prune_marks").fetchall() == [(T0,)]
        pruned = run(store.prune(T0 + 100 * _DAY, Retention(dedupe_days=30, event_days=math.inf)))
        assert pruned.dedupe_keys == 2
        resent = [new_event(3, dedupe_id=d) for d in ("gone", "kept", "new")]
        again = run(store.ingest(resent, request_id="r3", received_at_ms=T0 + 100 * _DAY))
        assert (again.stored, again.duplicates) == (2, [2])
    finally:
        run(store.close())
    assert "dedupe_keys_seen_at" not in indexes(path)
    _assert_at_current_version(path)


def test_sqlite_migrates_keys_stored_before_their_events_scopes_under_them(tmp_path: Path) -> None:
    """Schema 12 (a trial: such keys were never pruned): the keys an AppsFlyer event (under its
    plain source, or a test one's under source and tag) and an Axon test event (under its plain
    source) stored before their scopes move under their scopes; prune then finds them all,
    events kept for less time than the keys or not."""
    from capigate.events import dedupe_scope, scope_name

    path = tmp_path / "v11-scopes.db"
    store = SQLiteStore(path)
    run(store.open())

    def event(n: int, dedupe_id: str, api: str, tag: str | None) -> NewEvent:
        e = new_event(n, dedupe_id=dedupe_id, test_tag=tag)
        return msgspec.structs.replace(e, api=api, name="af_purchase" if api == "appsflyer" else e.name)

    events = [event(0, "af-1", "appsflyer", None), event(1, "af-2", "appsflyer", "t"), event(2, "ax-3", "axon", "t")]
    events.append(event(3, "ax-4", "axon", None))
    run(store.ingest(events, request_id="r1", received_at_ms=T0))
    run(store.close())
    legacy = {"af-1": "px1", "af-2": dedupe_scope("px1", "t"), "ax-3": "px1"}
    _downgrade(
        path,
        11,
        *_BEFORE_KEYS_AGING,
        *(f"UPDATE dedupe_keys SET source = '{s}' WHERE dedupe_id = '{d}'" for d, s in legacy.items()),
    )

    store = SQLiteStore(path)
    run(store.open())
    try:
        with closing(sqlite3.connect(path)) as conn:
            scopes = dict(conn.execute("SELECT dedupe_id, source FROM dedupe_keys"))
        assert scopes == {e.dedupe_id: dedupe_scope(e.source, e.test_tag, scope_name(e.api, e.name)) for e in events}
        keep = Retention(event_days=5, dedupe_days=30)
        assert run(store.prune(T0 + 10 * _DAY, keep)).dedupe_keys == 0  # the events go, their keys wait
        assert run(store.prune(T0 + 40 * _DAY, keep)).dedupe_keys == 4
    finally:
        run(store.close())


def _entry(request_id: str, at: int, *names: str) -> JournalRecord:
    return JournalRecord(
        request_id=request_id, received_at=at, api="axon", source="px1", method="POST", path="/v1/event",
        status=200, client_ip=None, user_agent=None, latency_ms=1.0, keys=[("name", n) for n in names],
    )  # fmt: skip


def _names_kept(path: Path) -> tuple[dict[str, str | None], set[tuple[str, str]]]:
    """Each journal row's name, and the name key rows, as (request id, name)."""
    with closing(sqlite3.connect(path)) as conn:
        on_rows = dict(conn.execute("SELECT request_id, name FROM requests"))
        keys = set(conn.execute("SELECT request_id, value FROM request_keys WHERE kind = 'name'"))
    return on_rows, keys


def _found_by(store: SQLiteStore, name: str) -> list[str]:
    rows, _ = run(store.query_requests(RequestQuery(keys=[("name", name)])))
    return [r.request_id for r in rows]


def test_sqlite_keeps_a_requests_one_name_on_its_journal_row_and_several_as_key_rows(tmp_path: Path) -> None:
    """Rule (store/sqlite/inspector.journal_name): a request's event name, when it has one only,
    is its journal row's ``name``, not a key row; a request of several names keeps them as key
    rows. Either way it is found by each of its names, and shows them."""
    store = SQLiteStore(tmp_path / "s.db")
    run(store.open())
    try:
        entries = [
            _entry("one", T0, "purchase"),
            _entry("two", T0 + 1, "purchase", "page_view"),
            _entry("none", T0 + 2),
        ]
        run(store.record_requests(entries))
        assert _names_kept(store.path) == (
            {"one": "purchase", "two": None, "none": None},
            {("two", "purchase"), ("two", "page_view")},
        )
        assert _found_by(store, "purchase") == ["two", "one"]
        assert _found_by(store, "page_view") == ["two"]
        for request_id, names in (("one", ["purchase"]), ("two", ["page_view", "purchase"]), ("none", [])):
            found = run(store.query_request(request_id))
            assert found is not None and [v for k, v in found[2] if k == "name"] == names, request_id
    finally:
        run(store.close())


def test_sqlite_migrates_a_version_8_journal_whose_names_are_key_rows(tmp_path: Path) -> None:
    """Version 9 adds ``requests.name``; the entries before it keep their names as key rows, by
    which they are still found, and show them once."""
    path = tmp_path / "v8.db"
    store = SQLiteStore(path)
    run(store.open())
    run(store.close())
    _downgrade(
        path,
        8,
        "ALTER TABLE requests DROP COLUMN name",
        "INSERT INTO requests (request_id, received_at, api, method, path, status, latency_ms, "
        "events_received, events_stored, events_duplicate, problems, warnings) "
        f"VALUES ('old', {T0}, 'axon', 'POST', '/v1/event', 200, 1.0, 1, 1, 0, '[]', '[]')",
        f"INSERT INTO request_keys VALUES ('name', 'purchase', 'old', {T0})",
    )

    store = SQLiteStore(path)
    run(store.open())
    try:
        run(store.record_requests([_entry("new", T0 + 1, "purchase")]))
        assert _found_by(store, "purchase") == ["new", "old"]
        found = run(store.query_request("old"))
        assert found is not None and found[2] == [("name", "purchase")]
    finally:
        run(store.close())
    assert _names_kept(path) == ({"old": None, "new": "purchase"}, {("old", "purchase")})
    _assert_at_current_version(path)


def _answered(request_id: str, at: int, status: int) -> JournalRecord:
    return JournalRecord(
        request_id=request_id, received_at=at, api="axon", source="px1", method="POST", path="/v1/event",
        status=status, client_ip=None, user_agent=None, latency_ms=1.0,
    )  # fmt: skip


def _unusual_indexed(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        sql = "SELECT count(*) FROM requests INDEXED BY requests_unusual_status_id WHERE status <> 200"
        (count,) = conn.execute(sql).fetchone()
    return int(count)


def _found_by_status(store: SQLiteStore, **status: int) -> list[str]:
    rows, _ = run(store.query_requests(RequestQuery(**status)))  # type: ignore[arg-type]
    return [r.request_id for r in rows]


STATUSES = {"ok": 200, "refused": 400, "unavailable": 503, "created": 201}


def test_sqlite_the_journals_status_index_keeps_only_the_requests_not_answered_200(tmp_path: Path) -> None:
    """Rule (schema.UNUSUAL_STATUS): a journal row answered 200 has no status index entry (most
    do: each was an entry the writer paid for); every status filter still finds its rows."""
    store = SQLiteStore(tmp_path / "s.db")
    run(store.open())
    try:
        run(store.record_requests([_answered(rid, T0 + i, s) for i, (rid, s) in enumerate(STATUSES.items())]))
        assert _unusual_indexed(store.path) == 3
        assert _found_by_status(store, status=200) == ["ok"]
        assert _found_by_status(store, status=503) == ["unavailable"]
        assert _found_by_status(store, status_class=2) == ["created", "ok"]
        assert _found_by_status(store, status_class=4) == ["refused"]
    finally:
        run(store.close())
    assert "requests_status_id" not in indexes(store.path)


def test_sqlite_migrates_a_version_9_journal_to_the_index_of_its_unusual_statuses(tmp_path: Path) -> None:
    """Version 10 replaces the status index of every journal row with one of the rows not
    answered 200, built from the rows already there."""
    path = tmp_path / "v9.db"
    store = SQLiteStore(path)
    run(store.open())
    run(store.record_requests([_answered(rid, T0 + i, s) for i, (rid, s) in enumerate(STATUSES.items())]))
    run(store.close())
    _downgrade(
        path, 9, "DROP INDEX requests_unusual_status_id", "CREATE INDEX requests_status_id ON requests (status, id)"
    )

    store = SQLiteStore(path)
    run(store.open())
    try:
        assert _found_by_status(store, status=400) == ["refused"]
        assert _found_by_status(store, status_class=5) == ["unavailable"]
    finally:
        run(store.close())
    assert "requests_unusual_status_id" in indexes(path) and "requests_status_id" not in indexes(path)
    assert _unusual_indexed(path) == 3
    _assert_at_current_version(path)


def test_relayed_events_have_no_entry_in_the_index_of_stored_events(tmp_path: Path) -> None:
    """Rule: a block (a request's events) is in the index of stored events if one of its events
    is kept with no relay; a block of relayed events only is not."""
    store = SQLiteStore(tmp_path / "s.db")
    run(store.open())
    run(store.ingest([new_event(0, relayed=True), new_event(1)], request_id="r", received_at_ms=T0))
    run(store.ingest([new_event(2, relayed=True)], request_id="r2", received_at_ms=T0))
    run(store.close())
    with closing(sqlite3.connect(tmp_path / "s.db")) as conn:
        assert conn.execute(
            "SELECT count(*) FROM event_blocks INDEXED BY event_blocks_stored WHERE stored"
        ).fetchone() == (1,)


def test_text_that_looks_like_the_null_placeholder_is_stored_as_given(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "n.db")
    run(store.open())
    try:
        batch = [
            new_event(0, dedupe_id="0", test_tag="0"),
            new_event(1, dedupe_id="", test_tag=""),
            new_event(2),
        ]
        run(store.ingest(batch, request_id="r", received_at_ms=T0))
        rows, _ = run(store.query_events(EventQuery()))
        assert [(e.dedupe_id, e.test_tag) for e in rows[::-1]] == [("0", "0"), ("", ""), (None, None)]
        again = run(
            store.ingest(
                [new_event(3, dedupe_id="0", test_tag="0"), new_event(4, dedupe_id="", test_tag="")],
                request_id="r",
                received_at_ms=T0,
            )
        )
        assert again.duplicates == [0, 1]
    finally:
        run(store.close())
    with closing(sqlite3.connect(tmp_path / "n.db")) as conn:
        assert conn.execute("SELECT typeof(payload), typeof(test_tag) FROM events ORDER BY id").fetchall() == [
            ("blob", "text"),
            ("blob", "text"),
            ("blob", "null"),
        ]


def test_ingests_stored_in_one_group_write_the_rows_they_write_one_at_a_time(tmp_path: Path) -> None:
    """The group's rows are built in one pass over its batches (ingest._Rows): the events,
    dedupe keys, outbox runs and match-key counts are those of the same ingests one by one."""
    hour = 3_600_000
    batches = [
        ([new_event(0, dedupe_id="a"), new_event(1)], T0),
        ([new_event(2, dedupe_id="a", relayed=True), new_event(3, dedupe_id="b", relayed=True),
          new_event(4, dedupe_id="c", relayed=True, test_tag="t")], T0 + 1),
        ([new_event(5, dedupe_id="b"), new_event(6, relayed=True), new_event(7, dedupe_id="d"),
          new_event(8, relayed=True), new_event(9, dedupe_id="d", relayed=True)], T0 + hour),
    ]  # fmt: skip

    async def together(store: SQLiteStore) -> list[IngestResult]:
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the ingests queue up and form one group
        tasks = [
            asyncio.ensure_future(store.ingest(events, request_id=f"r{i}", received_at_ms=at))
            for i, (events, at) in enumerate(batches)
        ]
        await asyncio.sleep(0)
        blocker.execute("COMMIT")
        blocker.close()
        return await asyncio.gather(*tasks)

    async def one_at_a_time(store: SQLiteStore) -> list[IngestResult]:
        return [
            await store.ingest(events, request_id=f"r{i}", received_at_ms=at) for i, (events, at) in enumerate(batches)
        ]

    def written(name: str, write: Any) -> tuple[Any, ...]:
        store = SQLiteStore(tmp_path / name)
        run(store.open())
        try:
            groups = store.stats.groups
            results = run(write(store))
            groups = store.stats.groups - groups
        finally:
            run(store.close())
        with closing(sqlite3.connect(tmp_path / name)) as conn:
            tables = [
                conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
                for table in ("events", "dedupe_keys", "outbox", "event_quality", "event_quality_days")
            ]
        return groups, [(r.stored, r.duplicates) for r in results], tables

    groups, results, tables = written("together.db", together)
    assert (groups, results) == (1, [(2, []), (2, [0]), (3, [0, 4])])
    assert [row[:2] for row in tables[2]] == [(3, 4), (5, 5), (7, 7)]  # the outbox runs
    assert [row[-2:] for row in tables[3]] == [(3, 4), (3, 5)]  # (stored, received) per hour, the test event aside
    assert [row[-2:] for row in tables[4]] == [(6, 9)]
    alone = written("alone.db", one_at_a_time)
    assert alone[0] == 3
    assert (alone[1], alone[2]) == (results, tables)


# --- the lock file between processes -------------------------------------------------------


def _ingest_in_process(path: str, worker: int, batches: int, start: Any) -> list[tuple[str, bool]]:
    """In a process of its own: ingest ``batches`` batches of 20 events, 10 with ids of this
    worker and 10 with ids every worker sends; returns (dedupe_id, stored) per event sent."""

    async def go() -> list[tuple[str, bool]]:
        store = SQLiteStore(path, busy_timeout_ms=30_000)
        await store.open()
        start.wait()
        sent: list[tuple[str, bool]] = []

        async def send(b: int) -> None:
            ids = [f"w{worker}-{b}-{i}" for i in range(10)] + [f"shared-{b}-{i}" for i in range(10)]
            result = await store.ingest(
                [new_event(i, dedupe_id=d) for i, d in enumerate(ids)], request_id=f"w{worker}", received_at_ms=T0
            )
            sent.extend((d, i not in result.duplicates) for i, d in enumerate(ids))

        try:
            for first in range(0, batches, 8):  # eight requests in flight, as in a busy worker
                await asyncio.gather(*(send(b) for b in range(first, min(first + 8, batches))))
        finally:
            await store.close()
        return sent

    return asyncio.run(go())


@posix_only
def test_two_processes_ingesting_at_once_store_every_acknowledged_event_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Manager().Event()
    with ctx.Pool(2) as pool:
        pending = [pool.apply_async(_ingest_in_process, (str(path), w, 60, start)) for w in range(2)]
        time.sleep(0.5)  # both stores open (each waits on the event), then they start together
        start.set()
        sent = [item for p in pending for item in p.get(timeout=90)]

    with closing(sqlite3.connect(path)) as conn:
        stored = Counter(d for (d,) in conn.execute("SELECT dedupe_id FROM events"))
    assert max(stored.values()) == 1, "an event was stored twice"
    acknowledged = {d for d, was_stored in sent if was_stored}
    assert set(stored) == acknowledged
    shared = [d for d, was_stored in sent if d.startswith("shared-") and was_stored]
    assert len(shared) == len(set(shared)) == 60 * 10  # each shared id stored by one process only
    assert len(stored) == 2 * 60 * 10 + 60 * 10
    assert (tmp_path / "shared.db-writer.lock").exists()


@posix_only
def test_the_writer_waits_on_the_lock_file_and_writes_as_soon_as_it_is_free(tmp_path: Path) -> None:
    import fcntl

    store = SQLiteStore(tmp_path / "w.db")
    run(store.open())
    lock_path = tmp_path / "w.db-writer.lock"
    assert lock_path.stat().st_mode & 0o777 == (tmp_path / "w.db").stat().st_mode & 0o777
    holder = os.open(lock_path, os.O_RDONLY)

    async def scenario() -> float:
        fcntl.flock(holder, fcntl.LOCK_EX)  # as another process's writer would
        task = asyncio.ensure_future(store.ingest([new_event(0)], request_id="r", received_at_ms=T0))
        await asyncio.sleep(0.3)
        assert not task.done(), "the writer did not wait for the lock"
        released = time.perf_counter()
        fcntl.flock(holder, fcntl.LOCK_UN)
        await task
        return time.perf_counter() - released

    try:
        assert run(scenario()) < 0.5  # no busy-handler sleep: it wakes with the release
    finally:
        os.close(holder)
        run(store.close())


@posix_only
def test_a_forked_child_lets_go_of_the_lock_its_parent_held(tmp_path: Path) -> None:
    import fcntl

    lock = ProcessLock.beside(tmp_path / "f.db", 5.0)
    lock.__enter__()
    ready, tell = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child: its fork handlers have run by now)
        os.write(tell, b"!")
        time.sleep(2)
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"!"
        lock.close()  # the parent dies holding the lock, say; its child lives on
        other = os.open(tmp_path / "f.db-writer.lock", os.O_RDONLY)
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the child still held it
        finally:
            os.close(other)
    finally:
        os.waitpid(child, 0)
        os.close(ready)
        os.close(tell)


_HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


@contextmanager
def stopped_lock_holder(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process that takes the writer lock, then is stopped (SIGSTOP) holding it, as a
    process in a debugger would be; killed on the way out."""
    with subprocess.Popen([sys.executable, "-c", _HOLD, str(lock_path)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            holder.send_signal(signal.SIGSTOP)
            yield holder
        finally:
            holder.kill()


@posix_only
def test_a_writer_fails_with_a_store_error_after_the_busy_timeout_while_a_stopped_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "s.db", busy_timeout_ms=500)
    run(store.open())

    async def ingest_three() -> list[BaseException | IngestResult]:
        batches = ([new_event(n)] for n in range(3))  # one group: each fails as BEGIN IMMEDIATE would
        return await asyncio.gather(
            *(store.ingest(b, request_id="r", received_at_ms=T0) for b in batches), return_exceptions=True
        )

    try:
        with stopped_lock_holder(tmp_path / "s.db-writer.lock") as holder:
            started = time.perf_counter()
            failures = run(ingest_three())
            waited = time.perf_counter() - started
            assert 0.45 < waited < 1.0  # one wait for the group, not one per ingest
            assert all(isinstance(f, StoreError) for f in failures), failures
            message = str(failures[0])
            assert "s.db-writer.lock" in message and "another capigate process" in message
            assert run(store.query_events(EventQuery()))[0] == []
            holder.kill()  # the kernel releases its lock
            holder.wait(timeout=10)
            started = time.perf_counter()
            assert run(store.ingest([new_event(9)], request_id="r", received_at_ms=T0)).stored == 1
            assert time.perf_counter() - started < 0.4
    finally:
        run(store.close())


@posix_only
def test_opening_a_store_fails_with_a_store_error_after_the_busy_timeout_while_a_stopped_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    with stopped_lock_holder(tmp_path / "o.db-writer.lock") as holder:
        started = time.perf_counter()
        with pytest.raises(StoreError, match="another capigate process"):
            run(SQLiteStore(tmp_path / "o.db", busy_timeout_ms=300).open())
        assert 0.25 < time.perf_counter() - started < 2.0
        holder.send_signal(signal.SIGCONT)
        holder.terminate()
        holder.wait(timeout=10)
    store = SQLiteStore(tmp_path / "o.db", busy_timeout_ms=300)
    run(store.open())
    try:
        assert run(store.ingest([new_event(0)], request_id="r", received_at_ms=T0)).stored == 1
    finally:
        run(store.close())


def test_without_the_process_lock_no_lock_file_is_made(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "n.db", process_lock=False)
    run(store.open())
    run(store.ingest([new_event(0)], request_id="r", received_at_ms=T0))
    run(store.close())
    assert not (tmp_path / "n.db-writer.lock").exists()


# --- the background checkpointer ----------------------------------------------------------


def events_in_the_database_file_alone(path: Path, copy: Path) -> int:
    """Events readable from the main database file without its WAL: the checkpointed ones."""
    copy.write_bytes(path.read_bytes())
    with closing(sqlite3.connect(copy)) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        except sqlite3.DatabaseError:  # not even the schema checkpointed yet, or a copy taken mid-write
            return 0


def test_committed_events_are_checkpointed_into_the_database_file_while_the_store_runs(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.db"

    async def scenario() -> int:
        store = SQLiteStore(path)
        await store.open()
        try:
            await store.ingest([new_event(n) for n in range(50)], request_id="r", received_at_ms=T0)
            # Far below wal_autocheckpoint: only the background checkpointer copies these pages.
            deadline = time.monotonic() + 5
            while (found := events_in_the_database_file_alone(path, tmp_path / "copy.db")) < 50:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return found
        finally:
            await store.close()

    assert run(scenario()) == 50


# --- event blocks (schema 11) -------------------------------------------------------------


def _all_pages(store: SQLiteStore, query: EventQuery) -> list[int]:
    """Every event id the query finds, page after page (newest first)."""
    ids: list[int] = []
    cursor: int | None = None
    while True:
        rows, cursor = run(store.query_events(msgspec.structs.replace(query, cursor=cursor, limit=7)))
        ids += [e.id for e in rows]
        if cursor is None:
            return ids


def _blocks_hold_every_event_once(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        events = {
            i: (s, r, q, n)
            for i, s, r, q, n in conn.execute("SELECT id, source, received_at, request_id, name FROM events")
        }
        blocks = conn.execute(
            "SELECT first_id, last_id, source, received_at, request_id, names FROM event_blocks"
        ).fetchall()
        runs = conn.execute("SELECT name, first_id, last_id FROM block_names").fetchall()
    held: Counter[int] = Counter()
    spans: list[tuple[int, int, set[str]]] = []
    for first, last, source, received_at, request_id, names in blocks:
        inside = [i for i in range(first, last + 1) if i in events]
        assert inside, ("a block without events stays", first, last)
        held.update(inside)
        assert {events[i][:3] for i in inside} == {(source, received_at, request_id)}, (first, last)
        assert {events[i][3] for i in inside} <= set(msgspec.json.decode(names)), (first, last)
        spans.append((first, last, set(msgspec.json.decode(names))))
    assert held == Counter(list(events)), "every event in one block"
    in_runs: Counter[int] = Counter()
    for name, first, last in runs:
        inside = [i for i in range(first, last + 1) if i in events]
        assert all(events[i][3] == name for i in inside), ("a run of one name", name, first, last)
        assert any(a <= first and last <= b and name in n for a, b, n in spans), ("a run in its block", first, last)
        in_runs.update(inside)
    assert in_runs == Counter(list(events)), "every event in one run of its name"


def test_every_filter_finds_through_the_blocks_what_the_events_themselves_hold(tmp_path: Path) -> None:
    """Rule (store/sqlite/queries.py): a filter reads the blocks that match, then the events; the
    events found, page after page, are exactly those an unfiltered read of every event holds
    that match, newest first, however requests mix sources, names, relays and test tags, and
    after a prune took some of them."""
    import random

    rng = random.Random(11)
    store = SQLiteStore(tmp_path / "blocks.db")
    run(store.open())
    try:
        for r in range(60):
            size = rng.choice((1, 1, 3, 12))
            events = [
                msgspec.structs.replace(
                    new_event(
                        r * 100 + i,
                        name=rng.choice("abc"),
                        relayed=rng.random() < 0.4,
                        test_tag="t" if rng.random() < 0.1 else None,
                    ),
                    source=rng.choice(("px1", "px1", "px2")) if size > 1 else "px1",
                    dedupe_id=f"d{rng.randrange(400)}",
                )
                for i in range(size)
            ]
            run(store.ingest(events, request_id=f"r{r}", received_at_ms=T0 + r // 2 * 1000))
        run(store.prune(T0 + 10_000 + 30 * 86_400_000, Retention()))
        _blocks_hold_every_event_once(store.path)
        everything = run(store.query_events(EventQuery(limit=10_000)))[0]
        assert everything
        filters: list[dict[str, Any]] = [
            {"source": "px2"}, {"name": "b"}, {"status": "stored"}, {"status": "pending"}, {"test_tag": "t"},
            {"since_ms": T0 + 12_000}, {"since_ms": T0 + 5_000, "until_ms": T0 + 20_000}, {"until_ms": T0 + 9_000},
            {"request": ("r31", T0 + 15_000)}, {"source": "px1", "name": "a", "since_ms": T0 + 3_000},
            {"name": "c", "status": "stored"}, {"source": "px2", "status": "pending", "api": "axon"},
        ]  # fmt: skip
        for given in filters:
            wanted = [e.id for e in everything if _matches(e, given)]
            assert _all_pages(store, EventQuery(**given)) == wanted, given
    finally:
        run(store.close())


def _matches(e: Any, given: dict[str, Any]) -> bool:
    for key, value in given.items():
        if key == "since_ms":
            ok = e.received_at >= value
        elif key == "until_ms":
            ok = e.received_at < value
        elif key == "request":
            ok = (e.request_id, e.received_at) == value
        else:
            ok = getattr(e, key) == value
        if not ok:
            return False
    return True


def test_prune_takes_a_block_with_its_last_event(tmp_path: Path) -> None:
    """Rule (store/sqlite/prune.py): a block goes with its last event, with its names; a block
    with an event still held by a pending run stays, and finds that event."""
    store = SQLiteStore(tmp_path / "prune.db")
    run(store.open())
    try:
        run(store.ingest([new_event(0, name="a"), new_event(1, name="b")], request_id="old", received_at_ms=T0))
        mixed = [new_event(2, name="a"), new_event(3, name="c", relayed=True)]
        run(store.ingest(mixed, request_id="held", received_at_ms=T0 + 1))
        run(store.ingest([new_event(4)], request_id="new", received_at_ms=T0 + 40 * 86_400_000))
        run(store.prune(T0 + 40 * 86_400_000, Retention()))
        _blocks_hold_every_event_once(store.path)
        with closing(sqlite3.connect(store.path)) as conn:
            assert conn.execute("SELECT request_id FROM event_blocks ORDER BY first_id").fetchall() == [
                ("held",), ("new",),
            ]  # fmt: skip
            assert {n for (n,) in conn.execute("SELECT name FROM block_names")} == {"a", "c", "purchase"}
        assert [e.payload["n"] for e in run(store.query_events(EventQuery(name="c")))[0]] == [3]
        assert run(store.query_events(EventQuery(name="b")))[0] == []
    finally:
        run(store.close())


def test_a_dedupe_id_holding_a_nul_is_found_again_and_told_from_its_prefix(tmp_path: Path) -> None:
    """Rule (store/sqlite/ingest._seen_keys): SQLite's json_each cuts a string at a NUL, so an
    id holding one was never found: its second sending hit the key's primary key, a 503 and a
    store refusing ingests (an AppsFlyer af_order_id, a new user's trial). Such ids are looked
    up one by one; "a" and "a\\0b" stay two keys."""
    store = SQLiteStore(tmp_path / "nul.db")
    run(store.open())
    try:
        first = run(store.ingest([new_event(0, dedupe_id="a\x00b")], request_id="r1", received_at_ms=T0))
        again = run(store.ingest([new_event(1, dedupe_id="a\x00b")], request_id="r2", received_at_ms=T0 + 1))
        prefix = run(store.ingest([new_event(2, dedupe_id="a")], request_id="r3", received_at_ms=T0 + 2))
        both = [new_event(3, dedupe_id="a\x00b"), new_event(4, dedupe_id="a"), new_event(5, dedupe_id="\x00")]
        mixed = run(store.ingest(both, request_id="r4", received_at_ms=T0 + 3))
        assert (first.stored, again.stored, again.duplicates, prefix.stored) == (1, 0, [0], 1)
        assert (mixed.stored, mixed.duplicates) == (1, [0, 1])
    finally:
        run(store.close())


def test_a_blocks_names_are_listed_as_runs_of_one_name(tmp_path: Path) -> None:
    """Rule (store/sqlite/ingest._Rows._add_blocks): ``block_names`` has a row per run of
    consecutive events of one name, so a name in one event of a batch of 100 is read alone,
    not with the 99 others (8x the events' own index on 2 M events, a trial)."""
    store = SQLiteStore(tmp_path / "runs.db")
    run(store.open())
    try:
        names = ["a", "b", "b", "a", "c"]
        run(store.ingest([new_event(i, name=n) for i, n in enumerate(names)], request_id="r", received_at_ms=T0))
        with closing(sqlite3.connect(store.path)) as conn:
            runs = conn.execute("SELECT name, first_id - 1, last_id - 1 FROM block_names ORDER BY first_id").fetchall()
        assert runs == [("a", 0, 0), ("b", 1, 2), ("a", 3, 3), ("c", 4, 4)]
        assert [e.payload["n"] for e in run(store.query_events(EventQuery(name="a")))[0]] == [3, 0]
        _blocks_hold_every_event_once(store.path)
    finally:
        run(store.close())


def test_events_an_older_capigate_wrote_after_the_upgrade_get_blocks_at_the_next_open(tmp_path: Path) -> None:
    """Rule (store/sqlite/schema._blocks_for_events_past_the_last): an older capigate kept
    writing a file migrated to version 11 writes no blocks, and every filter and prune missed
    its events (a trial); the next open gives each event past the last block a block."""
    store = SQLiteStore(tmp_path / "mixed.db")
    run(store.open())
    run(store.ingest([new_event(0, name="a"), new_event(1, name="b")], request_id="new", received_at_ms=T0))
    run(store.close())
    with closing(sqlite3.connect(tmp_path / "mixed.db", isolation_level=None)) as conn:  # as 02ee838 writes
        conn.execute(
            "INSERT INTO events (api, source, name, event_time, received_at, dedupe_id, status, request_id, payload) "
            "VALUES ('axon', 'px1', 'b', 5, ?, NULL, 'stored', 'old', ?)",
            (T0 + 1, b'{"n": 2}'),
        )
    store = SQLiteStore(tmp_path / "mixed.db")
    run(store.open())
    try:
        assert [e.payload["n"] for e in run(store.query_events(EventQuery(name="b")))[0]] == [2, 1]
        assert [e.payload["n"] for e in run(store.query_events(EventQuery(source="px1")))[0]] == [2, 1, 0]
        _blocks_hold_every_event_once(store.path)
    finally:
        run(store.close())


def test_the_writer_process_loads_capigate_as_its_parent_does_not_from_the_working_directory(tmp_path: Path) -> None:
    """A trial: started in a directory holding a folder named capigate, the store's writer
    process (``python -m``) imported that folder, and the gateway would not start."""
    shadow = tmp_path / "capigate"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise SystemExit(3)\n")
    code = (
        "from pathlib import Path; from capigate.store import SQLiteStore; from tests.storekit import run; "
        "s = SQLiteStore(Path('s.db'), writer_process=True); run(s.open()); run(s.close()); print('opened')"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == b"opened", done.stderr.decode()[-2000:]
