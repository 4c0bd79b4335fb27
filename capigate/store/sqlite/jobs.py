"""The SQLite store's write jobs as values rather than closures, so that a writer in another
process (writer_process.py) can be sent them: the hot two as msgpack, the rest pickled."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from capigate.responses import RequestRecord
from capigate.store.base import IngestResult
from capigate.store.sqlite.ingest import Batch, ingest, record_requests

__all__ = ["Call", "IngestJob", "RecordJob"]

T = TypeVar("T")


class Call(Generic[T]):
    """``fn(cur, *args)``: ``fn`` a module-level function, so that it pickles by name."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self.fn, self.args = fn, args

    def __call__(self, cur: sqlite3.Cursor) -> T:
        return self.fn(cur, *self.args)


class IngestJob:
    """One ingest stored alone (the writer stores a group's batches together when it can)."""

    __slots__ = ("batch",)

    def __init__(self, batch: Batch) -> None:
        self.batch = batch

    def __call__(self, cur: sqlite3.Cursor) -> IngestResult:
        return ingest(cur, [self.batch])[0]


class RecordJob:
    __slots__ = ("records",)

    def __init__(self, records: list[RequestRecord]) -> None:
        self.records = records

    def __call__(self, cur: sqlite3.Cursor) -> None:
        record_requests(cur, self.records)
