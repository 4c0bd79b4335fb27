"""The relay outbox part of the Store contract, run against every backend (``store`` fixture),
plus the SQLite migration from schema version 1."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import msgspec
import pytest

from capigate.store import (
    AttemptOutcome,
    DeadLetterQuery,
    Delivery,
    EventQuery,
    NewEvent,
    SQLiteStore,
    Store,
    StoredEvent,
)
from capigate.store import sqlite as sqlite_module
from capigate.store.outbox import REPLAY_SCAN_RUNS
from capigate.store.sqlite import outbox as sqlite_outbox
from tests.storekit import run

T0 = 1_700_000_000_000
AXON = "axon:px1"
LEASE_MS = 30_000


def new_event(n: int, *, source: str = "px1", destination: str | None = AXON, test_tag: str | None = None) -> NewEvent:
    return NewEvent(
        api="axon",
        source=source,
        name="purchase",
        event_time_ms=T0 + n,
        dedupe_id=f"{source}-{n}",
        payload=msgspec.json.encode({"name": "purchase", "dedupe_id": f"{source}-{n}"}),
        test_tag=test_tag,
        destination=destination,
    )


def ingest(store: Store, *events: NewEvent, at: int = T0) -> None:
    run(store.ingest(list(events), request_id=f"r{at}", received_at_ms=at))


def claim(store: Store, owner: str = "a", *, limit: int = 100, now: int = T0, dest: str = AXON) -> list[Delivery]:
    return run(store.claim(dest, owner=owner, limit=limit, now_ms=now, lease_ms=LEASE_MS))


def outcome(event_id: int, result: str, *, at: int = T0, status: int | None = 200, **kw: object) -> AttemptOutcome:
    return msgspec.convert(
        {"event_id": event_id, "destination": AXON, "at_ms": at, "result": result, "status": status, **kw},
        AttemptOutcome,
    )


def events_by_id(store: Store, **filters: object) -> dict[int, StoredEvent]:
    rows, _ = run(store.query_events(msgspec.convert(filters, EventQuery)))
    return {e.id: e for e in rows}


def depth(store: Store, dest: str = AXON) -> tuple[int, int, int]:
    found = {d.destination: d for d in run(store.outbox_depths())}
    if dest not in found:
        return 0, 0, 0
    d = found[dest]
    return d.pending, d.delivered, d.dead


def test_accepted_events_with_a_destination_are_queued_in_the_ingest_transaction(store: Store) -> None:
    ingest(store, new_event(1), new_event(2), new_event(3, destination=None))
    assert depth(store) == (2, 0, 0)
    (d,) = run(store.outbox_depths())
    assert d.oldest_pending_at == T0
    assert {e.status for e in events_by_id(store).values()} == {"pending", "stored"}
    assert [e.status for e in events_by_id(store, status="stored").values()] == ["stored"]


def test_claim_leases_the_oldest_due_events_first_and_never_twice(store: Store) -> None:
    ingest(store, *(new_event(n) for n in range(5)))
    first = claim(store, "a", limit=3)
    assert [d.dedupe_id for d in first] == ["px1-0", "px1-1", "px1-2"]
    assert (first[0].attempts, first[0].queued_at_ms, first[0].source, first[0].api) == (0, T0, "px1", "axon")
    assert msgspec.json.decode(first[0].payload) == {"name": "purchase", "dedupe_id": "px1-0"}
    second = claim(store, "b", limit=10)
    assert [d.dedupe_id for d in second] == ["px1-3", "px1-4"]
    assert claim(store, "c") == []
    assert claim(store, "c", dest="axon:other") == []


def test_settle_delivered_is_final_and_counted(store: Store) -> None:
    ingest(store, new_event(1), new_event(2))
    leased = claim(store)
    run(store.settle([outcome(d.event_id, "delivered") for d in leased], owner="a"))
    assert depth(store) == (0, 2, 0)
    assert {e.status for e in events_by_id(store).values()} == {"delivered"}
    assert claim(store, now=T0 + 10 * LEASE_MS) == []


def test_settle_retry_makes_the_event_due_again_at_its_time_with_one_more_attempt(store: Store) -> None:
    ingest(store, new_event(1))
    (d,) = claim(store)
    run(store.settle([outcome(d.event_id, "retry", status=503, next_attempt_at_ms=T0 + 5_000)], owner="a"))
    assert claim(store, "b", now=T0 + 4_999) == []
    (again,) = claim(store, "b", now=T0 + 5_000)
    assert (again.event_id, again.attempts) == (d.event_id, 1)
    assert depth(store) == (1, 0, 0)


def test_an_expired_lease_is_claimed_by_another_owner_and_the_late_settle_only_records(store: Store) -> None:
    ingest(store, new_event(1))
    (d,) = claim(store, "a")
    assert claim(store, "b", now=T0 + LEASE_MS - 1) == []
    (taken,) = claim(store, "b", now=T0 + LEASE_MS)
    assert taken.event_id == d.event_id
    run(store.settle([outcome(d.event_id, "dead", status=400)], owner="a"))  # "a" lost the lease
    assert depth(store) == (1, 0, 0)
    assert [a.result for a in run(store.query_attempts(d.event_id))] == ["dead"]
    run(store.settle([outcome(d.event_id, "delivered", at=T0 + LEASE_MS)], owner="b"))
    assert depth(store) == (0, 1, 0)


def test_release_gives_leases_back_due_at_once(store: Store) -> None:
    ingest(store, new_event(1), new_event(2))
    assert len(claim(store, "a")) == 2
    assert run(store.release(owner="b")) == 0
    assert run(store.release(owner="a")) == 2
    assert [d.attempts for d in claim(store, "b")] == [0, 0]


def test_interrupted_records_the_attempt_and_gives_the_lease_back_due_at_once_without_counting_it(
    store: Store,
) -> None:
    """A request a stopping relay cut short: the attempt is kept (the upstream may have received
    it), the event is another owner's to claim at once, and its retry budget is whole."""
    ingest(store, new_event(1), new_event(2))
    first, second = claim(store, "a")
    run(store.settle([outcome(first.event_id, "retry", status=503, next_attempt_at_ms=T0)], owner="a"))
    cut = "interrupted: the relay stopped 1.0 s into the request, before an answer"
    (again,) = claim(store, "a", now=T0 + 1)
    leased = [again, second]
    run(
        store.settle([outcome(d.event_id, "interrupted", at=T0 + 2, status=None, error=cut) for d in leased], owner="a")
    )
    assert depth(store) == (2, 0, 0)
    back = claim(store, "b", now=T0 + 2)
    assert [(d.event_id, d.attempts) for d in back] == [(first.event_id, 1), (second.event_id, 0)]
    attempts = run(store.query_attempts(first.event_id))
    assert [(a.result, a.status, a.error) for a in attempts] == [("retry", 503, None), ("interrupted", None, cut)]
    assert run(store.release(owner="a")) == 0  # nothing left leased to the stopped owner


