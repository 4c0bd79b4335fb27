"""The PostgreSQL store, for several gateway nodes on one database. ``PostgresStore`` is the
store; the modules hold one concern each, with the same names as the SQLite store's (schema,
writer, ingest, queries, outbox, prune). Importing it imports psycopg (~0.4 s)."""

from capigate.store.postgres.queries import events_sql, requests_sql, stats_sql
from capigate.store.postgres.schema import SCHEMA_VERSION
from capigate.store.postgres.store import PostgresStore, split_options

__all__ = ["SCHEMA_VERSION", "PostgresStore", "events_sql", "requests_sql", "split_options", "stats_sql"]
