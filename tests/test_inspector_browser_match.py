"""The inspector's answers to "why was my purchase refused, and will it match?", driven in a
real headless Chromium: find a refused purchase by transaction id and see its body with the
failing path marked; follow the links between a request and its events; watch a pending
event's attempts and a replay settle live; read the coverage panel; use it from 360 px up."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from capigate.inspector.quality import percent
from tests.conftest import ADMIN, Server, make_server
from tests.helpers import batch, purchase
from tests.test_inspector_browser import browser, checked_page, logged_in, playwright  # noqa: F401  (fixtures)
from tests.upstream import Reply, Upstream

HEX = hashlib.sha256(b"already hashed").hexdigest()


def config(upstream: str) -> str:
    return f"""
[server]
admin_token = "{ADMIN}"

[[axon.pixels]]
pixel_id = "px_shop"
api_key = "key-shop"
profile = "standard"

[[axon.pixels]]
pixel_id = "px_match"
api_key = "key-match"
profile = "standard"

[[axon.pixels]]
pixel_id = "px_share"
api_key = "key-share"
profile = "standard"

[[axon.pixels]]
pixel_id = "px_relay"
api_key = "key-relay"
profile = "standard"
relay = {{ url = "{upstream}", api_key = "up", backoff_base_s = 0.3, backoff_max_s = 0.6, poll_interval_s = 0.2, max_attempts = 1000 }}

[[axon.pixels]]
pixel_id = "px_dead"
api_key = "key-dead"
profile = "standard"
relay = {{ url = "{upstream}", api_key = "up", max_attempts = 1, poll_interval_s = 0.2 }}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("inspector-match"), config(upstream.url))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Browser, gateway: Server) -> Iterator[Page]:  # noqa: F811
    with checked_page(browser, gateway.url, 1440) as page:
        yield page


def post(gateway: Server, pixel: str, *events: dict[str, Any], **headers: str) -> httpx.Response:
    with gateway.client(headers={"Authorization": pixel.replace("px_", "key-"), **headers}) as c:
        return c.post(f"/v1/event?pixel_id={pixel}", json=batch(*events))


def test_find_a_refused_purchase_by_transaction_id_and_see_the_failing_path_in_its_body(
    page: Page, gateway: Server
) -> None:
    txn = f"order-{uuid.uuid4().hex[:8]}"
    event = purchase()
    event["data"] = {**event["data"], "transaction_id": txn, "currency": "ZZZ"}
    event["user_data"] = {**event["user_data"], "email": "Jane.Doe@Example.com"}
    assert post(gateway, "px_shop", purchase(), event).status_code == 400
    for _ in range(3):  # other refusals the filter must leave out
        assert post(gateway, "px_shop", purchase(name="nope")).status_code == 400

    logged_in(page)
    page.fill("#rq-transaction", txn)
    page.click("#rq-filters button[type=submit]")
    rows = page.locator("#requests tr.request")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("400")
    rows.first.click()
    detail = page.locator("#requests .request-detail")
    marked = detail.locator("pre.json.body .hl-error")
    expect(marked).to_have_count(1)
    assert marked.get_attribute("data-path") == "events[1].data.currency"
    expect(marked).to_have_text('"ZZZ"')
    expect(detail.locator(".problems.error")).to_contain_text("events[1].data.currency")
    body = detail.locator("pre.json.body").inner_text()
    assert "Jane.Doe" not in body and hashlib.sha256(b"jane.doe@example.com").hexdigest() in body
    detail.locator(".problems.error tr.linked").first.click()  # a problem shows its place in the body
    expect(marked).to_be_in_viewport()


def test_a_resent_batch_opens_to_the_keys_it_carried_though_it_stored_nothing(page: Page, gateway: Server) -> None:
    """A request whose events were all duplicates lists no stored event: its detail says which
    dedupe ids and transaction ids it carried, those a search for it matched (a tryout)."""
    dedupe, txn = f"dup-{uuid.uuid4().hex[:8]}", f"order-{uuid.uuid4().hex[:8]}"
    event = purchase(dedupe_id=dedupe)
    event["data"] = {**event["data"], "transaction_id": txn}
    for _ in range(2):
        assert post(gateway, "px_shop", event).status_code == 200
    logged_in(page)
    page.fill("#rq-filters [name=dedupe_id]", dedupe)
    page.click("#rq-filters button[type=submit]")
    rows = page.locator("#requests tr.request")
    expect(rows).to_have_count(2)
    rows.first.click()  # the newest: the resend, all duplicates
    keys = page.locator("#requests .request-detail dd.keys")
    expect(keys).to_contain_text(f"dedupe_id {dedupe}")
    expect(keys).to_contain_text(f"transaction_id {txn}")
    expect(page.locator("#requests .request-detail .stored-events")).to_have_count(0)
    page.fill("#rq-filters [name=dedupe_id]", f"none-{dedupe}")
    page.click("#rq-filters button[type=submit]")
    expect(page.locator("#requests td.empty")).to_have_text(
        "No request matches these filters. Clear shows every request."
    )


