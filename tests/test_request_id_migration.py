"""One journal row per request id (schema version 6 of both backends). Before it, a journal
entry retried after a write that may or may not have been stored could be journaled twice, and
counted twice in the per-minute totals: ``capigate migrate`` keeps the first row of each request
id, takes the others' share off the totals, and makes request_id unique."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
from click.testing import CliRunner

from capigate.cli import main
from capigate.store import PostgresStore, SQLiteStore
from capigate.store.postgres import schema as pg_schema
from capigate.store.sqlite import schema as sqlite_schema
from tests.storekit import PG_URL
from tests.test_minutes_migration import PG_LEGACY_SOURCE_MINUTES, minutes_of, sqlite_legacy_source_minutes
from tests.test_store_stats import MINUTE, T0, WARN, record

# Journaled twice by the old writes: one with warnings, one naming no source (counted per api).
TWICE = (
    record(T0 + 1_000, "px_a", 200, 3, 2, 1, warnings=[WARN, WARN]),
    record(T0 + MINUTE + 6, None, 400, 0, 0),
)
# The journal's rows, and the requests its per-minute totals count.
COUNTED = "SELECT (SELECT count(*) FROM requests), (SELECT sum(requests) FROM request_minutes)"
NON_UNIQUE = "CREATE INDEX requests_request_id ON requests (request_id)"


def migrate(db: str, tmp_path: Path) -> None:
    command = ["migrate", "--config", str(tmp_path / "none.toml"), "--db", db]
    listed = CliRunner().invoke(main, command)
    assert listed.exit_code == 0 and "schema version: 5" in listed.output and "  6  " in listed.output, listed.output
    migrated = CliRunner().invoke(main, [*command, "--apply"])
    latest = pg_schema.SCHEMA_VERSION if db.startswith("postgresql") else sqlite_schema.SCHEMA_VERSION
    assert migrated.exit_code == 0 and f"applied {latest - 5} step(s)" in migrated.output, migrated.output


def test_sqlite_migrate_says_what_step_6_does_as_it_says_the_others(tmp_path: Path) -> None:
    """On SQLite, each step after the first was listed as 'the tables and columns of version N',
    step 6 too, while PostgreSQL's say what they make (docs/deployment.md)."""
    command = ["migrate", "--config", str(tmp_path / "none.toml"), "--db", str(tmp_path / "new.db")]
    listed = CliRunner().invoke(main, command)
    assert listed.exit_code == 0, listed.output
    steps = dict(line.strip().split("  ", 1) for line in listed.output.splitlines() if line.startswith("  "))
    assert list(steps) == [str(v) for v in range(1, sqlite_schema.SCHEMA_VERSION + 1)]
    assert [text for text in steps.values() if "version" in text] == []
    assert len(set(steps.values())) == sqlite_schema.SCHEMA_VERSION
    assert steps["6"].startswith("one journal row per request id")
    assert "per-minute totals" in steps["6"] and "unique" in steps["6"]


def test_sqlite_migrate_keeps_one_row_per_request_id_and_counts_it_once(tmp_path: Path) -> None:
    path = tmp_path / "v5.db"
    before = minutes_of(SQLiteStore(path), fill=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("DROP INDEX requests_request_id")
        conn.execute(NON_UNIQUE)
    sqlite_legacy_source_minutes(path, 5)
    # A v5 file opened by this capigate is migrated at once: the old writes are made by hand.
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        columns = "request_id, received_at, api, source, method, path, status, client_ip, user_agent, latency_ms, "
        columns += "events_received, events_stored, events_duplicate, problems, warnings, test_tag"
        ids = [r.request_id for r in TWICE]
        conn.execute(f"INSERT INTO requests ({columns}) SELECT {columns} FROM requests WHERE request_id IN (?, ?)", ids)
        conn.execute(
            "UPDATE request_minutes SET requests = requests + 1, received = received + 3, stored = stored + 2, "
            "duplicate = duplicate + 1, warnings = warnings + 2 WHERE minute = ? AND source = 'px_a' AND api = ''",
            (T0,),
        )
        conn.execute(
            "UPDATE request_minutes SET requests = requests + 1, failed = failed + 1 "
            "WHERE minute = ? AND source = '' AND api = 'axon'",
            (T0 + MINUTE,),
        )
        assert conn.execute(COUNTED).fetchone() == (11, 11)  # the overview counted them twice
    migrate(str(path), tmp_path)
    with closing(sqlite3.connect(path)) as conn:
        twice = "SELECT request_id FROM requests GROUP BY request_id HAVING count(*) > 1"
        assert conn.execute(twice).fetchall() == []
        assert conn.execute(COUNTED).fetchone() == (9, 9)
    assert minutes_of(SQLiteStore(path)) == before


def test_postgresql_migrate_keeps_one_row_per_request_id_and_counts_it_once(schema: str, tmp_path: Path) -> None:
    before = minutes_of(PostgresStore(PG_URL, schema=schema), fill=True)
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("DROP INDEX requests_request_id")
        conn.execute(NON_UNIQUE)
        for statement in PG_LEGACY_SOURCE_MINUTES:
            conn.execute(statement)
        conn.execute("DELETE FROM capigate_schema WHERE version >= 6")
        columns = "request_id, received_at, api, source, method, path, status, client_ip, user_agent, latency_ms, "
        columns += "events_received, events_stored, events_duplicate, problems, warnings, test_tag"
        ids = [r.request_id for r in TWICE]
        conn.execute(
            f"INSERT INTO requests ({columns}) SELECT {columns} FROM requests WHERE request_id = ANY(%s)", [ids]
        )
        conn.execute(
            "INSERT INTO request_minutes VALUES (%s, 'px_a', '', 7, 1, 0, 3, 2, 1, 2), (%s, '', 'axon', 7, 1, 1, 0, 0, 0, 0)",
            (T0, T0 + MINUTE),
        )  # counted again, in a shard of their own
        assert conn.execute(COUNTED).fetchone() == (11, 11)  # the overview counted them twice
    migrate(f"{PG_URL}?schema={schema}", tmp_path)
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        twice = "SELECT request_id FROM requests GROUP BY request_id HAVING count(*) > 1"
        assert conn.execute(twice).fetchall() == []
        assert conn.execute(COUNTED).fetchone() == (9, 9)
    assert minutes_of(PostgresStore(PG_URL, schema=schema)) == before
