"""Store.query_stats: the per-source, per-bucket totals behind the inspector's charts."""

from __future__ import annotations

import math
import re
import sqlite3
from pathlib import Path
from typing import Literal

import pytest

from capigate.errors import Problem
from capigate.store import (
    AttemptOutcome,
    NewEvent,
    RequestQuery,
    RequestRecord,
    Retention,
    SQLiteStore,
    StatsBucket,
    Store,
)
from capigate.store.inspector import MINUTE_MS, minute_windows
from capigate.store.sqlite.queries import stats_sql
from tests.storekit import run

MINUTE = 60_000
T0 = 1_700_000_040_000  # a multiple of a minute
WARN = Problem("events[0].dedupe_id", "missing_dedupe_id", "no dedupe_id")


def record(
    at: int, source: str | None, status: int, received: int, stored: int, dup: int = 0, **kw: object
) -> RequestRecord:
    fields: dict[str, object] = {"api": "axon", "method": "POST", "path": "/v1/event", **kw}
    return RequestRecord(
        request_id=f"r{at}{source}{status}",
        received_at=at,
        source=source,
        status=status,
        client_ip="127.0.0.1",
        user_agent="t",
        latency_ms=1.0,
        events_received=received,
        events_stored=stored,
        events_duplicate=dup,
        **fields,  # type: ignore[arg-type]
    )


def fill_journal(store: Store) -> None:
    for r in (
        record(T0 + 1_000, "px_a", 200, 3, 2, 1, warnings=[WARN, WARN]),
        record(T0 + 2_000, "px_a", 400, 5, 0, problems=[Problem("events", "invalid", "bad")]),
        record(T0 + 3_000, "px_b", 200, 1, 1),
        record(T0 + MINUTE + 5, "px_a", 200, 1, 1, warnings=[WARN]),
        record(T0 + MINUTE + 6, None, 400, 0, 0),  # an Axon call without its pixel_id
        record(T0 + MINUTE + 7, None, 404, 0, 0, api="unknown", path="/wp-login.php"),  # not an API call
        record(T0 + MINUTE + 8, None, 401, 0, 0, api="inspector", path="/login"),
        record(T0 + 5 * MINUTE, "px_a", 200, 1, 1),  # outside the window asked for
        record(T0 - 1, "px_a", 200, 1, 1),  # before it
    ):
        run(store.record_requests([r]))


def test_stats_total_the_journal_per_bucket_and_source(store: Store) -> None:
    fill_journal(store)
    buckets = run(store.query_stats(None, since_ms=T0, until_ms=T0 + 2 * MINUTE, bucket_ms=MINUTE))
    assert buckets == [
        StatsBucket(
            start_ms=T0, source="px_a", api="axon", requests=2, failed_requests=1, events_received=8,
            events_accepted=2, events_duplicate=1, events_refused=5, warnings=2,
        ),
        StatsBucket(start_ms=T0, source="px_b", api="axon", requests=1, events_received=1, events_accepted=1),
        StatsBucket(start_ms=T0 + MINUTE, source=None, api="axon", requests=1, failed_requests=1),
        StatsBucket(start_ms=T0 + MINUTE, source=None, api="inspector", requests=1, failed_requests=1),
        StatsBucket(start_ms=T0 + MINUTE, source=None, api="unknown", requests=1, failed_requests=1),
        StatsBucket(
            start_ms=T0 + MINUTE, source="px_a", api="axon", requests=1, events_received=1, events_accepted=1, warnings=1
        ),
    ]  # fmt: skip
    # Whole minutes (their per-minute totals) tell them apart as well.
    whole = run(store.query_stats(None, since_ms=T0 - MINUTE, until_ms=T0 + 3 * MINUTE, bucket_ms=MINUTE))
    assert [(b.start_ms - T0, b.api, b.requests) for b in whole if b.source is None] == [
        (MINUTE, "axon", 1), (MINUTE, "inspector", 1), (MINUTE, "unknown", 1),
    ]  # fmt: skip


def test_stats_for_one_source_and_aligned_buckets(store: Store) -> None:
    fill_journal(store)
    buckets = run(store.query_stats("px_a", since_ms=T0 + 1_500, until_ms=T0 + 10 * MINUTE, bucket_ms=2 * MINUTE))
    assert [(b.start_ms % (2 * MINUTE), b.source, b.requests) for b in buckets] == [
        (0, "px_a", 2),  # T0 + 2 s and T0 + 1 min share the bucket aligned on 2 minutes
        (0, "px_a", 1),
    ]
    assert buckets[0].start_ms < buckets[1].start_ms
    assert run(store.query_stats("px_zz", since_ms=T0, until_ms=T0 + MINUTE, bucket_ms=MINUTE)) == []


