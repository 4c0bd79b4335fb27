"""Multi-row INSERTs for the writer thread: one ``sqlite3_step`` per chunk of rows, not one
per row as ``executemany`` does, so the writer gives up and waits for the GIL once per chunk,
not once per row (and spends a third fewer instructions)."""

from __future__ import annotations

import sqlite3
from functools import cache
from typing import Any, Final, NamedTuple

__all__ = ["MAX_ROWS", "NULL", "Insert", "insert", "insert_rows"]

# Statements with many rows are built in power-of-two sizes, so that a handful of prepared
# statements serve every batch; the limit keeps under SQLite's old 999 variables.
MAX_ROWS: Final = 64

# Python 3.11's sqlite3 looks for an adapter for every None or bytes it binds (~1 µs each: it
# builds and drops an AttributeError); int, str and bytearray it binds at once. So rows bind
# NULL for a NULL, which ``nullif(?, 0)`` in the statement turns back (no TEXT value equals
# the integer 0), and blobs as a bytearray copy (~0.3 µs).
NULL: Final = 0


class Insert(NamedTuple):
    """A multi-row INSERT: ``head``, then ``row`` once per row, ``width`` values each."""

    head: str
    row: str
    width: int


def insert(head: str, row: str) -> Insert:
    return Insert(head, row, row.count("?"))


def insert_rows(cur: sqlite3.Cursor, statement: Insert, values: list[Any]) -> None:
    """Inserts the rows whose values ``values`` holds one after the other."""
    start = 0
    for size in _chunk_sizes(len(values) // statement.width):
        end = start + size * statement.width
        cur.execute(_values_sql(statement, size), values[start:end])
        start = end


def _chunk_sizes(rows: int) -> list[int]:
    """Full chunks of MAX_ROWS, then the rest in powers of two, largest first."""
    full, rest = divmod(rows, MAX_ROWS)
    return [MAX_ROWS] * full + [1 << bit for bit in range(rest.bit_length() - 1, -1, -1) if rest >> bit & 1]


@cache
def _values_sql(statement: Insert, size: int) -> str:
    return statement.head + ", ".join([statement.row] * size)