def test_an_event_opens_its_request_and_the_request_lists_its_events(page: Page, gateway: Server) -> None:
    tag = f"link-{uuid.uuid4().hex[:6]}"
    assert (
        post(gateway, "px_shop", purchase(), purchase(name="add_to_cart"), **{"X-Capigate-Test": tag}).status_code
        == 200
    )
    logged_in(page)
    page.click("a[data-view=events]")
    page.fill("#ev-filters [name=test_tag]", tag)
    page.click("#ev-filters button[type=submit]")
    expect(page.locator("#events tr.event")).to_have_count(2)
    page.locator("#events tr.event", has_text="purchase").click()
    page.locator("#events a.request-link").click()
    pinned = page.locator("#rq-pinned .pinned")
    expect(pinned).to_contain_text("Stored events (2)")
    links = pinned.locator("a.event-link")
    expect(links).to_have_count(2)
    links.filter(has_text="add_to_cart").click()
    expect(page.locator("#ev-pinned .pinned")).to_contain_text("add_to_cart")
    expect(page.locator("a[data-view=events]")).to_have_class(re.compile("active"))


def test_a_link_to_a_request_opened_logged_out_leads_to_it_once_logged_in(page: Page, gateway: Server) -> None:
    """The fragment was lost at the login, and the page opened on its overview (a trial)."""
    request_id = post(gateway, "px_shop", purchase()).headers["x-capigate-request-id"]
    page.goto(f"/#request/{request_id}")
    page.fill("#token", ADMIN)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(f"#request/{request_id}$"))
    expect(page.locator("#rq-pinned .pinned")).to_contain_text(request_id)


def test_a_test_events_dedupe_text_says_its_id_counts_within_its_tag(page: Page, gateway: Server) -> None:
    """Rule: events.dedupe_scope. The panel said copies of a test event's dedupe_id would be
    duplicates, as if a real event with that id would be dropped (a trial): it counts within
    the source and tag, and the text says so; a real event's says nothing of tags."""
    tag, dedupe = f"scope-{uuid.uuid4().hex[:6]}", f"scope-{uuid.uuid4().hex[:8]}"
    assert post(gateway, "px_shop", purchase(dedupe_id=dedupe), **{"X-Capigate-Test": tag}).status_code == 200
    assert post(gateway, "px_shop", purchase(dedupe_id=dedupe)).json()["stored"] == 1  # the real one is not a duplicate
    logged_in(page)
    page.click("a[data-view=events]")
    page.fill("#ev-filters [name=test_tag]", tag)
    page.click("#ev-filters button[type=submit]")
    expect(page.locator("#events tr.event")).to_have_count(1)
    page.locator("#events tr.event").click()
    text = page.locator("#events tr.detail")
    expect(text).to_contain_text(f"The first event with this dedupe_id for test events of px_shop tagged {tag}:")
    expect(text).to_contain_text("A real event, or a test event of another tag, with this id is stored.")


def test_a_pending_events_attempts_update_live(page: Page, gateway: Server, upstream: Upstream) -> None:
    dedupe = f"live-{uuid.uuid4().hex[:8]}"
    upstream.script = lambda seen: Reply(503, b'{"error":"try later"}')
    assert post(gateway, "px_relay", purchase(dedupe_id=dedupe)).status_code == 200
    logged_in(page)
    page.click("a[data-view=events]")
    row = page.locator("#events tr.event", has_text=dedupe)
    expect(row).to_contain_text("pending")
    row.click()
    count = page.locator("#events .attempts .attempt-count")
    expect(count).to_contain_text("attempt", timeout=10_000)
    first = int(re.findall(r"(\d+) attempts?", count.text_content() or "")[0])
    expect(count).not_to_contain_text(f", {first} attempt", timeout=10_000)  # more came, the page never reloaded
    shown = int(re.findall(r"(\d+) attempts?", count.text_content() or "")[0])
    assert shown > first
    upstream.script = lambda seen: None  # the upstream takes it now
    expect(count).to_contain_text("delivered", timeout=15_000)
    expect(page.locator("#events .attempts tr.attempt").last).to_contain_text("delivered")


