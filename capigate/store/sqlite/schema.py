"""The SQLite store's tables and their versions, and the writer connection that creates them.

A new file gets every table at once; an older one gets the steps of the versions after its
own (all ``CREATE … IF NOT EXISTS``), in the writer's first transaction.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from capigate.errors import StoreError
from capigate.events import dedupe_scope, scope_name
from capigate.store.sqlite import sessions
from capigate.store.sqlite.connection import WriterConnection
from capigate.store.sqlite.dedupe import RECENT_SCHEMA
from capigate.store.sqlite.inspector import INSPECTOR_SCHEMA

__all__ = [
    "KEYS_MARK",
    "KEYS_MARK_SET",
    "KEYS_MARK_TIME",
    "SCHEMA_VERSION",
    "SYNCHRONOUS_MODES",
    "UNUSUAL_STATUS",
    "check_sqlite_path",
    "connect_writer",
    "pending_steps",
    "read_version",
]

SCHEMA_VERSION: Final = 12
SYNCHRONOUS_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
# The journal rows its status index keeps (version 10): a query reaches that index only with
# this very condition in its WHERE, which SQLite does not infer from `status = 503`.
UNUSUAL_STATUS: Final = "status <> 200"

# The relay outbox (outbox.py), added in version 2.
OUTBOX_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS outbox (
        first_id INTEGER PRIMARY KEY,
        last_id INTEGER NOT NULL,
        destination TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        queued_at INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        lease_owner TEXT,
        last_status INTEGER,
        last_error TEXT,
        arrived_at INTEGER NOT NULL,
        attempt_ids TEXT NOT NULL DEFAULT ''
    )""",
    # claim(): the oldest pending runs of a destination; a run leaves it once final.
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (destination, first_id) WHERE state = 'pending'",
    "CREATE INDEX IF NOT EXISTS outbox_dead ON outbox (destination, first_id) WHERE state = 'dead'",
    """CREATE TABLE IF NOT EXISTS attempts (
        id INTEGER PRIMARY KEY,
        destination TEXT NOT NULL,
        at INTEGER NOT NULL,
        result TEXT NOT NULL,
        status INTEGER,
        latency_ms REAL NOT NULL,
        error TEXT,
        response_headers BLOB NOT NULL,
        response_body TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS outbox_delivered (
        destination TEXT PRIMARY KEY,
        delivered INTEGER NOT NULL
    ) WITHOUT ROWID""",
)
# The journal's totals per minute, source and api, kept with each journal row: the inspector's
# charts read a week in a few thousand rows, not a million. The requests naming no source
# (source '') are kept per api too, which tells the overview's ingest calls without their id
# from logins and unknown paths. A source's rows had api '' before version 8.
REQUEST_MINUTES: Final = """CREATE TABLE IF NOT EXISTS request_minutes (
        minute INTEGER NOT NULL,
        source TEXT NOT NULL,
        api TEXT NOT NULL,
        requests INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        received INTEGER NOT NULL,
        stored INTEGER NOT NULL,
        duplicate INTEGER NOT NULL,
        warnings INTEGER NOT NULL,
        PRIMARY KEY (minute, source, api)
    ) WITHOUT ROWID"""