def test_stats_count_dead_letters_by_the_time_their_event_arrived(store: Store) -> None:
    events = [
        NewEvent(api="axon", source="px_a", name="purchase", event_time_ms=T0, dedupe_id=f"d{i}", payload=b"{}",
                 destination="axon:px_a")
        for i in range(3)
    ]  # fmt: skip
    run(store.ingest(events[:2], request_id="r1", received_at_ms=T0 + 10))
    run(store.ingest(events[2:], request_id="r2", received_at_ms=T0 + MINUTE + 10))
    claimed = run(store.claim("axon:px_a", owner="w", limit=10, now_ms=T0 + 2 * MINUTE, lease_ms=MINUTE))
    assert len(claimed) == 3
    results: tuple[Literal["dead", "delivered"], ...] = ("dead", "delivered", "dead")
    outcomes = [
        AttemptOutcome(event_id=d.event_id, destination=d.destination, at_ms=T0 + 2 * MINUTE, result=result, status=400)
        for d, result in zip(claimed, results, strict=True)
    ]
    run(store.settle(outcomes, owner="w"))
    buckets = run(store.query_stats(None, since_ms=T0, until_ms=T0 + 3 * MINUTE, bucket_ms=MINUTE))
    assert [(b.start_ms - T0, b.source, b.dead_letters) for b in buckets] == [(0, "px_a", 1), (MINUTE, "px_a", 1)]
    later = run(store.query_stats("px_a", since_ms=T0 + MINUTE, until_ms=T0 + 3 * MINUTE, bucket_ms=MINUTE))
    assert [b.dead_letters for b in later] == [1]


def test_stats_in_buckets_that_are_not_whole_minutes_read_the_journal(store: Store) -> None:
    fill_journal(store)
    buckets = run(store.query_stats(None, since_ms=T0, until_ms=T0 + 2 * MINUTE, bucket_ms=30_000))
    assert [(b.start_ms - T0, b.source, b.requests, b.warnings) for b in buckets] == [
        (0, "px_a", 2, 2),
        (0, "px_b", 1, 0),
        (MINUTE, None, 1, 0),
        (MINUTE, None, 1, 0),
        (MINUTE, None, 1, 0),
        (MINUTE, "px_a", 1, 1),
    ]


def test_stats_split_the_requests_naming_no_source_per_api_from_the_minute_totals(store: Store) -> None:
    fill_journal(store)
    # Prune the whole journal (its row limit): what the whole minutes show comes from the
    # per-minute totals alone, the requests naming no source per api as well.
    run(store.prune(T0 + 6 * MINUTE, Retention(journal_days=math.inf, journal_max_rows=0, event_days=math.inf)))
    assert run(store.query_requests(RequestQuery()))[0] == []
    whole = run(store.query_stats(None, since_ms=T0, until_ms=T0 + 2 * MINUTE, bucket_ms=MINUTE))
    assert [(b.start_ms - T0, b.source, b.api, b.requests, b.failed_requests) for b in whole] == [
        (0, "px_a", "axon", 2, 1), (0, "px_b", "axon", 1, 0),
        (MINUTE, None, "axon", 1, 1), (MINUTE, None, "inspector", 1, 1), (MINUTE, None, "unknown", 1, 1),
        (MINUTE, "px_a", "axon", 1, 0),
    ]  # fmt: skip
    assert [
        b.requests for b in run(store.query_stats("px_a", since_ms=T0, until_ms=T0 + 6 * MINUTE, bucket_ms=MINUTE))
    ] == [2, 1, 1]


