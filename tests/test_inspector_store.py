"""What the inspector keeps in the store, on both backends: refused bodies and request keys
(written with the journal, pruned with it), the request filters, and the match-key rollup."""

from __future__ import annotations

from capigate.events import NewEvent
from capigate.matchkeys import DEDUPE_BIT
from capigate.store import EventQuery, JournalRecord, QualityRow, RequestQuery, Retention, Store
from tests.storekit import run

HOUR = 3_600_000
NOW = 1_780_000_000_000 - 1_780_000_000_000 % HOUR + 1_000


def record(request_id: str, at: int, status: int, **fields: object) -> JournalRecord:
    base: dict[str, object] = {
        "request_id": request_id, "received_at": at, "api": "axon", "source": "px1", "method": "POST",
        "path": "/v1/event", "status": status, "client_ip": "203.0.113.9", "user_agent": "t", "latency_ms": 1.0,
    }  # fmt: skip
    return JournalRecord(**{**base, **fields})  # type: ignore[arg-type]


def event(name: str, dedupe_id: str | None, keys: int, test_tag: str | None = None) -> NewEvent:
    return NewEvent(
        api="axon", source="px1", name=name, event_time_ms=NOW, dedupe_id=dedupe_id, payload=b"{}",
        test_tag=test_tag, match_keys=keys | (DEDUPE_BIT if dedupe_id else 0),
    )  # fmt: skip


def request_ids(store: Store, query: RequestQuery) -> list[str]:
    rows, _ = run(store.query_requests(query))
    return [r.request_id for r in rows]


def test_a_kept_body_and_keys_come_back_with_the_request_and_go_when_it_is_pruned(store: Store) -> None:
    old = record("r-old", NOW - 8 * 86_400_000, 400, body=b'{"events":[]}', keys=[("transaction_id", "T1")])
    new = record("r-new", NOW, 400, body=b'{"x":1}', keys=[("transaction_id", "T2"), ("name", "purchase")])
    run(store.record_requests([old, new]))
    found = run(store.query_request("r-old"))
    assert found is not None and found[1] == b'{"events":[]}' and found[2] == [("transaction_id", "T1")]
    assert request_ids(store, RequestQuery(keys=[("transaction_id", "T1")])) == ["r-old"]
    run(store.prune(NOW, Retention(journal_days=7)))
    assert run(store.query_request("r-old")) is None
    assert request_ids(store, RequestQuery(keys=[("transaction_id", "T1")])) == []
    kept = run(store.query_request("r-new"))
    assert kept is not None and kept[0].request_id == "r-new" and kept[1] == b'{"x":1}'
    assert sorted(kept[2]) == [("name", "purchase"), ("transaction_id", "T2")]


def test_request_filters_combine(store: Store) -> None:
    run(
        store.record_requests(
            [
                record("a", NOW, 200, keys=[("name", "purchase"), ("dedupe_id", "d1")], test_tag="t"),
                record("b", NOW + 1, 400, keys=[("name", "purchase")], client_ip="192.0.2.1"),
                record("c", NOW + 2, 401),
                record("d", NOW + 3, 503, keys=[("name", "page_view")]),
            ]
        )
    )
    assert request_ids(store, RequestQuery(status_class=4)) == ["c", "b"]
    assert request_ids(store, RequestQuery(status_class=2)) == ["a"]
    assert request_ids(store, RequestQuery(status=503)) == ["d"]
    assert request_ids(store, RequestQuery(keys=[("name", "purchase")])) == ["b", "a"]
    assert request_ids(store, RequestQuery(keys=[("name", "purchase"), ("dedupe_id", "d1")])) == ["a"]
    assert request_ids(store, RequestQuery(keys=[("name", "purchase")], client_ip="192.0.2.1")) == ["b"]
    assert request_ids(store, RequestQuery(test_tag="t", status_class=2)) == ["a"]
    assert request_ids(store, RequestQuery(keys=[("name", "purchase")], since_ms=NOW + 1)) == ["b"]


