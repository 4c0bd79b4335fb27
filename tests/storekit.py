"""Store fixtures shared by every store test: each test runs once per backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from capigate.store import SQLiteStore, Store

T = TypeVar("T")

# A PostgreSQL backend joins this list once it exists.
BACKENDS = [pytest.param("sqlite", id="sqlite")]


def run(awaitable: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await awaitable

    return asyncio.run(wrapper())


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Builds unopened stores that all use one fresh database."""
    assert request.param == "sqlite"
    path = tmp_path / "capigate.db"
    return lambda: SQLiteStore(path)


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Iterator[Store]:
    opened = make_store()
    run(opened.open())
    yield opened
    run(opened.close())