def test_split_records_the_attempt_and_extends_the_lease_without_counting_it(store: Store) -> None:
    ingest(store, new_event(1), new_event(2))
    leased = claim(store, "a")
    later = T0 + 3 * LEASE_MS
    run(store.settle([outcome(d.event_id, "split", status=400, next_attempt_at_ms=later) for d in leased], owner="a"))
    assert claim(store, "b", now=later - 1) == []
    run(store.settle([outcome(leased[0].event_id, "delivered", at=T0 + 1)], owner="a"))
    (back,) = claim(store, "b", now=later)
    assert (back.event_id, back.attempts) == (leased[1].event_id, 0)
    assert [a.result for a in run(store.query_attempts(leased[0].event_id))] == ["split", "delivered"]


def test_a_split_and_the_final_outcome_in_one_settle_leave_the_final_state(store: Store) -> None:
    """The relay settles in the background: a split and what followed it often arrive together."""
    ingest(store, *(new_event(n) for n in range(4)))
    a, b, c, d = claim(store, "a")
    later = T0 + 3 * LEASE_MS
    split = [outcome(x.event_id, "split", status=400, next_attempt_at_ms=later) for x in (a, b, c, d)]
    final = [
        outcome(a.event_id, "delivered", at=T0 + 1),
        outcome(b.event_id, "dead", at=T0 + 1, status=400),
        outcome(c.event_id, "split", at=T0 + 1, status=400, next_attempt_at_ms=later),
        outcome(c.event_id, "delivered", at=T0 + 2),
        outcome(d.event_id, "retry", at=T0 + 1, status=503, next_attempt_at_ms=T0 + 5),
    ]
    run(store.settle([*split, *final], owner="a"))
    assert depth(store) == (1, 2, 1)
    states = {e.id: e.status for e in events_by_id(store).values()}
    assert [states[x.event_id] for x in (a, b, c, d)] == ["delivered", "dead", "delivered", "pending"]
    assert [a.result for a in run(store.query_attempts(c.event_id))] == ["split", "split", "delivered"]
    (again,) = claim(store, "b", now=T0 + 5)
    assert (again.event_id, again.attempts) == (d.event_id, 1)