def test_an_open_requests_stored_events_show_their_delivery_live(
    page: Page, gateway: Server, upstream: Upstream
) -> None:
    """An opened detail was kept as first read: its event stayed "pending" once delivered, even
    closed and opened again (a trial). It is read again on each poll, its events' list alone
    redrawn; opened again (here pinned), it is read afresh."""
    dedupe = f"detail-{uuid.uuid4().hex[:8]}"
    upstream.script = lambda seen: Reply(503, b'{"error":"try later"}') if dedupe in seen.body.decode() else None
    assert post(gateway, "px_relay", purchase(dedupe_id=dedupe)).status_code == 200
    logged_in(page)
    page.fill("#rq-filters [name=dedupe_id]", dedupe)
    page.click("#rq-filters button[type=submit]")
    row = page.locator("#requests tr.request")
    expect(row).to_have_count(1)
    row.click()
    state = page.locator("#requests .request-detail .stored-events .state")
    expect(state).to_have_text("pending")
    facts = page.locator("#requests .request-detail .findings .facts")
    facts.evaluate("el => { el.dataset.drawn = 'once'; }")
    upstream.script = lambda seen: None  # the upstream takes it now
    expect(state).to_have_text("delivered", timeout=15_000)
    expect(facts).to_have_attribute("data-drawn", "once")  # updated in place, not drawn again
    pinned = f"#request/{row.get_attribute('data-request-id')}"
    page.evaluate(f"location.hash = {pinned!r}")
    expect(page.locator("#rq-pinned .stored-events .state")).to_have_text("delivered")


def test_a_share_that_is_not_whole_never_reads_100_or_0_percent(page: Page, gateway: Server) -> None:
    """199 of 200 events with a dedupe_id read "100 %" while the JSON said 0.995, as the CLI
    did (a trial): the page says what `capigate quality` says, for every share."""
    events = [purchase() for _ in range(200)]
    del events[0]["dedupe_id"]
    for e in events[1:]:
        e["user_data"].pop("email", None)
    assert post(gateway, "px_share", *events[:100]).status_code == 200
    assert post(gateway, "px_share", *events[100:]).status_code == 200
    logged_in(page)
    page.click("a[data-view=quality]")
    page.select_option("#q-source", "axon:px_share")
    card = page.locator('.card.quality[data-source="px_share"][data-name="purchase"]')
    expect(card.locator(".dedupe-share")).to_have_text("99.5 %")
    expect(card.locator('tr[data-key="email"] .pct')).to_have_text("1 %")  # one of 200: not "0 %"
    expect(card.locator('tr[data-key="aleid"] .pct')).to_have_text("100 %")  # every one: whole
    assert [percent(s) for s in (0.9998, 0.999999, 0.004, 0.00001)] == ["99.98 %", ">99.99 %", "0.4 %", "<0.01 %"]
    said = page.evaluate("[0.9998, 0.999999, 0.004, 0.00001, 0.125, 0.995, 0.005].map(pct)")
    assert said == [percent(s) for s in (0.9998, 0.999999, 0.004, 0.00001, 0.125, 0.995, 0.005)], said


def test_a_replay_shows_its_count_and_the_outcome_of_the_next_attempts(
    page: Page, gateway: Server, upstream: Upstream
) -> None:
    upstream.script = lambda seen: (
        Reply(400, b'{"error":"refused"}') if "px_dead" in seen.query.get("pixel_id", "") else None
    )
    assert post(gateway, "px_dead", purchase(), purchase()).status_code == 200
    logged_in(page)
    page.click("a[data-view=overview]")
    relay_row = page.locator('#relay tr[data-destination="axon:px_dead"]')
    expect(relay_row.locator("button.replay")).to_contain_text("Replay 2 dead letters", timeout=15_000)
    relay_row.locator("button.replay").click()  # refused again
    status = relay_row.locator(".replay-status")
    expect(status).to_contain_text("2 events queued again")
    expect(status).to_contain_text("settled: 0 delivered, 2 dead again", timeout=15_000)
    upstream.script = lambda seen: None  # the cause is fixed
    relay_row.locator("button.replay").click()
    expect(status).to_contain_text("Replay #2")
    expect(status).to_contain_text("settled: 2 delivered, 0 dead again", timeout=15_000)


