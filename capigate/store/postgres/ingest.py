"""The PostgreSQL store's writes of accepted events, journal entries and probes: the jobs the
writer tasks take (writer.py), and how one group of them becomes one statement per table.

Every event of every ingest of a group goes into one statement (dedupe keys inserted with
``ON CONFLICT DO NOTHING`` in a data-modifying CTE, then the events that won their key, then
their outbox runs), every journal entry into one multi-row INSERT.

Across nodes, the (source, dedupe_id) primary key decides: a key inserted by a transaction
still in flight makes the other wait for its outcome, and the loser's event is a duplicate.
Keys are inserted in one global order (sorted), so two groups never wait on each other in a
cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from capigate.events import NewEvent, dedupe_scope, scope_name
from capigate.store.base import IngestResult, RequestRecord
from capigate.store.inspector import QualityKey, minute_key, quality_counts, record_extras
from capigate.store.postgres.inspector import QUALITY_CTE
from capigate.store.postgres.schema import ID_BLOCK, pg_text

__all__ = [
    "INGEST_SQL",
    "PROBE_SQL",
    "REQUESTS_SQL",
    "Group",
    "IngestJob",
    "Job",
    "ProbeJob",
    "RecordJob",
    "check_payloads",
    "request_row",
]

_encode = msgspec.json.Encoder().encode

# The events of the group that win their key (or have none) get ids in batch order: each
# request's events the consecutive ids of a block of their own (schema.ID_BLOCK; ``block``
# numbers a request's blocks within the group), so one request's events of one destination
# are one outbox run; the final SELECT says which candidates were stored.
INGEST_SQL = f"""
WITH fresh AS (
    INSERT INTO dedupe_keys (source, dedupe_id, seen_at)
    SELECT k.source, k.dedupe_id, k.seen_at
    FROM unnest(%b::text[], %b::text[], %b::int8[]) WITH ORDINALITY AS k(source, dedupe_id, seen_at, ord)
    ORDER BY k.ord
    ON CONFLICT DO NOTHING
    RETURNING source, dedupe_id
), candidates AS (
    SELECT c.*
    FROM unnest(
        %b::text[], %b::text[], %b::text[], %b::int8[], %b::int8[], %b::text[], %b::text[],
        %b::text[], %b::bytea[], %b::text[], %b::int8[], %b::int8[], %b::text[]
    ) WITH ORDINALITY AS c(
        api, source, name, event_time, received_at, dedupe_id, test_tag, request_id, payload,
        destination, match_keys, block, scope, ord
    )
    WHERE c.dedupe_id IS NULL
       OR EXISTS (SELECT 1 FROM fresh f WHERE f.source = c.scope AND f.dedupe_id = c.dedupe_id)
), blocks AS MATERIALIZED (
    SELECT block, nextval('event_id_blocks') * {ID_BLOCK} AS base
    FROM (SELECT DISTINCT block FROM candidates ORDER BY block) b
), stored AS (
    SELECT b.base + row_number() OVER (PARTITION BY c.block ORDER BY c.ord) - 1 AS id, c.*
    FROM candidates c JOIN blocks b USING (block)
), events_in AS (
    INSERT INTO events (
        id, api, source, name, event_time, received_at, dedupe_id, status, test_tag, request_id, payload
    )
    SELECT id, api, source, name, event_time, received_at, dedupe_id,
           CASE WHEN destination IS NULL THEN 'stored' ELSE 'pending' END, test_tag, request_id, payload
    FROM stored ORDER BY id
), outbox_in AS (
    INSERT INTO outbox (first_id, last_id, destination, state, queued_at, next_attempt_at, arrived_at)
    SELECT min(id), max(id), destination, 'pending', min(received_at), min(received_at), min(received_at)
    FROM (
        SELECT id, destination, received_at, block,
               id - row_number() OVER (PARTITION BY block, destination ORDER BY id) AS island
        FROM stored WHERE destination IS NOT NULL
    ) s
    GROUP BY block, destination, island
)"""
INGEST_SQL += (
    QUALITY_CTE
    + """
