"""Builders of realistic payloads shared by the tests."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from tests.conftest import example


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def purchase(**overrides: Any) -> dict[str, Any]:
    """The spec's example purchase with a fresh time and a unique dedupe_id."""
    event: dict[str, Any] = copy.deepcopy(example("axon_purchase.json")["events"][0])
    event["event_time"] = now_ms()
    event["dedupe_id"] = uuid.uuid4().hex
    event.update(overrides)
    return event


def page_view(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "name": "page_view",
        "event_time": now_ms(),
        "event_source_url": "https://shop.example.com/p/1",
        "dedupe_id": uuid.uuid4().hex,
        "user_data": {
            "client_ip_address": "203.0.113.7",
            "client_user_agent": "Mozilla/5.0",
            "esi": "web",
            "client_id": "cid-1",
        },
        "data": None,
    }
    event.update(overrides)
    return event


def batch(*events: dict[str, Any]) -> dict[str, Any]:
    return {"events": list(events)}


def paths(body: dict[str, Any], key: str = "problems") -> dict[str, str]:
    """path -> code of the problems (or warnings) of a response body."""
    return {p["path"]: p["code"] for p in body[key]}
