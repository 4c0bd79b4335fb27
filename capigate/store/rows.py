"""Rows of the events and requests tables as the store's types: the same columns, in the
same order, in every backend's SELECTs."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from capigate.errors import Problem
from capigate.store.base import RequestRecord, StoredEvent

__all__ = ["MAX_PAGE", "clamp", "request_pair", "stored_event"]

MAX_PAGE: Final = 1000
_decode_any = msgspec.json.Decoder().decode
_decode_problems = msgspec.json.Decoder(list[Problem]).decode


def clamp(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def stored_event(row: Any) -> StoredEvent:
    return StoredEvent(
        id=row[0], api=row[1], source=row[2], name=row[3], event_time=row[4],
        received_at=row[5], dedupe_id=row[6], status=row[7], test_tag=row[8],
        request_id=row[9], payload=_decode_any(row[10]),
    )  # fmt: skip


def request_pair(row: Any) -> tuple[int, RequestRecord]:
    return row[0], RequestRecord(
        request_id=row[1], received_at=row[2], api=row[3], source=row[4], method=row[5],
        path=row[6], status=row[7], client_ip=row[8], user_agent=row[9], latency_ms=row[10],
        events_received=row[11], events_stored=row[12], events_duplicate=row[13],
        problems=_decode_problems(row[14]), warnings=_decode_problems(row[15]),
        test_tag=row[16],
    )  # fmt: skip