SELECT ord FROM stored
"""
)

# A group's journal entries, and the per-minute totals (inspector.minute_key) of those that
# were not stored before, added to the rows of the writer connection's shard, in key order.
# An entry stored already (a retry of a write that may or may not have been stored) is not
# stored again, nor counted twice.
REQUESTS_SQL: Final = """
WITH new AS (
    INSERT INTO requests (
        request_id, received_at, api, source, method, path, status, client_ip, user_agent, latency_ms,
        events_received, events_stored, events_duplicate, problems, warnings, test_tag
    )
    SELECT * FROM unnest(
        %b::text[], %b::int8[], %b::text[], %b::text[], %b::text[], %b::text[], %b::int4[], %b::text[],
        %b::text[], %b::float8[], %b::int4[], %b::int4[], %b::int4[], %b::bytea[], %b::bytea[], %b::text[]
    )
    ON CONFLICT (request_id) DO NOTHING
    RETURNING request_id
)
INSERT INTO request_minutes (minute, source, api, shard, requests, failed, received, stored, duplicate, warnings)
SELECT k.m, k.s, k.a, %b::int4, count(*), sum(k.f), sum(k.rc), sum(k.st), sum(k.d), sum(k.w)
FROM unnest(%b::text[], %b::int8[], %b::text[], %b::text[], %b::int8[], %b::int8[], %b::int8[], %b::int8[], %b::int8[])
    AS k(id, m, s, a, f, rc, st, d, w)
JOIN new ON new.request_id = k.id
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
ON CONFLICT (minute, source, api, shard) DO UPDATE SET
    requests = request_minutes.requests + excluded.requests, failed = request_minutes.failed + excluded.failed,
    received = request_minutes.received + excluded.received, stored = request_minutes.stored + excluded.stored,
    duplicate = request_minutes.duplicate + excluded.duplicate, warnings = request_minutes.warnings + excluded.warnings
