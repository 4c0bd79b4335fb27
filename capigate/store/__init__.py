"""Where accepted events and the request journal are kept.

``open_store(url)`` picks the backend from the URL; the caller then awaits ``store.open()``
and, at shutdown, ``store.close()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from capigate.errors import StoreError
from capigate.events import NewEvent
from capigate.store.base import (
    AttemptOutcome,
    DeadLetterQuery,
    Delivery,
    DeliveryAttempt,
    EventQuery,
    IngestResult,
    JournalRecord,
    OutboxDepth,
    PruneResult,
    QualityRow,
    RequestQuery,
    RequestRecord,
    RequestView,
    Retention,
    SchemaStatus,
    StatsBucket,
    Store,
    StoredEvent,
    WriterStats,
)
from capigate.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from capigate.store.postgres import PostgresStore

__all__ = [
    "AttemptOutcome",
    "DeadLetterQuery",
    "Delivery",
    "DeliveryAttempt",
    "EventQuery",
    "IngestResult",
    "JournalRecord",
    "NewEvent",
    "OutboxDepth",
    "PostgresStore",
    "PruneResult",
    "QualityRow",
    "RequestQuery",
    "RequestRecord",
    "RequestView",
    "Retention",
    "SQLiteStore",
    "SchemaStatus",
    "StatsBucket",
    "Store",
    "StoredEvent",
    "WriterStats",
    "open_store",
]

_SQLITE = "sqlite:///"
_POSTGRESQL = ("postgresql://", "postgres://")
_SQLITE_ONLY = frozenset({"synchronous", "busy_timeout_ms", "read_connections", "writer_process"})
_POSTGRESQL_ONLY = frozenset({"read_timeout_s"})  # SQLite's reads wait busy_timeout_ms at most


def open_store(url_or_path: str, **opts: Any) -> Store:
    """The (not yet opened) store for a file path or a URL.

    ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db`` follow SQLAlchemy's
    convention; a plain path is a SQLite file. ``opts`` go to the backend's constructor;
    for ``postgresql://`` URLs (``?schema=name`` picks a schema), the SQLite-only ones
    (``synchronous`` …) are dropped, and for SQLite the PostgreSQL-only ``read_timeout_s``.
    """
    if url_or_path.startswith(_POSTGRESQL):
        from capigate.store.postgres import PostgresStore

        return PostgresStore(url_or_path, **{k: v for k, v in opts.items() if k not in _SQLITE_ONLY})
    path = sqlite_path(url_or_path)
    if path is None:
        scheme = url_or_path.split("://", 1)[0]
        raise StoreError(f"unknown store URL scheme {scheme!r}: use postgresql://, sqlite:/// or a file path")
    if path in ("", ":memory:"):
        raise StoreError(f"{url_or_path!r}: the SQLite store needs a file path")
    return SQLiteStore(path, **{k: v for k, v in opts.items() if k not in _POSTGRESQL_ONLY})


def sqlite_path(url_or_path: str) -> str | None:
    """The SQLite file a store URL names (``sqlite:///…`` or a plain path), as written; None
    for any other URL."""
    if url_or_path.startswith(_SQLITE):
        return url_or_path.removeprefix(_SQLITE)
    return None if "://" in url_or_path else url_or_path


def __getattr__(name: str) -> Any:
    # psycopg is imported only when PostgreSQL is used: it costs ~0.4 s at every start.
    if name == "PostgresStore":
        from capigate.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
