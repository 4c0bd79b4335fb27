"""The per-minute totals keyed by api for the requests naming no source (schema version 5 of
both backends), and for a source's too (SQLite's version 8, PostgreSQL's 7). SQLite: ``capigate migrate`` upgrades a version-4 file without losing a total,
splitting its sourceless minutes per api as the journal tells; what the journal no longer
holds stays a total of its own, which the overview counts among the other requests.
PostgreSQL, which kept no such totals before: they are made from the journal it holds, and the
overview shows what it showed."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
from click.testing import CliRunner

from capigate.cli import main
from capigate.store import PostgresStore, SQLiteStore, StatsBucket, Store
from capigate.store.postgres import schema as pg_schema
from capigate.store.sqlite import schema as sqlite_schema
from tests.storekit import PG_URL, run
from tests.test_store_stats import MINUTE, T0, fill_journal, record

V4_MINUTES = """CREATE TABLE request_minutes (
    minute INTEGER NOT NULL, source TEXT NOT NULL, requests INTEGER NOT NULL, failed INTEGER NOT NULL,
    received INTEGER NOT NULL, stored INTEGER NOT NULL, duplicate INTEGER NOT NULL, warnings INTEGER NOT NULL,
    PRIMARY KEY (minute, source)
) WITHOUT ROWID"""


def whole_minutes(store: Store) -> list[tuple[int, str | None, str | None, int, int, int, int]]:
    buckets = run(store.query_stats(None, since_ms=T0 - MINUTE, until_ms=T0 + 6 * MINUTE, bucket_ms=MINUTE))
    return [row(b) for b in buckets]


def minutes_of(store: Store, *, fill: bool = False) -> list[tuple[int, str | None, str | None, int, int, int, int]]:
    """``whole_minutes`` of ``store``, opened for it (after the test journal when ``fill``) and closed."""
    run(store.open())
    try:
        if fill:
            fill_journal(store)
        return whole_minutes(store)
    finally:
        run(store.close())


def row(b: StatsBucket) -> tuple[int, str | None, str | None, int, int, int, int]:
    return (b.start_ms - T0, b.source, b.api, b.requests, b.failed_requests, b.events_received, b.warnings)


def version_4(path: Path) -> None:
    """The file as capigate wrote it at schema version 4: its sourceless minutes under '',
    whatever their api."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        conn.execute("ALTER TABLE request_minutes RENAME TO minutes_v5")
        conn.execute(V4_MINUTES)
        conn.execute(
            "INSERT INTO request_minutes SELECT minute, source, sum(requests), sum(failed), sum(received), "
            "sum(stored), sum(duplicate), sum(warnings) FROM minutes_v5 GROUP BY minute, source"
        )
        conn.execute("DROP TABLE minutes_v5")
        conn.execute("UPDATE schema_version SET version = 4")
        conn.execute("COMMIT")


# A source's per-minute totals as capigate kept them before SQLite's version 8 and
# PostgreSQL's 7: one row per minute and source (and shard), api '' whatever the api.
_TOTALS = "requests, failed, received, stored, duplicate, warnings"
_SUMS = ", ".join(f"sum({c}) AS {c}" for c in _TOTALS.split(", "))
SQLITE_LEGACY_SOURCE_MINUTES = (
    f"CREATE TEMP TABLE legacy AS SELECT minute, source, {_SUMS} FROM request_minutes WHERE source != '' "
    "GROUP BY minute, source",
    "DELETE FROM request_minutes WHERE source != ''",
    f"INSERT INTO request_minutes SELECT minute, source, '', {_TOTALS} FROM legacy",
    "DROP TABLE legacy",
)
PG_LEGACY_SOURCE_MINUTES = (
    f"CREATE TEMP TABLE legacy AS SELECT minute, source, shard, {_SUMS} FROM request_minutes "
    "WHERE source != '' GROUP BY minute, source, shard",
    "DELETE FROM request_minutes WHERE source != ''",
    f"INSERT INTO request_minutes SELECT minute, source, '', shard, {_TOTALS} FROM legacy",
    "DROP TABLE legacy",
)


