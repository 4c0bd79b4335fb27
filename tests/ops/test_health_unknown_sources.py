"""Unknown sources (issue #17): a scan of random pixel ids is one aggregated row on the
inspector's overview, not a card per id, and the journal keeps a bounded part of each id."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Server
from tests.helpers import batch, purchase
from tests.test_inspector_browser import browser, logged_in, playwright  # noqa: F401 (fixtures)

LONG_ID = "x" * 5000


@pytest.fixture
def scanned(fresh_server: Server) -> Iterator[Server]:
    """300 requests with random unknown pixel ids, 20 with one id, one with a 5000-character id."""
    body = batch(purchase())
    with fresh_server.client() as client:
        ids = [f"scan-{uuid.uuid4().hex}" for _ in range(300)] + ["px_guess"] * 20 + [LONG_ID]
        for pixel_id in ids:
            assert client.post("/v1/event", params={"pixel_id": pixel_id}, json=body).status_code == 401
        client.post("/v1/event", params={"pixel_id": "px_std"}, headers={"Authorization": "key-std"}, json=body)
    yield fresh_server


def _stats(server: Server) -> dict:  # type: ignore[type-arg]
    with server.admin() as admin:
        for _ in range(50):  # the journal is written in batches
            stats = admin.get("/api/stats").json()
            if stats["unknown"]["requests"] >= 321:
                return stats  # type: ignore[no-any-return]
            httpx.get(server.url + "/healthz")
    return stats  # type: ignore[no-any-return]


def test_unknown_sources_are_one_row_with_the_top_ids(scanned: Server) -> None:
    stats = _stats(scanned)
    assert stats["unknown"]["requests"] == 321 and stats["unknown"]["ids"] == 302, stats["unknown"]
    assert stats["unknown"]["top"][0] == {"id": "px_guess", "requests": 20}
    assert {b["source"] for b in stats["buckets"]} <= {"px_std", None}
    with scanned.admin() as admin:
        journal = admin.get("/api/requests", params={"limit": 1000}).json()["requests"]
    assert max(len(r["source"] or "") for r in journal) <= 64


def test_overview_shows_one_unknown_row(scanned: Server, browser: Browser) -> None:  # noqa: F811
    _stats(scanned)
    context = browser.new_context(base_url=scanned.url, viewport={"width": 1400, "height": 900})
    try:
        page = logged_in(context.new_page())
        page.click("a[data-view=overview]")
        row = page.locator("#cards .unknown-sources")
        expect(row).to_contain_text("321 requests from 302 unknown ids")
        expect(row).to_contain_text("px_guess (20)")
        configured = 6  # the test configuration's pixels and apps
        named = page.locator("#cards article:not(.other-requests)")  # the login's row is no source's
        expect(named).to_have_count(configured + 1)
    finally:
        context.close()
