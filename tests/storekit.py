"""Store fixtures shared by every store test: each test runs once per backend.

PostgreSQL tests use the server at ``CAPIGATE_TEST_PG`` (default: the machine's own, database
``test``), each test in a fresh schema of its own, dropped afterwards. They fail, never skip,
when the server is unreachable (``scripts/test`` starts it if it is down).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from capigate.store import PostgresStore, SQLiteStore, Store

T = TypeVar("T")

PG_URL = os.environ.get("CAPIGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = [pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql")]
# The store contract also runs on SQLite's writer process (a gateway's default: [store] writer).
STORE_BACKENDS = [*BACKENDS[:1], pytest.param("sqlite_process", id="sqlite_process"), *BACKENDS[1:]]

_loop: asyncio.AbstractEventLoop | None = None


def run(awaitable: Awaitable[T]) -> T:
    """Run on the test's event loop: every call of a test shares one loop, since a store's
    connections belong to the loop that opened them (as in a gateway worker)."""

    async def wrapper() -> T:
        return await awaitable

    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop.run_until_complete(wrapper())


def close_loop() -> None:
    global _loop
    loop, _loop = _loop, None
    if loop is not None and not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


atexit.register(close_loop)


@contextmanager
def pg_schema(prefix: str = "capigate_test") -> Iterator[str]:
    """A new, empty schema on the test server, dropped with everything in it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} is unreachable (scripts/test starts it): {exc}")
    try:
        yield name
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def schema() -> Iterator[str]:
    """The name of a fresh schema on the test server (``pg_schema``), for the tests that open
    PostgreSQL stores or run ``capigate migrate`` against it themselves; the test's event loop
    is closed after the schema is dropped."""
    with pg_schema() as name:
        yield name
    close_loop()


@pytest.fixture(params=STORE_BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Builds unopened stores that all use one fresh database."""
    try:
        if request.param == "sqlite":
            path = tmp_path / "capigate.db"
            yield lambda: SQLiteStore(path)
        elif request.param == "sqlite_process":
            path = tmp_path / "capigate.db"
            yield lambda: SQLiteStore(path, writer_process=True)
        else:
            with pg_schema() as schema:
                yield lambda: PostgresStore(PG_URL, schema=schema)
    finally:
        close_loop()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Iterator[Store]:
    opened = make_store()
    run(opened.open())
    yield opened
    run(opened.close())


def store_as_text(db: str, schema: str | None) -> dict[str, str]:
    """Every byte and row of a stopped gateway's store as text, by where it was read, to look
    for a value that must not be there: the SQLite file (``db``) and its WAL, and its dump; or
    each table of its PostgreSQL ``schema``."""
    if schema is None:
        found = {f.name: f.read_bytes().decode("latin-1") for f in Path(db).parent.glob(Path(db).name + "*")}
        con = sqlite3.connect(db)
        found["dump"] = "\n".join(con.iterdump())
        con.close()
        return found
    found = {}
    with psycopg.connect(PG_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        for (table,) in tables:
            rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()
            found[f"pg {table}"] = "\n".join(r[0] for r in rows)
    return found