def test_every_attempt_is_kept_with_the_verbatim_response_oldest_first(store: Store) -> None:
    ingest(store, new_event(1), new_event(2))
    leased = claim(store)
    headers, body = {"retry-after": "7", "content-type": "text/plain"}, "Service Unavailable"
    run(
        store.settle(
            [
                outcome(
                    d.event_id,
                    "retry",
                    status=503,
                    latency_ms=12.5,
                    response_headers=headers,
                    response_body=body,
                    next_attempt_at_ms=T0 + 7_000,
                )
                for d in leased
            ],
            owner="a",
        )
    )
    leased = claim(store, now=T0 + 7_000)
    run(store.settle([outcome(d.event_id, "delivered", at=T0 + 7_000, response_body="{}") for d in leased], owner="a"))
    for d in leased:
        first, second = run(store.query_attempts(d.event_id))
        assert (first.event_id, first.destination, first.at, first.result) == (d.event_id, AXON, T0, "retry")
        assert (first.status, first.latency_ms, first.response_headers, first.response_body) == (
            503,
            12.5,
            headers,
            body,
        )
        assert (second.result, second.status, second.at, second.response_body) == ("delivered", 200, T0 + 7_000, "{}")
        assert first.id < second.id
    assert run(store.query_attempts(999_999)) == []


def test_a_network_error_is_recorded_without_a_status(store: Store) -> None:
    ingest(store, new_event(1))
    (d,) = claim(store)
    run(store.settle([outcome(d.event_id, "retry", status=None, error="ConnectError: refused")], owner="a"))
    (attempt,) = run(store.query_attempts(d.event_id))
    assert (attempt.status, attempt.error, attempt.response_body) == (None, "ConnectError: refused", "")


def dead_letters(store: Store) -> None:
    """Four dead events: px1-1 (received at T0, 400), px1-3 (T0+1000, 401), px2-2 (T0, 400) and
    px3-6 (T0+1000, 400); plus px1-4 delivered and px1-5 pending, which replay must not touch."""
    ingest(store, new_event(1), new_event(2, source="px2", destination="axon:px2"), at=T0)
    ingest(store, new_event(3), new_event(4), new_event(5), at=T0 + 1000)
    ingest(store, new_event(6, source="px3", destination="axon:px3"), at=T0 + 1000)
    a, b, c, d = claim(store, now=T0 + 2000)
    (p2,) = claim(store, dest="axon:px2", now=T0 + 2000)
    (p3,) = claim(store, dest="axon:px3", now=T0 + 2000)
    run(
        store.settle(
            [
                outcome(a.event_id, "dead", status=400),
                outcome(b.event_id, "dead", status=401),
                outcome(c.event_id, "delivered"),
                outcome(p2.event_id, "dead", status=400, destination="axon:px2"),
                outcome(p3.event_id, "dead", status=400, destination="axon:px3"),
            ],
            owner="a",
        )
    )
    del d  # left leased: pending


def test_dead_letters_are_listed_by_status_and_replayed_with_filters(store: Store) -> None:
    dead_letters(store)
    assert depth(store) == (1, 1, 2)
    assert (depth(store, "axon:px2"), depth(store, "axon:px3")) == ((0, 0, 1), (0, 0, 1))
    assert sorted(e.dedupe_id or "" for e in events_by_id(store, status="dead").values()) == [
        "px1-1",
        "px1-3",
        "px2-2",
        "px3-6",
    ]
    assert [e.dedupe_id for e in events_by_id(store, status="dead", source="px1").values()] == ["px1-3", "px1-1"]
    assert [e.dedupe_id for e in events_by_id(store, status="delivered").values()] == ["px1-4"]
    assert [e.dedupe_id for e in events_by_id(store, status="pending").values()] == ["px1-5"]

    now = T0 + 10_000
    assert run(store.replay(DeadLetterQuery(source="px1", status=401), now_ms=now)) == 1
    assert run(store.replay(DeadLetterQuery(destination="axon:px2", until_ms=T0), now_ms=now)) == 0
    assert run(store.replay(DeadLetterQuery(destination="axon:px2", since_ms=T0, until_ms=T0 + 1), now_ms=now)) == 1
    assert run(store.replay(DeadLetterQuery(since_ms=T0 + 1000), now_ms=now)) == 1  # px3 only
    assert depth(store) == (2, 1, 1)
    (replayed,) = [d for d in claim(store, now=now) if d.dedupe_id == "px1-3"]
    assert (replayed.attempts, replayed.queued_at_ms) == (0, now)
    assert run(store.replay(DeadLetterQuery(), now_ms=now)) == 1  # the last one: px1-1
    assert sum(depth(store, d)[2] for d in (AXON, "axon:px2", "axon:px3")) == 0


