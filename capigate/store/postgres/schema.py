"""The PostgreSQL schema as numbered migration steps, and the code that applies them.

Each step is applied once, in order, in one transaction that holds an advisory lock, so nodes
starting together never migrate twice; ``capigate_schema`` keeps one row per applied step. A
database whose version is newer than the steps this capigate knows is refused: an older node
must not write to a schema it does not understand.

Steps are append-only: a released step is never edited, a change is a new step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg.rows import TupleRow

from capigate.errors import StoreError
from capigate.store.postgres import sessions
from capigate.store.postgres.inspector import INSPECTOR_MIGRATION

__all__ = [
    "ID_BLOCK",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "apply_pending",
    "pending",
    "pg_text",
    "read_version",
]

# Event ids are taken a block at a time (ingest.py): the events of one request get consecutive
# ids that no other connection or node can take, so they form one outbox run. A block holds
# the largest request (an Axon batch: 100 events); a larger ingest takes a block per 128.
ID_BLOCK: Final = 128

# One lock per PostgreSQL schema: deployments in other schemas of the database never wait.
_LOCK: Final = "SELECT pg_advisory_xact_lock(hashtext('capigate-migrate:' || coalesce(current_schema(), '')))"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# Version 4: the outbox holds runs (outbox.py) instead of one row per event. Each old row
# becomes part of a run: rows of consecutive ids that share everything a run holds (and one
# request's source and arrival time) join into one run, the rest stay runs of one. Which
# attempts carried an event moves from attempt_events to its run's attempt_ids.
RUNS_MIGRATION: Final = (
    "DROP INDEX outbox_pending",
    "DROP INDEX outbox_dead",
    "ALTER TABLE outbox RENAME TO outbox_v3",
    """CREATE TABLE outbox (
        first_id bigint PRIMARY KEY,
        last_id bigint NOT NULL,
        destination text NOT NULL,
        state text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        queued_at bigint NOT NULL,
        next_attempt_at bigint NOT NULL,
        lease_owner text,
        last_status integer,
        last_error text,
        arrived_at bigint NOT NULL,
        attempt_ids bigint[] NOT NULL DEFAULT '{}'
    )""",
    """INSERT INTO outbox (
        first_id, last_id, destination, state, attempts, queued_at, next_attempt_at, lease_owner, last_status,
        last_error, arrived_at, attempt_ids
    )
    SELECT min(event_id), max(event_id), destination, state, attempts, queued_at, next_attempt_at, lease_owner,
        last_status, last_error, arrived_at, ids
    FROM (
        SELECT o.*, coalesce(e.received_at, o.queued_at) AS arrived_at, coalesce(l.ids, '{}') AS ids,
            e.api, e.source,
            o.event_id - row_number() OVER (
                PARTITION BY o.destination, o.state, o.attempts, o.queued_at, o.next_attempt_at, o.lease_owner,
                    o.last_status, o.last_error, e.received_at, e.api, e.source, l.ids
                ORDER BY o.event_id
            ) AS island
        FROM outbox_v3 o
        LEFT JOIN events e ON e.id = o.event_id
        LEFT JOIN (
            SELECT event_id, array_agg(attempt_id ORDER BY attempt_id) AS ids FROM attempt_events GROUP BY event_id
        ) l ON l.event_id = o.event_id
    ) r
    GROUP BY destination, state, attempts, queued_at, next_attempt_at, lease_owner, last_status, last_error,
        arrived_at, ids, api, source, island""",
    "DROP TABLE outbox_v3",
    "DROP TABLE attempt_events",
    # claim(): the oldest pending runs of a destination; a run leaves it once final.
    "CREATE INDEX outbox_pending ON outbox (destination, first_id) WHERE state = 'pending'",
    "CREATE INDEX outbox_dead ON outbox (destination, first_id) WHERE state = 'dead'",
    # The first block starts above every id the identity column gave (pruned ones too): an
    # id never names a second event.
    "CREATE SEQUENCE event_id_blocks",
    f"""SELECT setval('event_id_blocks', greatest(
        (SELECT coalesce(max(id), 0) FROM events), (SELECT last_value FROM events_id_seq)
    ) / {ID_BLOCK} + 1, false)""",
    "ALTER TABLE events ALTER COLUMN id DROP IDENTITY",
)

# Version 5: the journal's totals per minute, as SQLite's request_minutes: a source's under
# api '' (per api from version 7), the requests naming no source (source '') per api, so the inspector's overview reads
# whole minutes from them and not the journal. Each writer connection adds to rows of its own
# shard (as the match-key rollups), so nodes never wait for each other's row. Filled from the
# journal the database holds.
MINUTES_MIGRATION: Final = (
    """CREATE TABLE request_minutes (
        minute bigint NOT NULL,
        source text NOT NULL,
        api text NOT NULL,
        shard integer NOT NULL,
        requests bigint NOT NULL,
        failed bigint NOT NULL,
        received bigint NOT NULL,
        stored bigint NOT NULL,
        duplicate bigint NOT NULL,
        warnings bigint NOT NULL,
        PRIMARY KEY (minute, source, api, shard)
    )""",
    """INSERT INTO request_minutes
    SELECT received_at - received_at % 60000, coalesce(source, ''),
        CASE WHEN coalesce(source, '') = '' THEN api ELSE '' END, 0, count(*), count(*) FILTER (WHERE status >= 400),
        sum(events_received), sum(events_stored), sum(events_duplicate),
        sum(CASE WHEN length(warnings) > 2 THEN json_array_length(convert_from(warnings, 'UTF8')::json) ELSE 0 END)
    FROM requests GROUP BY 1, 2, 3""",
)

# The journal rows a request id has beyond its first: written again by the retry of a write
# that may or may not have been stored, before version 6.
_TWICE: Final = "EXISTS (SELECT 1 FROM requests o WHERE o.request_id = r.request_id AND o.id < r.id)"
# Version 6: one journal row per request id (ingest.REQUESTS_SQL ignores an entry stored
# already, and does not count it again). The rows stored twice before go, the first kept, and
# their share of the per-minute totals with them (taken off in shard 0, where a minute still
# has totals: the overview sums the shards).
UNIQUE_REQUESTS_MIGRATION: Final = (
    f"""INSERT INTO request_minutes
    SELECT * FROM (
        SELECT received_at - received_at % 60000 AS minute, coalesce(source, '') AS source,
            CASE WHEN coalesce(source, '') = '' THEN api ELSE '' END AS api, 0, -count(*),
            -count(*) FILTER (WHERE status >= 400), -sum(events_received), -sum(events_stored),
            -sum(events_duplicate),
            -sum(CASE WHEN length(warnings) > 2 THEN json_array_length(convert_from(warnings, 'UTF8')::json) ELSE 0 END)
        FROM requests r WHERE {_TWICE} GROUP BY 1, 2, 3
    ) d WHERE EXISTS (
        SELECT 1 FROM request_minutes m WHERE m.minute = d.minute AND m.source = d.source AND m.api = d.api
    )
    ON CONFLICT (minute, source, api, shard) DO UPDATE SET
        requests = request_minutes.requests + excluded.requests, failed = request_minutes.failed + excluded.failed,
        received = request_minutes.received + excluded.received, stored = request_minutes.stored + excluded.stored,
        duplicate = request_minutes.duplicate + excluded.duplicate,
        warnings = request_minutes.warnings + excluded.warnings""",
    f"DELETE FROM requests r WHERE {_TWICE}",
    "DROP INDEX requests_request_id",
    "CREATE UNIQUE INDEX requests_request_id ON requests (request_id)",
)

# Version 7: a source's per-minute totals keyed by api too, as SQLite's version 8 (an Axon
# pixel and an AppsFlyer app may share an id: they shared one set of totals). Its api ''
# rows, in every shard, are summed, split per api as the journal tells (in shard 0), and what
# the journal no longer holds (pruned) stays under api '', which the overview gives the source
# configured with that id.
_LEGACY_TOTALS: Final = (
    "sum(requests) AS requests, sum(failed) AS failed, sum(received) AS received, sum(stored) AS stored, "
    "sum(duplicate) AS duplicate, sum(warnings) AS warnings"
)
SOURCE_API_MIGRATION: Final = (
    f"""CREATE TEMP TABLE minutes_v6 ON COMMIT DROP AS SELECT minute, source, {_LEGACY_TOTALS}
    FROM request_minutes WHERE source != '' AND api = '' GROUP BY minute, source""",
    "DELETE FROM request_minutes WHERE source != '' AND api = ''",
    """INSERT INTO request_minutes
    SELECT received_at - received_at % 60000, source, api, 0, count(*), count(*) FILTER (WHERE status >= 400),
        sum(events_received), sum(events_stored), sum(events_duplicate),
        sum(CASE WHEN length(warnings) > 2 THEN json_array_length(convert_from(warnings, 'UTF8')::json) ELSE 0 END)
    FROM requests
    WHERE source IS NOT NULL AND (received_at - received_at % 60000, source) IN (SELECT minute, source FROM minutes_v6)
    GROUP BY 1, 2, 3""",
    f"""INSERT INTO request_minutes
    SELECT * FROM (
        SELECT o.minute, o.source, '', 0, o.requests - coalesce(s.requests, 0) AS requests,
            o.failed - coalesce(s.failed, 0), o.received - coalesce(s.received, 0), o.stored - coalesce(s.stored, 0),
            o.duplicate - coalesce(s.duplicate, 0), o.warnings - coalesce(s.warnings, 0)
        FROM minutes_v6 o LEFT JOIN (
            SELECT minute, source, {_LEGACY_TOTALS} FROM request_minutes WHERE source != '' GROUP BY minute, source
        ) s USING (minute, source)
    ) d WHERE requests > 0""",
)

MIGRATIONS: Final = (
    Migration(
        1,
        "events, dedupe keys, request journal, relay outbox and attempts, nodes",
        (
            """CREATE TABLE events (
                id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                api text NOT NULL,
                source text NOT NULL,
                name text NOT NULL,
                event_time bigint NOT NULL,
                received_at bigint NOT NULL,
                dedupe_id text,
                status text NOT NULL DEFAULT 'stored',
                test_tag text,
                request_id text NOT NULL,
                payload bytea NOT NULL
            )""",
            # The query API reads newest first under one equality filter: (filter, id) serves
            # both the filter and the order, so a page is an index range read backwards.
            "CREATE INDEX events_source_id ON events (source, id)",
            "CREATE INDEX events_name_id ON events (name, id)",
            "CREATE INDEX events_status_id ON events (status, id)",
            "CREATE INDEX events_received_at ON events (received_at)",
            """CREATE TABLE dedupe_keys (
                source text NOT NULL,
                dedupe_id text NOT NULL,
                seen_at bigint NOT NULL,
                PRIMARY KEY (source, dedupe_id)
            )""",
            "CREATE INDEX dedupe_keys_seen_at ON dedupe_keys (seen_at)",
            """CREATE TABLE requests (
                id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                request_id text NOT NULL,
                received_at bigint NOT NULL,
                api text NOT NULL,
                source text,
                method text NOT NULL,
                path text NOT NULL,
                status integer NOT NULL,
                client_ip text,
                user_agent text,
                latency_ms double precision NOT NULL,
                events_received integer NOT NULL,
                events_stored integer NOT NULL,
                events_duplicate integer NOT NULL,
                problems bytea NOT NULL,
                warnings bytea NOT NULL,
                test_tag text
            )""",
            "CREATE INDEX requests_source_id ON requests (source, id)",
            "CREATE INDEX requests_status_id ON requests (status, id)",
            "CREATE INDEX requests_received_at ON requests (received_at)",
            # One row per relayed event. A leased row stays 'pending' with its lease expiry as
            # next_attempt_at, so "due" is one comparison whoever holds it, and a lease rewrites
            # two columns no index covers (a HOT update).
            """CREATE TABLE outbox (
                event_id bigint PRIMARY KEY,
                destination text NOT NULL,
                state text NOT NULL DEFAULT 'pending',
                attempts integer NOT NULL DEFAULT 0,
                queued_at bigint NOT NULL,
                next_attempt_at bigint NOT NULL,
                lease_owner text,
                last_status integer,
                last_error text
            )""",
            # claim(): the oldest pending rows of a destination; a row leaves it once final.
            "CREATE INDEX outbox_pending ON outbox (destination, event_id) WHERE state = 'pending'",
            "CREATE INDEX outbox_dead ON outbox (destination, event_id) WHERE state = 'dead'",
            # One row per upstream request: the outcomes of its events share it.
            """CREATE TABLE attempts (
                id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                destination text NOT NULL,
                at bigint NOT NULL,
                result text NOT NULL,
                status integer,
                latency_ms double precision NOT NULL,
                error text,
                response_headers bytea NOT NULL,
                response_body text NOT NULL
            )""",
            """CREATE TABLE attempt_events (
                event_id bigint NOT NULL,
                attempt_id bigint NOT NULL,
                PRIMARY KEY (event_id, attempt_id)
            )""",
            # Delivered events per destination, so outbox_depths() counts no rows.
            """CREATE TABLE outbox_delivered (
                destination text PRIMARY KEY,
                delivered bigint NOT NULL
            )""",
            # Each node's writability probe writes its own row: a real write, no contention.
            """CREATE TABLE capigate_nodes (
                node text PRIMARY KEY,
                seen_at bigint NOT NULL
            )""",
        ),
    ),
    Migration(2, "the inspector's login sessions", sessions.SCHEMA),
    Migration(3, "refused request bodies, the keys requests are found by, the match-key rollups", INSPECTOR_MIGRATION),
    Migration(4, "the relay outbox in runs of event ids, as SQLite's; event ids by the block", RUNS_MIGRATION),
    Migration(5, "the journal's per-minute totals, the requests naming no source per api", MINUTES_MIGRATION),
    Migration(6, "one journal row per request id: an entry retried is not stored twice", UNIQUE_REQUESTS_MIGRATION),
    Migration(7, "a source's per-minute totals split per api, as the journal tells", SOURCE_API_MIGRATION),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version

_VERSION_TABLE: Final = """CREATE TABLE IF NOT EXISTS capigate_schema (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at bigint NOT NULL
)"""


async def read_version(conn: psycopg.AsyncConnection[TupleRow]) -> int:
    """The schema version of the database ``conn``'s search_path points at (0: none yet)."""
    cur = await conn.execute("SELECT to_regclass('capigate_schema') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM capigate_schema")
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


def pending(version: int) -> list[Migration]:
    """The steps a database at ``version`` still needs; StoreError if it is newer than ours."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database has schema version {version}; this capigate knows up to "
            f"{SCHEMA_VERSION}: upgrade capigate before starting it on this database"
        )
    return [m for m in MIGRATIONS if m.version > version]


async def apply_pending(conn: psycopg.AsyncConnection[TupleRow]) -> list[Migration]:
    """Apply every pending step in one transaction, under the migration lock; returns them.

    ``conn`` must not be in a transaction. A node that waited for the lock finds the steps
    applied by the node that held it, and applies nothing.
    """
    async with conn.transaction():
        await conn.execute(_LOCK)
        await conn.execute(_VERSION_TABLE)
        steps = pending(await read_version(conn))
        now_ms = time.time_ns() // 1_000_000
        for step in steps:
            for statement in step.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO capigate_schema (version, description, applied_at) VALUES (%s, %s, %s)",
                (step.version, step.description, now_ms),
            )
    return steps


def pg_text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD (JSON payloads are bytea, intact)."""
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", "\ufffd")