def sqlite_legacy_source_minutes(path: Path, version: int) -> None:
    """The file at schema ``version`` (before 8): a source's minutes under api ''."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        for statement in SQLITE_LEGACY_SOURCE_MINUTES:
            conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = ?", (version,))
        conn.execute("COMMIT")


def test_migrate_splits_the_sourceless_minutes_per_api_keeping_every_total(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    before = minutes_of(SQLiteStore(path), fill=True)
    assert [r for r in before if r[1] is None] == [
        (MINUTE, None, "axon", 1, 1, 0, 0), (MINUTE, None, "inspector", 1, 1, 0, 0),
        (MINUTE, None, "unknown", 1, 1, 0, 0),
    ]  # fmt: skip
    version_4(path)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT requests FROM request_minutes WHERE source = ''").fetchall() == [(3,)]
        # A login whose journal entry is gone (pruned past the row limit): its minute remembers it.
        conn.execute("DELETE FROM requests WHERE api = 'inspector'")
        conn.commit()

    command = ["migrate", "--config", str(tmp_path / "none.toml"), "--db", str(path)]
    listed = CliRunner().invoke(main, command)
    assert listed.exit_code == 0 and "schema version: 4" in listed.output and "  5  " in listed.output, listed.output
    migrated = CliRunner().invoke(main, [*command, "--apply"])
    assert migrated.exit_code == 0 and f"applied {sqlite_schema.SCHEMA_VERSION - 4} step(s)" in migrated.output, (
        migrated.output
    )
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(sqlite_schema.SCHEMA_VERSION,)]
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'request_minutes_v4'").fetchall() == []

    after = minutes_of(SQLiteStore(path))
    # Every source's minutes as they were; the sourceless ones per api, the login's under none
    # (the overview's "other requests", as an inspector login is).
    assert [r for r in after if r[1] is not None] == [r for r in before if r[1] is not None]
    assert [r for r in after if r[1] is None] == [
        (MINUTE, None, None, 1, 1, 0, 0), (MINUTE, None, "axon", 1, 1, 0, 0), (MINUTE, None, "unknown", 1, 1, 0, 0),
    ]  # fmt: skip


def test_postgresql_migrate_makes_the_minute_totals_from_the_journal(schema: str, tmp_path: Path) -> None:
    before = minutes_of(PostgresStore(PG_URL, schema=schema), fill=True)
    # The database as version 4 left it: a journal, no per-minute totals.
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("DROP TABLE request_minutes")
        conn.execute("DELETE FROM capigate_schema WHERE version >= 5")

    url = f"{PG_URL}?schema={schema}"
    command = ["migrate", "--config", str(tmp_path / "none.toml"), "--db", url]
    listed = CliRunner().invoke(main, command)
    assert listed.exit_code == 0 and f"  5  {pg_schema.MIGRATIONS[4].description}" in listed.output, listed.output
    migrated = CliRunner().invoke(main, [*command, "--apply"])
    assert migrated.exit_code == 0 and f"applied {pg_schema.SCHEMA_VERSION - 4} step(s)" in migrated.output, (
        migrated.output
    )
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute("DELETE FROM requests")  # what the overview shows of whole minutes is in the totals

    assert minutes_of(PostgresStore(PG_URL, schema=schema)) == before
    assert [r for r in before if r[1] is None] == [
        (MINUTE, None, "axon", 1, 1, 0, 0), (MINUTE, None, "inspector", 1, 1, 0, 0),
        (MINUTE, None, "unknown", 1, 1, 0, 0),
    ]  # fmt: skip


# An Axon pixel and an AppsFlyer app configured with one id: the second app request's journal
# entry is gone by the migration (pruned past the row limit), its minute remembers it.
SHARED = (
    record(T0 + 4_000, "shared-1", 200, 2, 2),
    record(T0 + 5_000, "shared-1", 400, 1, 0, api="appsflyer", path="/inappevent/shared-1"),
    record(T0 + 6_000, "shared-1", 400, 1, 0, api="appsflyer", path="/inappevent/shared-1"),
)
PRUNED = SHARED[2].request_id
# After the migration: each api's share as the journal tells, the pruned entry's under none
# (the overview gives it to the source configured with that id).
SHARED_AFTER = [
    (0, "shared-1", None, 1, 1, 1, 0), (0, "shared-1", "appsflyer", 1, 1, 1, 0), (0, "shared-1", "axon", 1, 0, 2, 0),
]  # fmt: skip


def shared_minutes(store: Store) -> list[tuple[int, str | None, str | None, int, int, int, int]]:
    run(store.open())
    try:
        fill_journal(store)
        run(store.record_requests(list(SHARED)))
        return whole_minutes(store)
    finally:
        run(store.close())


def test_migrate_splits_a_sources_minutes_per_api_as_the_journal_tells(tmp_path: Path) -> None:
    path = tmp_path / "v7.db"
    before = shared_minutes(SQLiteStore(path))
    assert [r for r in before if r[1] == "shared-1"] == [
        (0, "shared-1", "appsflyer", 2, 2, 2, 0), (0, "shared-1", "axon", 1, 0, 2, 0),
    ]  # fmt: skip
    sqlite_legacy_source_minutes(path, 7)
    with closing(sqlite3.connect(path)) as conn:
        shared = "SELECT api, requests FROM request_minutes WHERE source = 'shared-1'"
        assert conn.execute(shared).fetchall() == [("", 3)]  # the pixel's and the app's, as one
        conn.execute("DELETE FROM requests WHERE request_id = ?", (PRUNED,))
        conn.commit()

    command = ["migrate", "--config", str(tmp_path / "none.toml"), "--db", str(path)]
    listed = CliRunner().invoke(main, command)
    assert listed.exit_code == 0 and "  8  a source's per-minute totals split per api" in listed.output, listed.output
    migrated = CliRunner().invoke(main, [*command, "--apply"])
    steps = sqlite_schema.SCHEMA_VERSION - 7
    assert migrated.exit_code == 0 and f"applied {steps} step(s)" in migrated.output, migrated.output
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT 1 FROM sqlite_temp_master").fetchall() == []

    after = minutes_of(SQLiteStore(path))
    assert [r for r in after if r[1] != "shared-1"] == [r for r in before if r[1] != "shared-1"]
    assert [r for r in after if r[1] == "shared-1"] == SHARED_AFTER


def test_postgresql_migrate_splits_a_sources_minutes_per_api_as_the_journal_tells(schema: str, tmp_path: Path) -> None:
    before = shared_minutes(PostgresStore(PG_URL, schema=schema))
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        with conn.transaction():
            for statement in PG_LEGACY_SOURCE_MINUTES:
                conn.execute(statement)
            conn.execute("DELETE FROM capigate_schema WHERE version >= 7")
        # A second shard's share of the same minute, as another writer connection kept it.
        conn.execute("INSERT INTO request_minutes VALUES (%s, 'px_b', '', 9, 1, 0, 1, 1, 0, 0)", (T0,))
        conn.execute("DELETE FROM requests WHERE request_id = %s", (PRUNED,))

    url = f"{PG_URL}?schema={schema}"
    command = ["migrate", "--config", str(tmp_path / "none.toml"), "--db", url]
    listed = CliRunner().invoke(main, command)
    assert listed.exit_code == 0 and f"  7  {pg_schema.MIGRATIONS[6].description}" in listed.output, listed.output
    migrated = CliRunner().invoke(main, [*command, "--apply"])
    assert migrated.exit_code == 0 and "applied 1 step(s)" in migrated.output, migrated.output

    after = minutes_of(PostgresStore(PG_URL, schema=schema))
    px_b = [(0, "px_b", None, 1, 0, 1, 0), (0, "px_b", "axon", 1, 0, 1, 0)]  # the extra shard's, the journal's
    assert [r for r in after if r[1] == "px_b"] == px_b
    assert [r for r in after if r[1] not in ("shared-1", "px_b")] == [
        r for r in before if r[1] not in ("shared-1", "px_b")
    ]
    assert [r for r in after if r[1] == "shared-1"] == SHARED_AFTER
