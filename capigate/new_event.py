"""An accepted event, ready to be written: a Struct of a module of its own, since the modules
mypyc compiles declare none (capigate/native.py). Imported from ``capigate.events``."""

from __future__ import annotations

import msgspec

__all__ = ["NewEvent"]


class NewEvent(msgspec.Struct, kw_only=True, array_like=True):
    """An accepted event, normalised and hashed, ready to be written. Encoded as an array (the
    SQLite writer process's pipe): no field names to write and match, an event apiece."""

    api: str  # "axon" | "appsflyer"
    source: str  # pixel id or app id
    name: str
    event_time_ms: int
    dedupe_id: str | None
    payload: bytes  # JSON
    test_tag: str | None = None
    # The relay destination this event is queued for, in the same transaction as the event;
    # None when its source has no relay or the event was sent in test mode.
    destination: str | None = None
    # How each match key arrived (capigate/matchkeys.py): counted per hour, source and name
    # for GET /api/quality, in ingest's transaction.
    match_keys: int = 0
    # The order id an upstream dedupes purchases by (Axon data.transaction_id), as sent: a key
    # the inspector finds the request by. Not stored apart from the payload.
    transaction_id: str | int | None = None