# Version 5: request_minutes keyed by api too. A source's rows are kept as they are; the ''
# rows are split per api as the journal tells, and what the journal no longer holds (rows
# pruned past journal_max_rows, or before the cutoff within its minute) stays under api '':
# the overview counts it among the other requests. Applied to a new file too, where it finds
# the table empty (every statement reads only the columns both versions have).
_SPLIT_MINUTES: Final = (
    "ALTER TABLE request_minutes RENAME TO request_minutes_v4",
    REQUEST_MINUTES,
    """INSERT INTO request_minutes SELECT minute, source, '', requests, failed, received, stored, duplicate, warnings
    FROM request_minutes_v4 WHERE source != ''""",
    """INSERT INTO request_minutes
    SELECT received_at - received_at % 60000 AS minute, '', api, count(*), sum(status >= 400), sum(events_received),
        sum(events_stored), sum(events_duplicate),
        sum(CASE WHEN length(warnings) > 2 THEN json_array_length(CAST(warnings AS TEXT)) ELSE 0 END)
    FROM requests INDEXED BY requests_source_id
    WHERE source IS NULL AND received_at - received_at % 60000 IN (SELECT minute FROM request_minutes_v4 WHERE source = '')
    GROUP BY minute, api""",
    """INSERT INTO request_minutes SELECT * FROM (
        SELECT o.minute, '', '', o.requests - coalesce(s.requests, 0) AS requests, o.failed - coalesce(s.failed, 0),
            o.received - coalesce(s.received, 0), o.stored - coalesce(s.stored, 0),
            o.duplicate - coalesce(s.duplicate, 0), o.warnings - coalesce(s.warnings, 0)
        FROM request_minutes_v4 o LEFT JOIN (
            SELECT minute, sum(requests) AS requests, sum(failed) AS failed, sum(received) AS received,
                sum(stored) AS stored, sum(duplicate) AS duplicate, sum(warnings) AS warnings
            FROM request_minutes WHERE source = '' GROUP BY minute
        ) s USING (minute)
        WHERE o.source = ''
    ) WHERE requests > 0""",
    "DROP TABLE request_minutes_v4",
)
# The journal rows a request id has beyond its first: written again by the retry of a write
# that may or may not have been stored, before version 6.
_TWICE: Final = "EXISTS (SELECT 1 FROM requests o WHERE o.request_id = requests.request_id AND o.id < requests.id)"
# Version 6: one journal row per request id (ingest.record_requests ignores an entry stored
# already, and does not count it again). The rows stored twice before go, the first kept, and
# their share of the per-minute totals with them.
_UNIQUE_REQUESTS: Final = (
    f"""UPDATE request_minutes SET requests = request_minutes.requests - d.requests,
        failed = request_minutes.failed - d.failed, received = request_minutes.received - d.received,
        stored = request_minutes.stored - d.stored, duplicate = request_minutes.duplicate - d.duplicate,
        warnings = request_minutes.warnings - d.warnings
    FROM (
        SELECT received_at - received_at % 60000 AS minute, coalesce(source, '') AS source,
            CASE WHEN coalesce(source, '') = '' THEN api ELSE '' END AS api, count(*) AS requests,
            sum(status >= 400) AS failed, sum(events_received) AS received, sum(events_stored) AS stored,
            sum(events_duplicate) AS duplicate,
            sum(CASE WHEN length(warnings) > 2 THEN json_array_length(CAST(warnings AS TEXT)) ELSE 0 END) AS warnings
        FROM requests WHERE {_TWICE} GROUP BY 1, 2, 3
    ) d
    WHERE request_minutes.minute = d.minute AND request_minutes.source = d.source AND request_minutes.api = d.api""",
    f"DELETE FROM requests WHERE {_TWICE}",
    "DROP INDEX IF EXISTS requests_request_id",
    "CREATE UNIQUE INDEX requests_request_id ON requests (request_id)",
)
# Version 8: a source's per-minute totals keyed by api too (an Axon pixel and an AppsFlyer
# app may share an id: they shared one set of totals). Its api '' rows are split per api as
# the journal tells; what the journal no longer holds (pruned) stays under api '', which the
# overview gives the source configured with that id.
_LEGACY_TOTALS: Final = (
    "sum(requests) AS requests, sum(failed) AS failed, sum(received) AS received, sum(stored) AS stored, "
    "sum(duplicate) AS duplicate, sum(warnings) AS warnings"
)
_SOURCE_API_MINUTES: Final = (
    f"""CREATE TEMP TABLE minutes_v7 AS SELECT minute, source, {_LEGACY_TOTALS}
    FROM request_minutes WHERE source != '' AND api = '' GROUP BY minute, source""",
    "DELETE FROM request_minutes WHERE source != '' AND api = ''",
    """INSERT INTO request_minutes
    SELECT received_at - received_at % 60000 AS minute, source, api, count(*), sum(status >= 400), sum(events_received),
        sum(events_stored), sum(events_duplicate),
        sum(CASE WHEN length(warnings) > 2 THEN json_array_length(CAST(warnings AS TEXT)) ELSE 0 END)
    FROM requests
    WHERE source IS NOT NULL AND (received_at - received_at % 60000, source) IN (SELECT minute, source FROM minutes_v7)
    GROUP BY 1, 2, 3""",
    f"""INSERT INTO request_minutes SELECT * FROM (
        SELECT o.minute, o.source, '', o.requests - coalesce(s.requests, 0) AS requests, o.failed - coalesce(s.failed, 0),
            o.received - coalesce(s.received, 0), o.stored - coalesce(s.stored, 0),
            o.duplicate - coalesce(s.duplicate, 0), o.warnings - coalesce(s.warnings, 0)
        FROM minutes_v7 o LEFT JOIN (
            SELECT minute, source, {_LEGACY_TOTALS} FROM request_minutes WHERE source != '' GROUP BY minute, source
        ) s USING (minute, source)
    ) WHERE requests > 0""",
    "DROP TABLE minutes_v7",
)
# The events a request stored, ids first_id … last_id, one row (version 11): the events'
# source, time, request and names are indexed once per request, not once per event (a W1
# batch wrote 400 index entries, now 4). Every event is in one block, which holds its source,
# received_at and request_id and a name and relay status among the block's (queries.py).
BLOCKS_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS event_blocks (
        first_id INTEGER PRIMARY KEY,
        last_id INTEGER NOT NULL,
        source TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        stored INTEGER NOT NULL,
        names TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS event_blocks_source ON event_blocks (source, first_id)",
    "CREATE INDEX IF NOT EXISTS event_blocks_received_at ON event_blocks (received_at)",
    # The blocks holding an event no relay queues (status 'stored'): few where relays are set.
    "CREATE INDEX IF NOT EXISTS event_blocks_stored ON event_blocks (first_id) WHERE stored",
    # A row per run of consecutive events of one name in a block (most blocks: one).
    """CREATE TABLE IF NOT EXISTS block_names (
        name TEXT NOT NULL,
        first_id INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        PRIMARY KEY (name, first_id)
    ) WITHOUT ROWID""",
)
# Old dedupe keys are found through their events (prune.py), not an index of their time
# (version 12: it was an eighth of the writer's instructions a W1 lead-gen event); the keys of
# events pruned before them wait in dedupe_aging, and prune_marks holds where the walk is.
KEYS_AGING_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS dedupe_aging (
        seen_at INTEGER NOT NULL,
        source TEXT NOT NULL,
        dedupe_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        PRIMARY KEY (seen_at, source, dedupe_id)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS prune_marks (
        name TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        id INTEGER NOT NULL
    ) WITHOUT ROWID""",
)
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY,
        api TEXT NOT NULL,
        source TEXT NOT NULL,
        name TEXT NOT NULL,
        event_time INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        dedupe_id TEXT,
        status TEXT NOT NULL DEFAULT 'stored',
        test_tag TEXT,
        request_id TEXT NOT NULL,
        payload BLOB NOT NULL
    )""",
    # Test events are few: the inspector's test-tag filter reads them alone, at no cost to the rest.
    "CREATE INDEX IF NOT EXISTS events_test_tag_id ON events (test_tag, id) WHERE test_tag IS NOT NULL",
    *BLOCKS_SCHEMA,
    """CREATE TABLE IF NOT EXISTS dedupe_keys (
        source TEXT NOT NULL,
        dedupe_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        seen_at INTEGER NOT NULL,
        PRIMARY KEY (source, dedupe_id)
    ) WITHOUT ROWID""",
    *KEYS_AGING_SCHEMA,
    *RECENT_SCHEMA,  # a table of its own, which older versions leave alone (dedupe.py)
    """CREATE TABLE IF NOT EXISTS requests (
        id INTEGER PRIMARY KEY,
        request_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        api TEXT NOT NULL,
        source TEXT,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        client_ip TEXT,
        user_agent TEXT,
        latency_ms REAL NOT NULL,
        events_received INTEGER NOT NULL,
        events_stored INTEGER NOT NULL,
        events_duplicate INTEGER NOT NULL,
        problems BLOB NOT NULL,
        warnings BLOB NOT NULL,
        test_tag TEXT,
        name TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS requests_source_id ON requests (source, id)",
    # Most requests are answered 200: a status filter looks for the others (a refusal, a
    # 503), which the index keeps alone; a page of 200s is the journal's newest rows.
    f"CREATE INDEX IF NOT EXISTS requests_unusual_status_id ON requests (status, id) WHERE {UNUSUAL_STATUS}",
    "CREATE INDEX IF NOT EXISTS requests_received_at ON requests (received_at)",
    REQUEST_MINUTES,
    *sessions.SCHEMA,  # a table of its own, which older versions leave alone
    # One row that each writability probe changes (ingest.probe), a table older versions leave alone.
    "CREATE TABLE IF NOT EXISTS writability_probe (id INTEGER PRIMARY KEY, at_ns INTEGER NOT NULL)",
)


def _add_request_name(cur: sqlite3.Cursor) -> None:
    # SQLite has no ADD COLUMN IF NOT EXISTS: a step must do nothing on a file that has it.
    if "name" not in {row[1] for row in cur.execute("PRAGMA table_info(requests)")}:
        cur.execute("ALTER TABLE requests ADD COLUMN name TEXT")


def _blocks_for_events_past_the_last(cur: sqlite3.Cursor) -> None:
    """A block each for the events past the last block, at every open: an older file's
    events (version 11; their requests are not told apart by id), and those an older capigate
    wrote after the file was migrated (it writes none: every filter and prune missed them, a
    trial). The last block is the newest row, its last_id the largest (they never overlap)."""
    row = cur.execute("SELECT last_id FROM event_blocks ORDER BY first_id DESC LIMIT 1").fetchone()
    _one_block_each(cur, row[0] if row else 0)


def _one_block_each(cur: sqlite3.Cursor, after: int) -> None:
    cur.execute(
        "INSERT INTO event_blocks (first_id, last_id, source, received_at, request_id, stored, names) "
        "SELECT id, id, source, received_at, request_id, status = 'stored', json_array(name) FROM events WHERE id > ?",
        (after,),
    )
    cur.execute(
        "INSERT INTO block_names (name, first_id, last_id) SELECT name, id, id FROM events WHERE id > ?", (after,)
    )


def _keys_aged_by_their_events(cur: sqlite3.Cursor) -> None:
    """Version 12: a key stored before its event's scope (an AppsFlyer or a test event's, schema
    8 and before) moves under it, which prune finds it by; the keys whose event is gone wait in
    dedupe_aging, the walk through the events starts at the oldest key's time, and the keys'
    time index goes."""
    _keys_under_their_scopes(cur)
    for table in ("dedupe_keys", "dedupe_recent"):
        cur.execute(
            "INSERT OR IGNORE INTO dedupe_aging (seen_at, source, dedupe_id, event_id) "
            f"SELECT seen_at, source, dedupe_id, event_id FROM {table} AS d "
            "WHERE NOT EXISTS (SELECT 1 FROM events WHERE id = d.event_id)"
        )
    (oldest,) = cur.execute(
        "SELECT min(t) FROM (SELECT min(seen_at) AS t FROM dedupe_keys UNION ALL SELECT min(seen_at) FROM dedupe_recent)"
    ).fetchone()
    if oldest is not None:
        cur.execute(KEYS_MARK_SET, (oldest, -(2**63)))
    cur.execute("DROP INDEX IF EXISTS dedupe_keys_seen_at")


def _keys_under_their_scopes(cur: sqlite3.Cursor) -> None:
    """Each key of an AppsFlyer or a test event under the scope its event has now
    (``events.dedupe_scope``). One stored under an older scope was never looked up again by an
    AppsFlyer event, and wrongly by a real event for a test one's; where the key of the scope
    is there already (stored since), the old one goes."""
    of_scoped_events = "AS d JOIN events AS e ON e.id = d.event_id WHERE e.api = 'appsflyer' OR e.test_tag IS NOT NULL"
    keys = cur.execute(
        f"SELECT d.source, d.dedupe_id, d.event_id, e.api, e.source, e.name, e.test_tag FROM dedupe_keys {of_scoped_events}"
    ).fetchall()
    for was, dedupe_id, event_id, api, source, name, tag in keys:
        scope = dedupe_scope(source, tag, scope_name(api, name))
        if scope != was:
            moved = "source = ? AND dedupe_id = ? AND event_id = ?"
            cur.execute(f"UPDATE OR IGNORE dedupe_keys SET source = ? WHERE {moved}", (scope, was, dedupe_id, event_id))
            cur.execute(f"DELETE FROM dedupe_keys WHERE {moved}", (was, dedupe_id, event_id))
    recent = cur.execute(
        f"SELECT d.id, d.source, e.api, e.source, e.name, e.test_tag FROM dedupe_recent {of_scoped_events}"
    ).fetchall()
    for row_id, was, api, source, name, tag in recent:
        scope = dedupe_scope(source, tag, scope_name(api, name))
        if scope != was:
            cur.execute("UPDATE dedupe_recent SET source = ? WHERE id = ?", (scope, row_id))


# Where prune's walk of the events for their dedupe keys is: the (received_at, id) walked last.
KEYS_MARK: Final = "SELECT received_at, id FROM prune_marks WHERE name = 'dedupe_keys'"
KEYS_MARK_TIME: Final = "SELECT received_at FROM prune_marks WHERE name = 'dedupe_keys'"
KEYS_MARK_SET: Final = "INSERT OR REPLACE INTO prune_marks (name, received_at, id) VALUES ('dedupe_keys', ?, ?)"


# What each schema version adds to the one before (all CREATE … IF NOT EXISTS, or a step that
# looks first), and what
# `capigate migrate` lists it as (postgres/schema.py's MIGRATIONS say theirs likewise).
_FIRST_STEP: Final = "create the tables"
_MIGRATIONS: Final[dict[int, tuple[str, tuple[str | Callable[[sqlite3.Cursor], None], ...]]]] = {
    2: ("the relay outbox in runs of event ids, the delivery attempts", OUTBOX_SCHEMA),
    3: (
        "the events no relay queues found by their own index, the old status index dropped",
        # events_stored, which version 11 replaced by event_blocks_stored in turn
        ("DROP INDEX IF EXISTS events_status_id",),
    ),
    # capigate/store/sqlite/inspector.py
    4: ("refused request bodies, the keys requests are found by, the match-key rollups", INSPECTOR_SCHEMA),
    5: ("the journal's per-minute totals of the requests naming no source, split per api", _SPLIT_MINUTES),
    6: (
        "one journal row per request id (a unique index): its extra rows dropped and taken off the per-minute totals",
        _UNIQUE_REQUESTS,
    ),
    7: ("scattered new dedupe keys appended in order, moved into their index in key order", RECENT_SCHEMA),
    8: ("a source's per-minute totals split per api, as the journal tells", _SOURCE_API_MINUTES),
    # The rows before keep their names as key rows, where queries find them too.
    9: ("a request's event name on its journal row, when it has one only", (_add_request_name,)),
    10: (
        "the journal's status index keeps only the requests not answered 200",
        ("DROP INDEX IF EXISTS requests_status_id",),  # _SCHEMA has made requests_unusual_status_id
    ),
    11: (
        "the events indexed by request (event_blocks, block_names), not one by one: each event becomes a block",
        # _SCHEMA has made the blocks' tables; _blocks_for_events_past_the_last fills them
        tuple(
            f"DROP INDEX IF EXISTS {index}"
            for index in ("events_source_id", "events_name_id", "events_stored", "events_received_at")
        ),
    ),
    12: (
        "old dedupe keys found through their events, not an index of their time (dropped)",
        (_keys_aged_by_their_events,),  # _SCHEMA has made dedupe_aging and prune_marks
    ),
}


def connect_writer(path: Path, synchronous: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None, factory=WriterConnection)
    try:
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode != "wal":
            raise StoreError(f"{path}: cannot use WAL mode (got {mode!r}); use a local disk")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        if synchronous in ("FULL", "EXTRA"):
            conn.execute("PRAGMA fullfsync = ON")  # macOS: flush the drive's cache too
        conn.execute("PRAGMA cache_size = -65536")  # KiB: 64 MiB for index pages
        conn.execute("PRAGMA temp_store = MEMORY")  # the per-job savepoint journals
        # Checkpoint every ~40 MiB, not 4 MiB: hot index pages are copied back less often.
        conn.execute("PRAGMA wal_autocheckpoint = 10000")
        conn.execute("PRAGMA journal_size_limit = 67108864")
        _create_schema(conn.cursor())
    except BaseException:
        conn.close()
        raise
    return conn


def _create_schema(cur: sqlite3.Cursor) -> None:
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        (found,) = cur.execute("SELECT max(version) FROM schema_version").fetchone()
        if found is not None and found > SCHEMA_VERSION:
            raise StoreError(
                f"the database has schema version {found}; this capigate knows up to {SCHEMA_VERSION}: upgrade capigate"
            )
        for statement in _SCHEMA:
            cur.execute(statement)
        for version in range((found or 1) + 1, SCHEMA_VERSION + 1):
            for step in _MIGRATIONS[version][1]:
                if isinstance(step, str):
                    cur.execute(step)
                else:
                    step(cur)
        _blocks_for_events_past_the_last(cur)
        if found is None:
            cur.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif found < SCHEMA_VERSION:
            cur.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def read_version(path: Path) -> int:
    """The file's schema version (0: no file, or no schema yet), read without changing it."""
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the SQLite file: {exc}") from exc
    try:
        tables = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchall()
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone() if tables else None
    except sqlite3.DatabaseError as exc:  # "file is not a database": reading its header failed
        raise StoreError(f"{path}: not a SQLite database ({exc})") from None
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else 0


