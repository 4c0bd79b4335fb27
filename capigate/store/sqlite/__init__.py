"""The SQLite store, the embedded default: one file, one writer thread with group commit,
concurrent readers. ``SQLiteStore`` is the store; the modules hold one concern each, with
the same names as the PostgreSQL store's (schema, writer, ingest, queries, outbox, prune)."""

from capigate.store.sqlite.queries import events_sql, requests_sql, stats_sql
from capigate.store.sqlite.schema import SCHEMA_VERSION
from capigate.store.sqlite.store import SQLiteStore

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "events_sql", "requests_sql", "stats_sql"]