def test_a_stored_events_dedupe_id_still_finds_its_request_once_the_event_and_its_key_are_pruned(
    store: Store,
) -> None:
    """The journal leaves a stored event's dedupe id to the store (kept.dedupe_ids_not_stored,
    SQLite); an event and its dedupe key pruned while the journal entry stays (a journal kept
    longer, or the events' retention shortened since) hand the id to the journal's keys."""
    old = NOW - 40 * 24 * HOUR
    run(
        store.ingest(
            [event("purchase", "gone-1", 1), event("lead", "gone-2", 1)], request_id="r-old", received_at_ms=old
        )
    )
    run(store.ingest([event("purchase", "fresh", 1)], request_id="r-new", received_at_ms=NOW))
    left = store.finds_stored_dedupe_ids
    kept = [("name", "purchase")] + ([] if left else [("dedupe_id", "gone-1"), ("dedupe_id", "gone-2")])
    run(store.record_requests([record("r-old", old, 200, keys=kept), record("r-new", NOW, 200, keys=kept[:1])]))
    assert request_ids(store, RequestQuery(keys=[("dedupe_id", "gone-1")])) == ["r-old"]
    run(store.prune(NOW, Retention(journal_days=60)))
    assert run(store.query_events(EventQuery(request=("r-old", old))))[0] == []
    for dedupe_id in ("gone-1", "gone-2"):
        assert request_ids(store, RequestQuery(keys=[("dedupe_id", dedupe_id)])) == ["r-old"], dedupe_id
    found = run(store.query_request("r-old"))
    assert found is not None and {("dedupe_id", "gone-1"), ("dedupe_id", "gone-2")} <= set(found[2])


def test_the_events_of_one_request(store: Store) -> None:
    run(store.ingest([event("purchase", "e1", 1), event("page_view", None, 0)], request_id="r1", received_at_ms=NOW))
    run(store.ingest([event("purchase", "e2", 1)], request_id="r2", received_at_ms=NOW))
    rows, _ = run(store.query_events(EventQuery(request=("r1", NOW))))
    assert sorted(e.name for e in rows) == ["page_view", "purchase"]
    assert {e.request_id for e in rows} == {"r1"}


def test_the_rollup_counts_stored_events_and_duplicates_per_hour_name_and_keys(store: Store) -> None:
    run(
        store.ingest([event("purchase", "p1", 0b01), event("purchase", "p2", 0b01)], request_id="1", received_at_ms=NOW)
    )
    # p1 again (a duplicate), twice in one batch (one stored, one duplicate), and no dedupe id.
    again = [event("purchase", "p1", 0b01), event("purchase", "p3", 0b100), event("purchase", "p3", 0b100)]
    run(store.ingest([*again, event("purchase", None, 0)], request_id="2", received_at_ms=NOW + 10))
    run(store.ingest([event("purchase", "t1", 0b01, test_tag="t")], request_id="3", received_at_ms=NOW))  # not counted
    run(store.ingest([event("purchase", "p9", 0b01)], request_id="4", received_at_ms=NOW + HOUR))  # the next hour
    rows = run(store.query_quality("px1", since_ms=NOW - NOW % HOUR, until_ms=NOW - NOW % HOUR + HOUR))
    assert sorted(rows, key=lambda r: r.match_keys) == [
        QualityRow(api="axon", source="px1", name="purchase", match_keys=0, events=1, duplicates=0),
        QualityRow(api="axon", source="px1", name="purchase", match_keys=0b01 | DEDUPE_BIT, events=2, duplicates=1),
        QualityRow(api="axon", source="px1", name="purchase", match_keys=0b100 | DEDUPE_BIT, events=1, duplicates=1),
    ]
    two_hours = run(store.query_quality(None, since_ms=NOW - NOW % HOUR, until_ms=NOW - NOW % HOUR + 2 * HOUR))
    assert sum(r.events for r in two_hours) == 5
    assert run(store.query_quality("px2", since_ms=0, until_ms=NOW + 2 * HOUR)) == []


def test_a_window_of_days_reads_the_daily_rollup_and_the_hours_at_its_edges(store: Store) -> None:
    day = 86_400_000
    midnight = NOW - NOW % day
    for at in (midnight - day - 2 * HOUR, midnight - 5 * HOUR, midnight + HOUR, midnight + 3 * HOUR):
        run(store.ingest([event("purchase", f"k{at}", 0b01)], request_id=f"r{at}", received_at_ms=at))

    def total(since: int, until: int) -> int:
        return sum(r.events for r in run(store.query_quality(None, since_ms=since, until_ms=until)))

    assert total(midnight - 2 * day, midnight + day) == 4  # whole days only
    assert total(midnight - day - 3 * HOUR, midnight + 2 * HOUR) == 3  # hours, a day, hours
    assert total(midnight - 4 * HOUR, midnight + 2 * HOUR) == 1  # hours only
    assert total(midnight - day - HOUR, midnight + 4 * HOUR) == 3