"""

PROBE_SQL: Final = """
INSERT INTO capigate_nodes (node, seen_at) VALUES (%s, %s)
ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at
"""


def check_payloads(events: Sequence[NewEvent]) -> None:
    for position, event in enumerate(events):
        if type(event.payload) is not bytes:
            kind = type(event.payload).__name__
            raise TypeError(f"event at position {position}: payload must be bytes, not {kind}")


def request_row(r: RequestRecord) -> tuple[Any, ...]:
    return (
        r.request_id, r.received_at, r.api, pg_text(r.source), pg_text(r.method), pg_text(r.path),
        r.status, pg_text(r.client_ip), pg_text(r.user_agent), r.latency_ms, r.events_received,
        r.events_stored, r.events_duplicate, _encode(r.problems), _encode(r.warnings),
        pg_text(r.test_tag),
    )  # fmt: skip


# --- jobs -------------------------------------------------------------------------------


class Job:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future


class IngestJob(Job):
    __slots__ = ("events", "received_at_ms", "request_id")

    def __init__(
        self, future: asyncio.Future[Any], events: list[NewEvent], request_id: str, received_at_ms: int
    ) -> None:
        super().__init__(future)
        self.events, self.request_id, self.received_at_ms = events, request_id, received_at_ms


class RecordJob(Job):
    __slots__ = ("bodies", "keys", "record", "row")

    def __init__(self, future: asyncio.Future[Any], record: RequestRecord) -> None:
        super().__init__(future)
        self.record = record
        self.row = request_row(record)
        self.bodies, self.keys = record_extras([record])


class ProbeJob(Job):
    __slots__ = ()


class Group:
    """The merged statements of one group, and how to give each job its result."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.ingests = [j for j in jobs if isinstance(j, IngestJob)]
        self.records = [j for j in jobs if isinstance(j, RecordJob)]
        self.probes = [j for j in jobs if isinstance(j, ProbeJob)]
        self.duplicates: list[list[int]] = [[] for _ in self.ingests]
        self.owners: list[tuple[int, int]] = []  # candidate (ord - 1) -> (ingest index, position)
        self.quality: dict[QualityKey, list[int]] = {}  # the received counts of the rollups
        self.ingest_params = self._ingest_params() if self.ingests else None

    def _ingest_params(self) -> list[list[Any]]:
        keys: list[tuple[str, str, int]] = []
        seen: set[tuple[str, str]] = set()
        cols: list[list[Any]] = [[] for _ in range(13)]
        api, source, name, event_time, received_at, dedupe_id, test_tag, request_id, payload, *rest = cols
        dest, match, block, scopes = rest
        blocks = 0  # taken by the jobs before this one
        for j, job in enumerate(self.ingests):
            quality_counts(self.quality, job.events, (), job.received_at_ms)
            for position, e in enumerate(job.events):
                src, key_id, tag = pg_text(e.source) or "", pg_text(e.dedupe_id), pg_text(e.test_tag)
                scope = dedupe_scope(src, tag, scope_name(e.api, pg_text(e.name) or ""))
                if key_id is not None:
                    key = (scope, key_id)
                    if key in seen:  # an earlier event of this group has it: first one wins
                        self.duplicates[j].append(position)
                        continue
                    seen.add(key)
                    keys.append((scope, key_id, job.received_at_ms))
                api.append(e.api)
                source.append(src)
                name.append(pg_text(e.name))
                event_time.append(e.event_time_ms)
                received_at.append(job.received_at_ms)
                dedupe_id.append(key_id)
                test_tag.append(tag)
                request_id.append(job.request_id)
                payload.append(e.payload)
                dest.append(pg_text(e.destination))
                match.append(e.match_keys)
                block.append(blocks + position // ID_BLOCK)
                scopes.append(scope)
                self.owners.append((j, position))
            blocks += -(-len(job.events) // ID_BLOCK)
        keys.sort()  # one lock order for every node: no deadlock between groups
        return [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], *cols]

    def records_params(self, shard: int) -> list[Any]:
        """REQUESTS_SQL's parameters: the rows, then each one's per-minute counts. A request id
        twice in the group (a retried entry beside its first try) is one row, counted once."""
        rows: dict[str, RecordJob] = {}
        for job in self.records:
            rows.setdefault(job.row[0], job)
        counts = []
        for request_id, job in rows.items():
            r = job.record
            minute, source, api = minute_key(r)
            failed = int(r.status >= 400)
            counts.append((request_id, minute, pg_text(source), api, failed, r.events_received, r.events_stored,
                           r.events_duplicate, len(r.warnings)))  # fmt: skip
        columns = [list(column) for column in zip(*(job.row for job in rows.values()), strict=True)]
        return [*columns, shard, *(list(column) for column in zip(*counts, strict=True))]

    def extras_params(self) -> tuple[list[list[Any]] | None, list[list[Any]] | None]:
        """BODIES_SQL's and KEYS_SQL's parameters, None where there is nothing to write."""
        bodies = [b for job in self.records for b in job.bodies]
        keys = [(pg_text(a), pg_text(b), c, d) for job in self.records for a, b, c, d in job.keys]
        return _columns(bodies, 3), _columns(keys, 4)

    def ingest_results(self, stored_ords: list[int]) -> list[IngestResult]:
        stored = [0] * len(self.ingests)
        winners = set(stored_ords)
        for index, (j, position) in enumerate(self.owners):
            if index + 1 in winners:
                stored[j] += 1
            else:  # its key was stored before, by this node or another
                self.duplicates[j].append(position)
        return [
            IngestResult(stored=n, duplicates=sorted(dups)) for n, dups in zip(stored, self.duplicates, strict=True)
        ]


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]] | None:
    return [[row[i] for row in rows] for i in range(width)] if rows else None
