"""The inspector page when things go wrong, in a real headless Chromium: the store stops
answering, the user double-clicks, more rows arrive than a page, a client sends text that
reorders itself. Each from a trial that found the page misleading there."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Server
from tests.helpers import batch, page_view, wait_until, writer_of
from tests.test_inspector_browser import browser, checked_page, logged_in, playwright  # noqa: F401  (fixtures)


@pytest.fixture
def page(browser: Browser, fresh_server: Server) -> Iterator[Page]:  # noqa: F811
    with checked_page(browser, fresh_server.url) as page:
        yield page


def send(fresh_server: Server, tag: str, count: int = 1, **event: object) -> None:
    with fresh_server.client() as c:
        for _ in range(count):
            answer = c.post(
                "/v1/event?pixel_id=px_std",
                json=batch(page_view(**event)),
                headers={"Authorization": "key-std", "X-Capigate-Test": tag},
            )
            assert answer.status_code == 200, answer.text


def test_a_store_that_stops_answering_keeps_the_rows_and_says_so(page: Page, fresh_server: Server) -> None:
    """The 503's body was read as an empty page: the journal went blank under a green "live"."""
    tag = f"outage-{uuid.uuid4().hex[:8]}"
    send(fresh_server, tag, 3)
    logged_in(page)
    rows = page.locator("#requests tbody tr.request", has_text=tag)
    expect(rows).to_have_count(3)
    assert fresh_server.proc is not None
    writer = writer_of(fresh_server.proc.pid)
    os.kill(writer, signal.SIGSTOP)
    try:
        wait_until(
            lambda: httpx.get(f"{fresh_server.url}/api/sources").status_code in (401, 503), what="admin reads refused"
        )
        expect(page.locator("#live")).to_have_text("unavailable", timeout=15_000)
        expect(page.locator("#live")).to_have_attribute("title", "the store is unavailable: no answer within 1 s")
        expect(rows).to_have_count(3)
    finally:
        os.kill(writer, signal.SIGCONT)
    expect(page.locator("#live")).to_have_text("live", timeout=15_000)


def test_older_clicked_twice_shows_each_row_once(page: Page, fresh_server: Server) -> None:
    send(fresh_server, f"older-{uuid.uuid4().hex[:8]}", 120)
    logged_in(page)
    rows = page.locator("#requests tbody tr.request")
    expect(rows).to_have_count(50)
    page.dblclick("#rq-more")
    expect(rows).to_have_count(100)
    page.wait_for_timeout(500)
    ids = page.locator("#requests tbody tr.request").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert len(ids) == len(set(ids)) == 100, ids


def test_more_new_rows_than_a_page_leave_no_hole_below_them(page: Page, fresh_server: Server) -> None:
    """Merged on top of the older pages, the rows between were never shown (a trial: 30 of 180)."""
    send(fresh_server, f"burst-{uuid.uuid4().hex[:8]}", 100)
    logged_in(page)
    rows = page.locator("#requests tbody tr.request")
    page.click("#rq-more")
    expect(rows).to_have_count(100)
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")  # a poll now
    page.evaluate("Object.defineProperty(document, 'hidden', {get: () => true, configurable: true})")
    send(fresh_server, f"burst-{uuid.uuid4().hex[:8]}", 80)
    page.evaluate("Object.defineProperty(document, 'hidden', {get: () => false, configurable: true})")
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    expect(rows).to_have_count(50)  # the newest page again, "Older" below it
    ids = [int(i) for i in rows.evaluate_all("rows => rows.map(r => r.dataset.id)")]
    assert ids == sorted(ids, reverse=True) and ids[0] - ids[-1] == 49, ids


def test_bidirectional_controls_are_shown_as_escapes(page: Page, fresh_server: Server) -> None:
    """U+202E made the payload read "live" where "evil" was stored (a trial)."""
    tag = f"bidi-{uuid.uuid4().hex[:8]}"
    user = page_view()["user_data"]
    send(fresh_server, tag, user_data={**user, "client_user_agent": "Mozilla/5.0 \u202elive"})
    logged_in(page)
    page.goto(f"{fresh_server.url}/#events")
    page.fill("#ev-filters [name=test_tag]", tag)
    page.press("#ev-filters [name=test_tag]", "Enter")
    page.locator("#events tbody tr.event").first.click()
    expect(page.locator("#events .json").first).to_contain_text("Mozilla/5.0 \\u202elive")
    assert "\u202e" not in page.locator("#events").inner_text()


def test_a_page_opened_while_the_store_is_away_waits_for_it(page: Page, fresh_server: Server) -> None:
    """Opened (or reloaded) during an outage, the tab stayed blank under a green "live" and
    never recovered: its first read failed and its polling never started (a trial)."""
    tag = f"late-{uuid.uuid4().hex[:8]}"
    send(fresh_server, tag)
    logged_in(page)
    assert fresh_server.proc is not None
    writer = writer_of(fresh_server.proc.pid)
    os.kill(writer, signal.SIGSTOP)
    try:
        wait_until(lambda: httpx.get(f"{fresh_server.url}/readyz").status_code == 503, what="the store away")
        wait_until(
            lambda: page.context.request.get(f"{fresh_server.url}/api/sources").status == 503,
            what="admin reads refused",
        )
        page.reload()
        expect(page.locator("#live")).to_have_text("unavailable", timeout=15_000)
    finally:
        os.kill(writer, signal.SIGCONT)
    expect(page.locator("#requests tbody tr.request", has_text=tag)).to_have_count(1, timeout=15_000)
    expect(page.locator("#live")).to_have_text("live")