def test_the_coverage_panel_shows_the_figures_of_the_events_sent(page: Page, gateway: Server) -> None:
    def event(user: dict[str, Any], dedupe: bool = True) -> dict[str, Any]:
        e = purchase(dedupe_id=f"m-{uuid.uuid4().hex}" if dedupe else None)
        e["user_data"] = {"client_ip_address": "203.0.113.7", "client_user_agent": "UA/2", "esi": "web", **user}
        if not dedupe:
            del e["dedupe_id"]
        return e

    sent = [
        *[event({"aleid": f"a{i}", "email": f"p{i}@example.com"}) for i in range(4)],
        *[event({"axwrt": "w", "email": HEX, "phone": "+16505551212"}) for _ in range(3)],
        *[event({"user_id": f"u{i}"}, dedupe=False) for i in range(3)],
        event({"ifa": "idfa-1", "idfv": "idfv-1", "client_id": "c"}),
    ]
    assert post(gateway, "px_match", *sent).status_code == 200
    assert post(gateway, "px_match", sent[0], sent[4]).status_code == 200  # two duplicates

    # The figures, computed here from what was sent.
    stored = len(sent)
    carried = {
        key: sum(1 for e in sent if e["user_data"].get(key))
        for key in ("aleid", "axwrt", "alart", "client_id", "user_id", "email", "phone", "ifa", "idfv")
    }
    carried["ip_ua"] = stored
    plain_email = sum(1 for e in sent if e["user_data"].get("email", HEX) != HEX)
    no_click = sum(1 for e in sent if not (e["user_data"].get("aleid") or e["user_data"].get("axwrt")))
    with_dedupe = sum(1 for e in sent if "dedupe_id" in e)

    logged_in(page)
    page.click("a[data-view=quality]")
    page.select_option("#q-source", "axon:px_match")
    card = page.locator('.card.quality[data-source="px_match"][data-name="purchase"]')
    expect(card.locator(".events")).to_have_text(str(stored))
    expect(card.locator(".duplicates")).to_have_text("2")
    expect(card.locator(".dedupe-share")).to_have_text(percent(with_dedupe / stored))
    for key, n in carried.items():
        row = card.locator(f'tr[data-key="{key}"]')
        expect(row.locator(".pct")).to_have_text(percent(n / stored))
        expect(row.locator(".missing")).to_have_text(str(stored - n))
    expect(card.locator('tr[data-key="email"] .hashed-here')).to_have_text(str(plain_email))
    expect(card.locator('tr[data-key="email"] .already-hashed')).to_have_text(str(carried["email"] - plain_email))
    expect(card.locator(".verdict")).to_have_text("fair" if no_click / stored < 0.5 else "poor")
    expect(card.locator('.reasons li[data-rule="axon.click_id"]')).to_contain_text(
        f"{percent(no_click / stored)} of purchase events carry no click id (aleid/axwrt)"
    )


@pytest.mark.parametrize("width", [360, 800, 1440])
def test_nothing_is_cut_from_360_px_up(browser: Browser, gateway: Server, width: int) -> None:  # noqa: F811
    assert post(gateway, "px_shop", purchase()).status_code == 200
    context = browser.new_context(base_url=gateway.url, viewport={"width": width, "height": 800})
    page = context.new_page()
    try:
        logged_in(page)
        for view in ("requests", "events", "overview", "quality", "send"):
            page.click(f"a[data-view={view}]")
            page.wait_for_timeout(300)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{view} at {width} px is {overflow} px too wide"
        page.click("a[data-view=requests]")
        expect(page.locator("#requests tr.request td.status").first).to_be_visible()
        for cell in ("td.events", "td.latency", "td.status"):
            box = page.locator(f"#requests tr.request {cell}").first.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (cell, box)
        page.click("a[data-view=events]")
        name_cell = page.locator("#events tr.event td.name").first
        expect(name_cell).to_be_visible()  # the view draws its rows once their fetch answers
        name = name_cell.bounding_box()
        assert name is not None and name["x"] + name["width"] <= width
    finally:
        context.close()


def test_screenshots_exist_at_each_width() -> None:
    docs = Path(__file__).resolve().parent.parent / "docs"
    for width in (360, 800, 1440):
        shot = docs / f"inspector-requests-{width}.png"
        assert shot.exists() and shot.stat().st_size > 10_000, f"run docs/screenshots.py: {shot.name} is missing"


@pytest.mark.timeout(600)
def test_docs_screenshots_py_takes_every_view_the_readme_shows(tmp_path: Path) -> None:
    """docs/screenshots.py, where the README's pictures come from, runs through: it drives the
    inspector as a user does, and a source option's value changed under it once unseen."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "docs/screenshots.py", str(tmp_path)], cwd=root, capture_output=True, text=True, timeout=540
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    taken = sorted(p.name for p in tmp_path.glob("inspector-*.png"))
    assert taken == sorted(p.name for p in (root / "docs").glob("inspector-*.png")), taken
