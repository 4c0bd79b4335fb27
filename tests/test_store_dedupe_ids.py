"""An Axon dedupe_id the two stores would keep differently (PostgreSQL text holds no NUL) is
refused alike on both, at its path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, served_on
from tests.helpers import batch, page_view, paths, stored


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with served_on(request.param, tmp_path / "gw", "capigate_nul_dedupe") as (server, _):
        yield server


def test_a_nul_in_dedupe_id_is_refused_on_either_backend_not_taken_for_another_id(backend: Server) -> None:
    """PostgreSQL text holds no NUL: `nul\\u0000x` was stored as `nul\\ufffdx`, and a distinct
    event with `nul\\ufffdx` was then answered stored 0, duplicates 1 (a trial); SQLite stored
    both. Either backend now refuses a NUL in dedupe_id at its path (400), before any store;
    the id with U+FFFD itself is an id like any other."""

    def send(*events: dict[str, Any]) -> httpx.Response:
        with backend.client(headers={"Authorization": "key-std"}) as c:
            return c.post("/v1/event?pixel_id=px_std", json=batch(*events))

    refused = send(page_view(dedupe_id="ok-beside-nul"), page_view(dedupe_id="nul\u0000x"))
    assert refused.status_code == 400, refused.text
    assert paths(refused.json()) == {"events[1].dedupe_id": "invalid_dedupe_id"}, refused.text
    assert "\u0000" not in refused.text and "nul" not in refused.json()["problems"][0]["message"].split("NUL")[0]
    other = send(page_view(dedupe_id="nul\ufffdx"))
    assert other.status_code == 200 and (other.json()["stored"], other.json()["duplicates"]) == (1, 0), other.text
    assert [e["dedupe_id"] for e in stored(backend, "px_std")] == ["nul\ufffdx"]