@pytest.mark.parametrize("source", [None, "px_a"])
def test_sqlite_stats_read_the_window_through_indexes(tmp_path: Path, source: str | None) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    run(store.open())
    run(store.close())
    conn = sqlite3.connect(tmp_path / "s.db")
    plans = []
    # Whole minutes from the per-minute totals, the two partial ones from the journal.
    for sql, params in stats_sql(source, T0 + 1_000, T0 + 5 * MINUTE + 500, MINUTE):
        plans.append(" | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)))
    # A window of whole minutes reads no journal row at all, the requests naming no source
    # included (per api in the per-minute totals): its cost does not grow with the journal.
    whole = [
        " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
        for sql, params in stats_sql(source, T0, T0 + 7 * 24 * 60 * MINUTE, 168 * MINUTE)
    ]
    conn.close()
    minutes, head, tail, dead = plans
    assert minutes.startswith("SEARCH request_minutes USING PRIMARY KEY (minute>? AND minute<?)")
    for journal in (head, tail):
        assert journal.startswith("SEARCH requests USING INDEX requests_received_at (received_at>? AND received_at<?)")
        assert "requests_source_id" not in journal, journal
    assert "USING INDEX outbox_dead" in dead
    assert "INDEX event_blocks_received_at (received_at>?)" in dead
    assert len(whole) == 2 and whole[0].startswith("SEARCH request_minutes USING PRIMARY KEY"), whole
    assert not any(re.search(r"\brequests\b", plan) for plan in whole), whole


def test_rule_a_window_reads_its_whole_minutes_from_the_totals_and_its_edges_from_the_journal() -> None:
    m = MINUTE_MS
    assert minute_windows(10 * m + 5, 20 * m + 7, m) == ((11 * m, 20 * m), [(10 * m + 5, 11 * m), (20 * m, 20 * m + 7)])
    assert minute_windows(10 * m, 20 * m, 5 * m) == ((10 * m, 20 * m), [])  # minute-aligned: no journal read
    assert minute_windows(10 * m + 5, 10 * m + 9, m) == (None, [(10 * m + 5, 10 * m + 9)])  # no whole minute
    assert minute_windows(10 * m, 20 * m, 30_000) == (None, [(10 * m, 20 * m)])  # half-minute buckets


def test_a_journal_entry_written_again_is_stored_and_counted_once(store: Store) -> None:
    """Rule: the journal writes an entry again when its first write may or may not have been
    stored (its answer lost); its request id is journaled once and counted once in the
    per-minute totals, when the retry comes with entries that came since, or twice in one write."""
    first = record(T0 + 1_000, "px_a", 400, 3, 0, warnings=[WARN])
    second = record(T0 + 2_000, "px_a", 200, 1, 1)
    run(store.record_requests([first]))
    run(store.record_requests([first, second]))  # the retry, beside an entry that came since
    run(store.record_requests([second, second]))
    rows, _ = run(store.query_requests(RequestQuery()))
    assert [r.request_id for r in rows] == [second.request_id, first.request_id]
    buckets = run(store.query_stats(None, since_ms=T0, until_ms=T0 + MINUTE, bucket_ms=MINUTE))
    assert buckets == [
        StatsBucket(
            start_ms=T0, source="px_a", api="axon", requests=2, failed_requests=1, events_received=4,
            events_accepted=1, events_refused=3, warnings=1,
        )
    ]  # fmt: skip


def test_a_pixel_and_an_app_with_one_id_keep_their_own_totals(store: Store) -> None:
    """Rule: the totals are kept per api and source. An Axon pixel and an AppsFlyer app
    configured with the same id shared one set of per-minute totals (a trial), so the
    inspector showed one card for both: from the journal, the whole minutes and the dead letters alike."""
    for r in (
        record(T0 + 1_000, "shared-1", 200, 2, 2),
        record(T0 + 2_000, "shared-1", 400, 1, 0, api="appsflyer", path="/inappevent/shared-1"),
        record(T0 + 3_000, "shared-1", 400, 1, 0, api="appsflyer", path="/inappevent/shared-1"),
    ):
        run(store.record_requests([r]))
    event = NewEvent(api="appsflyer", source="shared-1", name="af_purchase", event_time_ms=T0, dedupe_id="d1",
                     payload=b"{}", destination="appsflyer:shared-1")  # fmt: skip
    run(store.ingest([event], request_id="r-af", received_at_ms=T0 + 10))
    claimed = run(store.claim("appsflyer:shared-1", owner="w", limit=10, now_ms=T0 + MINUTE, lease_ms=MINUTE))
    dead = [AttemptOutcome(event_id=d.event_id, destination=d.destination, at_ms=T0 + MINUTE, result="dead", status=400)
            for d in claimed]  # fmt: skip
    run(store.settle(dead, owner="w"))
    expected = [(0, "shared-1", "appsflyer", 2, 2, 1), (0, "shared-1", "axon", 1, 0, 0)]
    for since, until in ((T0, T0 + 30_000), (T0 - MINUTE, T0 + 2 * MINUTE)):  # the journal, the whole minutes
        buckets = run(store.query_stats(None, since_ms=since, until_ms=until, bucket_ms=MINUTE))
        got = [(b.start_ms - T0, b.source, b.api, b.requests, b.failed_requests, b.dead_letters) for b in buckets]
        assert got == expected, (since - T0, got)
