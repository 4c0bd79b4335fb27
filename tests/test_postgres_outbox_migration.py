"""Schema version 4 on PostgreSQL: a database whose outbox holds one row per event (versions
1-3) becomes one of runs, as SQLite's, with every event's relay state, attempts and lease
kept; the relay then delivers what was pending, each event once."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from click.testing import CliRunner

from capigate.cli import main
from capigate.config import RelaySettings
from capigate.relay import RelayRunner, Target
from capigate.store import DeadLetterQuery, EventQuery, PostgresStore
from capigate.store.postgres import schema as pg_schema
from tests.storekit import PG_URL, run
from tests.test_store_relay import axon_event
from tests.upstream import Upstream

DEST = "axon:px1"
NOW = time.time_ns() // 1_000_000
HOUR = 3_600_000


def sql(schema: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def old_layout(schema: str) -> dict[str, int]:
    """A version-3 database, as capigate wrote it before runs: events e1 … e10 (ids 1 … 10;
    id 11 was given to an event since pruned), one outbox row per relayed event:

    e1, e2  delivered by one request (attempt 1)     e7   pending, retried once (attempt 3: 503)
    e3      dead (attempt 2: 400)                    e8   pending, leased by a node gone since
    e4-e6   pending, never tried (one request)       e9   not relayed;  e10 dead, from px2
    """
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE capigate_schema (version integer PRIMARY KEY, description text NOT NULL, "
            "applied_at bigint NOT NULL)"
        )
        for step in pg_schema.MIGRATIONS[:3]:
            for statement in step.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO capigate_schema VALUES (%s, %s, 0)", (step.version, step.description))
        arrivals = {1: NOW - 5 * HOUR, 3: NOW - 4 * HOUR, 4: NOW - 3 * HOUR, 7: NOW - 2 * HOUR, 8: NOW - HOUR}
        received = NOW - 5 * HOUR
        for n in range(1, 12):
            received = arrivals.get(n, received)
            event = axon_event(n)
            event_status = "stored" if n == 9 else "pending"
            conn.execute(
                "INSERT INTO events (api, source, name, event_time, received_at, dedupe_id, status, request_id, "
                "payload) VALUES ('axon', %s, 'page_view', %s, %s, %s, %s, %s, %s)",
                (
                    "px2" if n == 10 else "px1",
                    event.event_time_ms,
                    received,
                    f"e{n}",
                    event_status,
                    f"r{n}",
                    event.payload,
                ),
            )
        conn.execute("DELETE FROM events WHERE id = 11")
        attempt = (
            "INSERT INTO attempts (destination, at, result, status, latency_ms, error, response_headers, "
            "response_body) VALUES (%s, %s, %s, %s, 5.0, NULL, '\\x7b7d', '') RETURNING id"
        )
        delivered = conn.execute(attempt, (DEST, NOW - 4 * HOUR, "delivered", 200)).fetchall()[0][0]
        dead = conn.execute(attempt, (DEST, NOW - 4 * HOUR, "dead", 400)).fetchall()[0][0]
        retried = conn.execute(attempt, (DEST, NOW - HOUR, "retry", 503)).fetchall()[0][0]
        rows = [  # event_id, state, attempts, next_attempt_at, lease_owner, last_status, attempt
            (1, "delivered", 1, NOW - 4 * HOUR, None, 200, delivered),
            (2, "delivered", 1, NOW - 4 * HOUR, None, 200, delivered),
            (3, "dead", 1, NOW - 4 * HOUR, None, 400, dead),
            (4, "pending", 0, NOW - 3 * HOUR, None, None, None),
            (5, "pending", 0, NOW - 3 * HOUR, None, None, None),
            (6, "pending", 0, NOW - 3 * HOUR, None, None, None),
            (7, "pending", 1, NOW - 60_000, None, 503, retried),
            (8, "pending", 0, NOW - 60_000, "node-gone", None, None),
            (10, "dead", 1, NOW - 4 * HOUR, None, 400, dead),
        ]
        for event_id, state, attempts, due, owner, status, attempt_id in rows:
            conn.execute(
                "INSERT INTO outbox (event_id, destination, state, attempts, queued_at, next_attempt_at, "
                "lease_owner, last_status) SELECT id, %s, %s, %s, received_at, %s, %s, %s FROM events WHERE id = %s",
                (DEST, state, attempts, due, owner, status, event_id),
            )
            if attempt_id is not None:
                conn.execute("INSERT INTO attempt_events VALUES (%s, %s)", (event_id, attempt_id))
        conn.execute("INSERT INTO outbox_delivered VALUES (%s, 2)", (DEST,))
    return {"delivered": delivered, "dead": dead, "retried": retried}


def test_migrate_turns_per_event_outbox_rows_into_runs_keeping_each_events_state(schema: str, tmp_path: Path) -> None:
    attempt = old_layout(schema)
    url = f"{PG_URL}?schema={schema}"
    command = ["migrate", "--config", str(tmp_path / "none.toml"), "--db", url]
    listed = CliRunner().invoke(main, command)
    assert listed.exit_code == 0 and f"  4  {pg_schema.MIGRATIONS[3].description}" in listed.output, listed.output
    migrated = CliRunner().invoke(main, [*command, "--apply"])
    steps = len(pg_schema.MIGRATIONS) - 3  # 4 and those after it
    assert migrated.exit_code == 0 and f"applied {steps} step(s)" in migrated.output, migrated.output

    runs = sql(schema, "SELECT first_id, last_id, state, attempts, lease_owner, attempt_ids FROM outbox ORDER BY 1")
    assert runs == [
        (1, 2, "delivered", 1, None, [attempt["delivered"]]),  # one request, one state: one run
        (3, 3, "dead", 1, None, [attempt["dead"]]),
        (4, 6, "pending", 0, None, []),
        (7, 7, "pending", 1, None, [attempt["retried"]]),
        (8, 8, "pending", 0, "node-gone", []),
        (10, 10, "dead", 1, None, [attempt["dead"]]),
    ]
    assert sql(schema, "SELECT to_regclass('attempt_events')") == [(None,)]

    store = PostgresStore(PG_URL, schema=schema)
    run(store.open())
    try:
        events, _ = run(store.query_events(EventQuery(limit=100)))
        states = {e.dedupe_id: e.status for e in events}
        assert states == {
            "e1": "delivered", "e2": "delivered", "e3": "dead", "e4": "pending", "e5": "pending",
            "e6": "pending", "e7": "pending", "e8": "pending", "e9": "stored", "e10": "dead",
        }  # fmt: skip
        ids = {e.dedupe_id: e.id for e in events}
        assert [a.result for a in run(store.query_attempts(ids["e2"]))] == ["delivered"]
        assert [(a.result, a.status) for a in run(store.query_attempts(ids["e7"]))] == [("retry", 503)]
        assert run(store.query_attempts(ids["e5"])) == []
        (depth,) = run(store.outbox_depths())
        assert (depth.pending, depth.dead, depth.delivered) == (5, 2, 2)
        assert depth.oldest_pending_at == NOW - 3 * HOUR
        dead, _ = run(store.query_events(EventQuery(status="dead", limit=100)))
        assert [e.dedupe_id for e in dead] == ["e10", "e3"]

        # New events get ids above every id given before the migration (11, pruned, too).
        run(store.ingest([axon_event(12), axon_event(13)], request_id="r12", received_at_ms=NOW))
        fresh, _ = run(store.query_events(EventQuery(limit=2)))
        assert all(e.id > 11 for e in fresh) and fresh[0].id == fresh[1].id + 1
        assert run(store.replay(DeadLetterQuery(source="px1"), now_ms=NOW)) == 1  # e3, not e10

        delivered = relay_everything_due(store)
        assert collections.Counter(delivered) == {f"e{n}": 1 for n in (3, 4, 5, 6, 7, 8, 12, 13)}
        (depth,) = run(store.outbox_depths())
        assert (depth.pending, depth.dead, depth.delivered) == (0, 1, 10)
        assert [a.result for a in run(store.query_attempts(ids["e7"]))] == ["retry", "delivered"]
    finally:
        run(store.close())


def relay_everything_due(store: PostgresStore) -> list[str]:
    """The dedupe_ids a relay delivers to a local upstream until nothing is pending."""
    settings = msgspec.convert({"batch_size": 10, "poll_interval_s": 0.05, "timeout_s": 2.0}, RelaySettings)
    with Upstream() as up:
        target = Target(name=DEST, api="axon", source="px1", url=up.url, api_key="k", settings=settings)

        async def relay() -> None:
            async with RelayRunner(store, destinations=[target]):
                deadline = time.monotonic() + 20
                while (await store.outbox_depths())[0].pending and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)  # a repeat would come now, not a lease later: none should

        run(relay())
        return up.dedupe_ids(answered_with=200)
