"""Schema versions, for ``capigate migrate`` and ``capigate serve``'s start-up check: the
version a store's database is at, the version this capigate knows, and the steps between.

Both backends apply their pending steps when a node opens the store; ``capigate migrate
--apply`` applies them ahead of a rolling upgrade, and a node refuses to start on a database
newer than it knows (an old node must not write a schema it does not understand).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from capigate.errors import StoreError
from capigate.store import open_store
from capigate.store import sqlite as sqlite_module
from capigate.store.sqlite import SQLiteStore

__all__ = ["SchemaStatus", "apply_migrations", "check_sqlite_path", "describe", "schema_status"]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    store: str  # what to call it in messages (a PostgreSQL password is hidden)
    version: int  # 0: no schema yet
    latest: int  # the newest version this capigate knows
    pending: list[tuple[int, str]]  # (version, what it does)

    @property
    def too_new(self) -> bool:
        return self.version > self.latest

    def refusal(self) -> str:
        return (
            f"{self.store}: the database has schema version {self.version}; this capigate knows up to "
            f"{self.latest}: upgrade capigate before starting it on this database"
        )


async def schema_status(url_or_path: str) -> SchemaStatus:
    """Where the store's database is, without changing it. StoreError if it is unreachable."""
    store = open_store(url_or_path)
    if isinstance(store, SQLiteStore):
        check_sqlite_path(store.path)
        version = _sqlite_version(store.path)
        latest = sqlite_module.SCHEMA_VERSION
        pending = [
            (v, "create the tables" if v == 1 else f"the tables and columns of version {v}")
            for v in range(version + 1, latest + 1)
        ]
        return SchemaStatus(str(store.path), version, latest, pending)
    # Imported here: psycopg costs ~0.4 s, which every `capigate serve` on SQLite would pay.
    from capigate.store import pg_schema
    from capigate.store.postgres import PostgresStore

    if isinstance(store, PostgresStore):
        version = await store.schema_version()
        pending = [(m.version, m.description) for m in pg_schema.MIGRATIONS if m.version > version]
        return SchemaStatus(store.location, version, pg_schema.SCHEMA_VERSION, pending)
    raise StoreError(f"{url_or_path}: no schema versions for {type(store).__name__}")  # pragma: no cover


async def apply_migrations(url_or_path: str) -> SchemaStatus:
    """Apply the pending steps (as a node's start would); returns the status afterwards."""
    before = await schema_status(url_or_path)
    if before.too_new:
        raise StoreError(before.refusal())
    store = open_store(url_or_path)
    if isinstance(store, SQLiteStore):
        await store.open()
        await store.close()
    else:
        from capigate.store.postgres import PostgresStore

        if isinstance(store, PostgresStore):
            await store.migrate()
    return await schema_status(url_or_path)


def describe(status: SchemaStatus, *, applied: int | None = None) -> list[str]:
    """The lines ``capigate migrate`` prints."""
    lines = [f"store: {status.store}"]
    if applied is not None:
        lines.append(f"applied {applied} step(s)")
    lines.append(f"schema version: {status.version or 'none yet'} (this capigate knows up to {status.latest})")
    if status.too_new:
        return lines
    if not status.pending:
        lines.append("up to date")
        return lines
    lines.append("pending steps:")
    lines += [f"  {version}  {text}" for version, text in status.pending]
    lines.append("apply them with `capigate migrate --apply` (`capigate serve` applies them at start too)")
    return lines


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


def _why_unwritable(target: Path) -> str:
    try:
        read_only = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        return f"{target} is on a read-only file system"
    return f"{target} is not writable by this user (permission denied)"


def _sqlite_version(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the SQLite file: {exc}") from exc
    try:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    except sqlite3.Error:  # no schema_version table: not created yet
        return 0
    finally:
        conn.close()
    return int(row[0]) if row and row[0] is not None else 0