def test_replayed_since_finds_a_replay_of_the_destination_not_new_events_nor_a_tried_replay(store: Store) -> None:
    """The relay asks it during a pause, which a replay lifts (README, Relay)."""
    dead_letters(store)
    ingest(store, new_event(8), at=T0 + 5000)  # arrives after the pause began: not a replay

    def replayed_since(destination: str, since_ms: int) -> bool:
        return run(store.replayed_since(destination, since_ms))

    assert not replayed_since(AXON, T0 + 3000)
    now = T0 + 10_000
    assert run(store.replay(DeadLetterQuery(destination=AXON), now_ms=now)) == 2
    assert replayed_since(AXON, T0 + 3000) and replayed_since(AXON, now)
    assert not replayed_since(AXON, now + 1)  # a pause that began after the replay
    assert not replayed_since("axon:px2", T0 + 3000)  # another destination's
    taken = claim(store, now=now)
    run(store.settle([outcome(d.event_id, "retry", at=now, status=429) for d in taken], owner="a"))
    assert not replayed_since(AXON, T0 + 3000)  # tried since: its retry time holds again


def test_events_without_a_destination_or_in_test_mode_are_never_queued(store: Store) -> None:
    ingest(store, new_event(1, destination=None), new_event(2, destination=None, test_tag="t1"))
    assert run(store.outbox_depths()) == []
    assert claim(store) == []


# --- SQLite specifics -------------------------------------------------------------------


def test_sqlite_migrates_a_version_1_database_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute(
            """CREATE TABLE events (id INTEGER PRIMARY KEY, api TEXT NOT NULL, source TEXT NOT NULL,
            name TEXT NOT NULL, event_time INTEGER NOT NULL, received_at INTEGER NOT NULL, dedupe_id TEXT,
            status TEXT NOT NULL DEFAULT 'stored', test_tag TEXT, request_id TEXT NOT NULL, payload BLOB NOT NULL)"""
        )
        conn.execute("INSERT INTO events VALUES (1, 'axon', 'px1', 'purchase', 1, 2, 'd', 'stored', NULL, 'r', '{}')")
    store = SQLiteStore(path)
    run(store.open())
    try:
        ingest(store, new_event(7))
        assert sorted((e.id, e.status) for e in events_by_id(store).values()) == [(1, "stored"), (2, "pending")]
        assert depth(store) == (1, 0, 0)
    finally:
        run(store.close())
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(sqlite_module.SCHEMA_VERSION,)]


@pytest.mark.parametrize("status", ["pending", "dead"])
def test_sqlite_reads_pending_and_dead_events_through_the_outbox_indexes(tmp_path: Path, status: str) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    run(store.open())
    run(store.close())
    sql, params = sqlite_module.events_sql(EventQuery(status=status, source="px1"))
    with closing(sqlite3.connect(tmp_path / "p.db")) as conn:
        plan = " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    assert f"outbox_{status}" in plan, plan


def test_sqlite_looks_for_a_replay_among_the_oldest_pending_runs_through_their_index(tmp_path: Path) -> None:
    """Rule (store/outbox.REPLAYED_SINCE): a paused destination asks at every poll; an outage's
    backlog of new runs is read through the pending index and no further than
    REPLAY_SCAN_RUNS, not scanned whole each second."""
    store = SQLiteStore(tmp_path / "r.db")
    run(store.open())
    run(store.close())
    with closing(sqlite3.connect(tmp_path / "r.db")) as conn:
        plan = " | ".join(
            row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sqlite_outbox._REPLAYED_SINCE}", (AXON, T0))
        )
    assert "outbox_pending" in plan and f"LIMIT {REPLAY_SCAN_RUNS}" in sqlite_outbox._REPLAYED_SINCE, plan


def test_claim_returns_each_event_as_stored_whatever_its_dedupe_id_holds(store: Store) -> None:
    odd = [msgspec.structs.replace(new_event(n), dedupe_id=d) for n, d in enumerate(["a\x1eb", None, "\x1f", "c"])]
    ingest(store, *odd)
    leased = claim(store)
    assert [(d.event_id - leased[0].event_id, d.dedupe_id) for d in leased] == [
        (0, "a\x1eb"),
        (1, None),
        (2, "\x1f"),
        (3, "c"),
    ]
    assert [msgspec.json.decode(d.payload)["dedupe_id"] for d in leased] == ["px1-0", "px1-1", "px1-2", "px1-3"]
    ingest(
        store, *(msgspec.structs.replace(new_event(n), dedupe_id=d) for n, d in enumerate(["\x1f\x1f", None, "", "d"]))
    )
    assert [d.dedupe_id for d in claim(store)] == ["\x1f\x1f", None, "", "d"]