def pending_steps(version: int) -> list[tuple[int, str]]:
    """The steps after ``version``, as ``capigate migrate`` lists them."""
    return [(v, _FIRST_STEP if v == 1 else _MIGRATIONS[v][0]) for v in range(version + 1, SCHEMA_VERSION + 1)]


def check_sqlite_path(path: Path) -> None:
    """StoreError naming the path and the cause when SQLite could not create or write the
    database there: it needs its directory writable too (the -wal and -shm files)."""
    directory = path.parent
    if not directory.exists():
        raise StoreError(f"{path}: the directory {directory} does not exist")
    if not directory.is_dir():
        raise StoreError(f"{path}: {directory} is not a directory")
    if path.exists() and not path.is_file():
        raise StoreError(f"{path}: not a file")
    for target in (directory, path) if path.exists() else (directory,):
        if not os.access(target, os.W_OK):
            raise StoreError(f"{path}: {_why_unwritable(target)}")
    _probe_directory(path)


def _probe_directory(path: Path) -> None:
    """Create and remove a file beside ``path``, as SQLite will (the database, -wal, -shm):
    os.access says yes to root everywhere, and to /proc, where nothing can be created."""
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=path.parent)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise StoreError(f"{path}: {path.parent} is on a read-only file system") from None
        raise StoreError(f"{path}: cannot create a file in {path.parent} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def _why_unwritable(target: Path) -> str:
    try:
        read_only = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"{target} is on a read-only file system"
    return f"{target} is not writable by this user (permission denied)"
