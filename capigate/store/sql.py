"""What the SQL of both backends shares: the columns of the events and requests tables, in the
order the store's types read them; the WHERE of the list queries, in either placeholder style;
limit + 1 paging; and the wrapping of a driver's error into a StoreError."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import msgspec

from capigate.errors import Problem, StoreError
from capigate.store.base import RequestView, StoredEvent

__all__ = [
    "MAX_PAGE",
    "REQUEST_COLUMNS",
    "also",
    "clamp",
    "event_columns",
    "page",
    "request_view",
    "store_error",
    "stored_event",
    "where",
]

T = TypeVar("T")

MAX_PAGE: Final = 1000
REQUEST_COLUMNS: Final = (
    "id, request_id, received_at, api, source, method, path, status, client_ip, user_agent, "
    "latency_ms, events_received, events_stored, events_duplicate, problems, warnings, test_tag"
)

_decode_any = msgspec.json.Decoder().decode
_decode_problems = msgspec.json.Decoder(list[Problem]).decode


def event_columns(table: str) -> str:
    """The events row as ``stored_event`` reads it, from ``table`` (a name or an alias) joined
    to its outbox row ``o``: a relayed event reports the outbox state (pending, delivered,
    dead) as its status."""
    t = table
    return (
        f"{t}.id, {t}.api, {t}.source, {t}.name, {t}.event_time, {t}.received_at, {t}.dedupe_id, "
        f"coalesce(o.state, {t}.status), {t}.test_tag, {t}.request_id, {t}.payload"
    )


def where(
    equal: Iterable[tuple[str, object]],
    since: int | None,
    until: int | None,
    cursor: int | None,
    *,
    mark: str,
    table: str = "",
) -> tuple[str, list[Any]]:
    """`` WHERE …`` (or "") and its parameters: each ``(column, value)`` whose value is not
    None, then the received_at window and the page cursor (``id < cursor``) of ``table``.
    ``mark`` is the driver's placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    prefix = f"{table}." if table else ""
    clauses = [(f"{column} = {mark}", value) for column, value in equal if value is not None]
    if since is not None:
        clauses.append((f"{prefix}received_at >= {mark}", since))
    if until is not None:
        clauses.append((f"{prefix}received_at < {mark}", until))
    if cursor is not None:
        clauses.append((f"{prefix}id < {mark}", cursor))
    if not clauses:
        return "", []
    return " WHERE " + " AND ".join(c for c, _ in clauses), [v for _, v in clauses]


def also(where_sql: str, clause: str) -> str:
    """``where_sql`` (from ``where``) with one more condition."""
    return f"{where_sql} AND {clause}" if where_sql else f" WHERE {clause}"


def clamp(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def page(rows: list[Any], limit: int, convert: Callable[[Any], T]) -> tuple[list[T], int | None]:
    """A list query asks for limit + 1 rows: getting one more means another page exists,
    starting below the last row's id (the first column)."""
    limit = clamp(limit)
    next_cursor: int | None = rows[limit - 1][0] if len(rows) > limit else None
    return [convert(row) for row in rows[:limit]], next_cursor


def stored_event(row: Any) -> StoredEvent:
    return StoredEvent(
        id=row[0], api=row[1], source=row[2], name=row[3], event_time=row[4],
        received_at=row[5], dedupe_id=row[6], status=row[7], test_tag=row[8],
        request_id=row[9], payload=_decode_any(row[10]),
    )  # fmt: skip


def request_view(row: Any) -> RequestView:
    return RequestView(
        id=row[0], request_id=row[1], received_at=row[2], api=row[3], source=row[4], method=row[5],
        path=row[6], status=row[7], client_ip=row[8], user_agent=row[9], latency_ms=row[10],
        events_received=row[11], events_stored=row[12], events_duplicate=row[13],
        problems=_decode_problems(row[14]), warnings=_decode_problems(row[15]),
        test_tag=row[16],
    )  # fmt: skip


def store_error(exc: BaseException) -> StoreError:
    """A driver's error as the StoreError the gateway handles, the original as its cause."""
    error = StoreError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
