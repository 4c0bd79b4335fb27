"""The inspector page in a real headless Chromium (Debian's ``chromium``, which
``scripts/test`` installs): log in, send a test event, watch it arrive, filter, read problems.

Playwright drives the system browser through ``executable_path``; ``playwright install`` is
never needed. Each test works on a gateway of this module's own, and on its own ids.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.conftest import ADMIN, DEFAULT_CONFIG, Server, make_server
from tests.helpers import batch, page_view, purchase

CHROMIUM = os.environ.get("CAPIGATE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("inspector"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@contextmanager
def checked_page(browser: Browser, base_url: str, width: int = 1400) -> Iterator[Page]:
    """A page in a context of its own; the test fails if the page's script threw."""
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"the page's script failed: {errors}"


@pytest.fixture
def page(browser: Browser, gateway: Server) -> Iterator[Page]:
    with checked_page(browser, gateway.url) as page:
        yield page


def log_in(page: Page, token: str = ADMIN) -> None:
    page.goto("/")
    page.fill("#token", token)
    page.click("button[type=submit]")


def logged_in(page: Page) -> Page:
    log_in(page)
    expect(page.locator("#tabs")).to_be_visible()
    return page


def post_axon(
    gateway: Server, body: dict[str, Any], pixel: str = "px_std", key: str = "key-std", **headers: str
) -> httpx.Response:
    with gateway.client(headers={"User-Agent": "browser-test/1.0", **headers}) as c:
        return c.post(f"/v1/event?pixel_id={pixel}", json=body, headers={"Authorization": key})


def mark_page(page: Page) -> None:
    """A value that a reload would lose: the test can tell that the page never reloaded."""
    page.evaluate("window.__notReloaded = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__notReloaded === true"), "the page reloaded"


def test_the_page_asks_for_the_admin_token_and_refuses_a_wrong_one(page: Page) -> None:
    log_in(page, "not-the-token")
    expect(page.locator(".error")).to_have_text("Wrong admin token.")
    expect(page.locator("#tabs")).to_have_count(0)
    log_in(page)
    expect(page.locator("#tabs")).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "capigate_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and ADMIN not in cookie["value"]
    page.click(".logout button")
    expect(page.locator("#token")).to_be_visible()


def test_send_a_test_event_and_see_it_arrive_live(page: Page, gateway: Server) -> None:
    logged_in(page)
    mark_page(page)
    page.click("a[data-view=send]")
    page.select_option("#send-source", "axon:px_std")
    body = page.input_value("#send-body")
    assert '"name": "purchase"' in body and "api_key" not in body and "key-std" not in page.content()
    page.click("#send-button")
    expect(page.locator("#send-status")).to_have_text("200")

    page.click("text=See it under Requests")
    row = page.locator("#requests tr.request", has=page.locator(".tag", has_text="inspector")).first
    expect(row).to_contain_text("POST /v1/event")
    expect(row).to_contain_text("capigate-inspector/")
    expect(row).to_contain_text("1 stored")

    # A request from elsewhere shows up in the open page by itself.
    agent = f"live-test/{uuid.uuid4().hex[:8]}"
    assert post_axon(gateway, batch(purchase()), **{"User-Agent": agent}).status_code == 200
    expect(page.locator("#requests tr.request", has_text=agent)).to_have_count(1, timeout=10_000)
    assert_not_reloaded(page)

    page.click("a[data-view=events]")
    first = page.locator("#events tr.event", has=page.locator(".tag", has_text="inspector")).first
    first.click()
    detail = page.locator("#events tr.detail").first
    expect(detail).to_contain_text("Stored payload")
    expect(detail).to_contain_text("The first event with this dedupe_id for test events of px_std tagged inspector")
    assert "user@example.com" not in detail.inner_text()  # the example's email, stored hashed


def test_filter_events_by_source_name_tag_time_and_delivery(page: Page, gateway: Server) -> None:
    tag = f"flt-{uuid.uuid4().hex[:8]}"
    assert (
        post_axon(gateway, batch(purchase(), page_view(), page_view()), **{"X-Capigate-Test": tag}).status_code == 200
    )
    lead = {
        "events": [
            page_view(
                user_data={
                    "client_ip_address": "203.0.113.7",
                    "client_user_agent": "x",
                    "esi": "web",
                    "client_id": "c",
                    "email": "a@example.com",
                }
            )
        ]
    }
    post_axon(gateway, lead, pixel="px_lead", key="key-lead", **{"X-Capigate-Test": tag})
    logged_in(page)
    page.click("a[data-view=events]")
    form = page.locator("#ev-filters")
    form.locator("[name=test_tag]").fill(tag)
    form.locator("button[type=submit]").click()
    rows = page.locator("#events tr.event")
    expect(rows).to_have_count(4)

    form.locator("[name=source]").select_option("axon:px_std")
    expect(rows).to_have_count(3)
    form.locator("[name=name]").fill("page_view")
    form.locator("button[type=submit]").click()
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("page_view")

    form.locator("[name=status]").select_option("dead")  # no relay here: nothing is dead
    expect(page.locator("#events .empty")).to_have_text("No events match.")
    form.locator("[name=status]").select_option("stored")
    expect(rows).to_have_count(2)

    form.locator("[name=since]").fill("2999-01-01T00:00:00")  # a window in the future
    form.locator("button[type=submit]").click()
    expect(page.locator("#events .empty")).to_be_visible()
    form.locator("[name=since]").fill("2000-01-01T00:00:00")
    form.locator("button[type=submit]").click()
    expect(rows).to_have_count(2)


def test_the_filters_are_kept_in_the_url_across_a_reload_a_shared_link_and_back_and_forward(
    page: Page, gateway: Server
) -> None:
    """The filters were lost on a reload, and a link to the page could not carry them (a
    trial): they are kept in the fragment, as a pinned request is, and restored from it."""
    tag = f"url-{uuid.uuid4().hex[:8]}"
    assert (
        post_axon(gateway, batch(purchase(), page_view(), page_view()), **{"X-Capigate-Test": tag}).status_code == 200
    )
    bad = purchase()
    del bad["data"]["transaction_id"]
    assert post_axon(gateway, batch(bad), **{"X-Capigate-Test": tag}).status_code == 400
    logged_in(page)
    page.click("a[data-view=events]")
    form = page.locator("#ev-filters")
    rows = page.locator("#events tr.event")
    form.locator("[name=test_tag]").fill(tag)
    form.locator("[name=name]").fill("page_view")
    form.locator("[name=since]").fill("2000-01-02T03:04:05")
    form.locator("button[type=submit]").click()
    expect(rows).to_have_count(2)
    expect(page).to_have_url(re.compile(rf"#events\?.*test_tag={tag}"))
    assert "name=page_view" in page.url and "since=" in page.url and "2000" not in page.url.split("#")[1]  # epoch ms

    page.reload()
    expect(page.locator("#view-events")).to_be_visible()
    expect(form.locator("[name=test_tag]")).to_have_value(tag)
    expect(form.locator("[name=name]")).to_have_value("page_view")
    expect(form.locator("[name=since]")).to_have_value("2000-01-02T03:04:05")
    expect(rows).to_have_count(2)

    form.locator("[name=name]").fill("")
    form.locator("button[type=submit]").click()
    expect(rows).to_have_count(3)
    page.go_back()
    expect(form.locator("[name=name]")).to_have_value("page_view")
    expect(rows).to_have_count(2)
    page.go_forward()
    expect(form.locator("[name=name]")).to_have_value("")
    expect(rows).to_have_count(3)

    # The requests' filters too; each tab keeps its own, and a shared link opens on them.
    page.click("a[data-view=requests]")
    requests = page.locator("#requests tr.request")
    rq = page.locator("#rq-filters")
    rq.locator("[name=test_tag]").fill(tag)
    rq.locator("[name=status]").fill("4xx")
    rq.locator("button[type=submit]").click()
    expect(requests).to_have_count(1)
    expect(requests.locator(".badge").first).to_have_text("400")
    shared = page.url
    page.click("a[data-view=events]")
    expect(form.locator("[name=test_tag]")).to_have_value(tag)
    expect(rows).to_have_count(3)
    other = page.context.new_page()
    other.goto(shared)
    expect(other.locator("#rq-filters [name=status]")).to_have_value("4xx")
    expect(other.locator("#rq-filters [name=test_tag]")).to_have_value(tag)
    expect(other.locator("#requests tr.request")).to_have_count(1)
    other.close()


def test_a_filter_in_the_address_that_the_list_cannot_take_is_shown_as_a_filter_problem(
    page: Page, gateway: Server
) -> None:
    """A trial opened /#events?since=yesterday (and ?limit=5000, ?bogus=1): the Events view
    asked for /api/events?limit=50 and showed the unfiltered list without a word, where
    /#requests?status=abc shows the filter problems. Both lists show them alike now."""
    assert post_axon(gateway, batch(page_view())).status_code == 200
    logged_in(page)
    box = page.locator("#events .problems.error")
    for fragment, path, said in (
        ("since=yesterday", "query.since", "epoch milliseconds"),
        ("limit=5000", "query.limit", "not a filter of this list"),
        ("bogus=1", "query.bogus", "not a filter of this list"),
        ("status=lost", "query.status", "stored, pending, delivered, dead"),
    ):
        page.goto(f"/#events?{fragment}")
        expect(box.locator("h4")).to_have_text("Filter problems (1)")
        expect(box).to_contain_text(path)
        expect(box).to_contain_text(said)
        expect(page.locator("#events tr.event")).to_have_count(0)
        expect(page.locator("#ev-more")).to_be_hidden()
    page.goto("/#requests?since=yesterday")  # the requests' list alike
    expect(page.locator("#requests .problems.error")).to_contain_text("query.since")
    page.goto("/#events")  # the list comes back once the address is right
    expect(box).to_have_count(0)
    expect(page.locator("#events tr.event").first).to_be_visible()


def test_the_event_time_column_shows_the_full_date_with_its_year(browser: Browser, gateway: Server) -> None:
    last_year = datetime.now(UTC).replace(microsecond=456_000) - timedelta(days=400)
    tag = f"year-{uuid.uuid4().hex[:8]}"
    sent = post_axon(
        gateway, batch(page_view(event_time=int(last_year.timestamp() * 1000))), **{"X-Capigate-Test": tag}
    )
    assert sent.status_code == 200, sent.text  # stored, with a warning: more than a year away
    context = browser.new_context(base_url=gateway.url, viewport={"width": 1400, "height": 900}, timezone_id="UTC")
    try:
        page = logged_in(context.new_page())
        page.click("a[data-view=events]")
        page.locator("#ev-filters [name=test_tag]").fill(tag)
        page.locator("#ev-filters button[type=submit]").click()
        row = page.locator("#events tr.event")
        expect(row).to_have_count(1)
        expect(row.locator("td.evtime")).to_have_text(last_year.strftime("%Y-%m-%d %H:%M:%S.456"))
        expect(row.locator("td.time").first).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))  # today's
    finally:
        context.close()


def test_a_refused_request_opens_to_its_problems(page: Page, gateway: Server) -> None:
    agent = f"refused/{uuid.uuid4().hex[:8]}"
    bad = purchase()
    del bad["data"]["transaction_id"]
    bad["user_data"]["esi"] = "tv"
    assert post_axon(gateway, batch(bad), **{"User-Agent": agent}).status_code == 400
    logged_in(page)
    row = page.locator("#requests tr.request", has_text=agent)
    expect(row).to_have_class(re.compile(r"\bfailed\b"))
    expect(row.locator(".badge")).to_have_text("400")
    expect(row).to_contain_text("1 refused")
    row.click()
    problems = page.locator("#requests tr.detail .problems.error")
    expect(problems.locator("h4")).to_have_text("Problems (2)")
    expect(problems).to_contain_text("events[0].data.transaction_id")
    expect(problems).to_contain_text("missing_field")
    expect(problems).to_contain_text("`transaction_id` is required")
    expect(problems).to_contain_text("events[0].user_data.esi")
    expect(problems).to_contain_text("invalid_enum")
    row.click()  # closes again
    expect(page.locator("#requests tr.detail")).to_have_count(0)


def test_the_silent_appsflyer_failure_stands_out(page: Page, gateway: Server) -> None:
    agent = f"silent/{uuid.uuid4().hex[:8]}"
    with gateway.client(headers={"User-Agent": agent}) as c:
        answer = c.post(
            "/inappevent/123456789",
            headers={"authentication": "af-ios-key"},
            json={"appsflyer_id": "1415211453000-6513711", "eventName": "af_purchase", "eventValue": ""},
        )
    assert answer.status_code == 200 and answer.text == "OK"
    logged_in(page)
    row = page.locator("#requests tr.request", has_text=agent)
    expect(row).to_have_class(re.compile(r"\bsilent\b"))
    expect(row.locator(".silent-label")).to_have_text("dropped silently")
    color = row.evaluate("el => getComputedStyle(el).backgroundColor")
    plain = page.locator("#requests tr.request:not(.silent):not(.failed)").first
    assert color != plain.evaluate("el => getComputedStyle(el).backgroundColor")
    row.click()
    detail = page.locator("#requests tr.detail")
    expect(detail.locator(".silent-note")).to_contain_text("drops the event without a word")
    expect(detail.locator(".problems.warning")).to_contain_text("ios_app_id_without_prefix")
    expect(detail.locator(".kept h4")).to_contain_text("Body as dropped")
    expect(detail.locator(".kept")).to_contain_text("af_purchase")
    page.click("a[data-view=overview]")
    card = page.locator(".card[data-source=id123456789]")  # not among the unknown sources
    expect(card.locator("figure.chart").first).to_contain_text("refused or dropped")


def test_the_overview_charts_each_source(page: Page, gateway: Server) -> None:
    post_axon(gateway, batch(purchase()))
    logged_in(page)
    page.click("a[data-view=overview]")
    card = page.locator(".card[data-source=px_std]")
    expect(card.locator("figure.chart")).to_have_count(4)
    expect(card.locator("figure.chart").first).to_contain_text("accepted")
    assert card.locator("rect.accepted").count() >= 1
    expect(page.locator(".card.idle[data-source='com.example.orders']")).to_contain_text("No requests in this window.")
    expect(page.locator("#relay")).to_contain_text("Relay")


def test_the_overview_names_ingest_calls_without_their_id_and_keeps_other_requests_apart(
    page: Page, gateway: Server
) -> None:
    with gateway.client() as c:
        assert c.post("/v1/event", json=batch(purchase()), headers={"Authorization": "key-std"}).status_code == 400
        assert c.post("/inappevent/", json={}, headers={"authentication": "af-dev-key"}).status_code in (400, 401)
        assert c.post("/login", data={"token": "not-the-token"}).status_code == 401
        assert c.get("/wp-login.php").status_code == 404
    logged_in(page)
    page.click("a[data-view=overview]")
    axon = page.locator(".card[data-source='(no single pixel_id)']")
    expect(axon.locator(".kind")).to_have_text(_NO_SINGLE_PIXEL)
    expect(axon.locator(".totals")).to_contain_text("failed")
    expect(page.locator(".card[data-source='(no app_id)'] .kind")).to_have_text("AppsFlyer calls without an app id")
    other = page.locator(".card.other-requests")
    expect(other).to_contain_text("requests to no ingest API (logins, unknown paths)")
    assert int(other.locator(".totals b").first.inner_text()) >= 2  # the login, the unknown path
    expect(page.locator(".card[data-source='(no source)']")).to_have_count(0)


_NO_SINGLE_PIXEL = "Axon calls whose pixel_id was missing or given more than once"


def test_the_overview_does_not_count_a_repeated_pixel_id_as_a_missing_one(page: Page, gateway: Server) -> None:
    """A trial: `POST /v1/event?pixel_id=px_demo&pixel_id=px_other` (refused, repeated_pixel_id:
    the journal keeps no source, since which was meant is not for the gateway to guess) was
    counted on the card "(no pixel_id)", "Axon calls without a pixel_id". The card says both
    ways an Axon call names no single pixel."""
    with gateway.client() as c:
        answer = c.post(
            "/v1/event?pixel_id=px_std&pixel_id=px_other", json=batch(purchase()), headers={"Authorization": "key-std"}
        )
        assert answer.status_code == 400 and answer.json()["error"] == "repeated_pixel_id", answer.text
    logged_in(page)
    page.click("a[data-view=overview]")
    card = page.locator(".card[data-source='(no single pixel_id)']")
    expect(card.locator("h3")).to_have_text("(no single pixel_id)")
    expect(card.locator(".kind")).to_have_text(_NO_SINGLE_PIXEL)
    expect(card.locator(".totals")).to_contain_text("failed")  # the module's gateway has others
    expect(page.locator(".card", has_text="without a pixel_id")).to_have_count(0)


def test_the_overview_counts_one_request_in_the_singular(browser: Browser, tmp_path: Path) -> None:
    """A trial: the Overview said "(no pixel_id) 1 requests", and a card's charts "1 warnings";
    each card, row and chart says its count with the word that agrees with it."""
    gateway = make_server(tmp_path / "one", DEFAULT_CONFIG)
    gateway.start()
    twice = purchase()
    try:
        for body in (batch(twice), batch(twice), batch(purchase(unheard_of=1))):
            answer = post_axon(gateway, body)
            assert answer.status_code == 200, answer.text
        assert [w["code"] for w in answer.json()["warnings"]] == ["unknown_field"], answer.text
        with gateway.client() as c:
            assert c.post("/v1/event", json=batch(purchase()), headers={"Authorization": "key-std"}).status_code == 400
            assert (
                c.post("/v1/event?pixel_id=px_nope", json=batch(purchase()), headers={"Authorization": "k"}).status_code
                == 401
            )
            assert c.get("/wp-login.php").status_code == 404
        with checked_page(browser, gateway.url) as page:
            logged_in(page)
            page.click("a[data-view=overview]")
            expect(page.locator(".card[data-source='(no single pixel_id)'] .totals")).to_have_text(
                "1 request, 1 failed"
            )
            unknown = page.locator(".card.unknown-sources .totals")
            expect(unknown).to_have_text("1 request from 1 unknown id; top ids: px_nope (1)")
            other = page.locator(".card.other-requests .totals").inner_text()
            count, word = re.match(r"(\d+) (\w+) to no ingest API", other).groups()  # type: ignore[union-attr]
            assert word == ("request" if count == "1" else "requests"), other
            std = page.locator(".card[data-source='px_std'] figure.chart")
            expect(std.filter(has_text="Duplicates").locator(".total")).to_have_text("1 duplicate")
            expect(std.filter(has_text="Warnings").locator(".total")).to_have_text("1 warning")
    finally:
        gateway.stop()


SHARED_ID_CONFIG = (
    DEFAULT_CONFIG
    + """
[[axon.pixels]]
pixel_id = "shared-1"
api_key = "key-shared"
profile = "standard"

[[appsflyer.apps]]
app_id = "shared-1"
keys = ["af-shared-key"]
"""
)


def test_source_ids_are_shown_with_their_control_characters_escaped_as_the_logs_write_them(
    browser: Browser, tmp_path: Path
) -> None:
    """A trial: /v1/event?pixel_id=px%00demo was listed among the unknown sources as px▯demo,
    and /inappevent/%20com.example.shop as com.example.shop, its leading space unseen, so the
    configured app looked unknown. The inspector writes them as the logs do (logs.escape_control,
    quoted with a space): px\\x00demo, " com.example.shop"."""
    from capigate.logs import _CONTROLS, escape_control

    gateway = make_server(tmp_path / "ids", DEFAULT_CONFIG)
    gateway.start()
    try:
        with gateway.client() as c:
            assert (
                c.post(
                    "/v1/event?pixel_id=px%00demo", json=batch(purchase()), headers={"Authorization": "k"}
                ).status_code
                == 401
            )
            assert c.post(
                "/inappevent/%20com.example.shop", json={}, headers={"authentication": "af-dev-key"}
            ).status_code in (400, 401)
        with checked_page(browser, gateway.url) as page:
            logged_in(page)
            sources = page.locator("#requests tr.request td.source")
            expect(sources.filter(has_text="com.example.shop")).to_have_text(['" com.example.shop"'])
            expect(sources.filter(has_text="demo")).to_have_text(["px\\x00demo"])
            page.click("a[data-view=overview]")
            unknown = page.locator(".card.unknown-sources .totals")
            expect(unknown).to_contain_text('" com.example.shop" (1)')
            expect(unknown).to_contain_text("px\\x00demo (1)")
            every = "".join(chr(c) for c in _CONTROLS)
            for text in (every, "a\tb\nc\rd", "שלום\u200d", "px_std", "a\\x00"):
                assert page.evaluate("shownId", text) == escape_control(text), repr(text)
    finally:
        gateway.stop()


def test_a_pixel_and_an_app_with_one_id_have_a_card_each(browser: Browser, tmp_path: Path) -> None:
    """An Axon pixel and an AppsFlyer app configured with the same id shared one card, their
    requests summed on it (a trial): each has its own, with its own totals."""
    gateway = make_server(tmp_path / "shared", SHARED_ID_CONFIG)
    gateway.start()
    try:
        assert post_axon(gateway, batch(purchase()), pixel="shared-1", key="key-shared").status_code == 200
        af_event = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_purchase", "eventValue": ""}
        with gateway.client(headers={"authentication": "wrong"}) as c:
            for _ in range(2):  # refused: no such key
                assert c.post("/inappevent/shared-1", json=af_event).status_code == 401
        with checked_page(browser, gateway.url) as page:
            logged_in(page)
            page.click("a[data-view=overview]")
            expect(page.locator(".card[data-source='shared-1']")).to_have_count(2)
            axon = page.locator(".card[data-source='shared-1'][data-api=axon]")
            appsflyer = page.locator(".card[data-source='shared-1'][data-api=appsflyer]")
            expect(axon.locator(".kind")).to_have_text("Axon · standard")
            expect(appsflyer.locator(".kind")).to_have_text("AppsFlyer")
            expect(axon.locator(".totals")).to_have_text("1 request, 0 failed")
            expect(appsflyer.locator(".totals")).to_have_text("2 requests, 2 failed")
            expect(page.locator(".card.unknown-sources")).to_have_count(0)
    finally:
        gateway.stop()


def test_a_pixel_and_an_app_with_one_id_are_told_apart_in_every_source_choice(browser: Browser, tmp_path: Path) -> None:
    """The source lists of Requests, Events and Quality showed `shared-1` twice, alike, and
    either choice listed both APIs' events (a trial): each option says its API, and filters by it."""
    gateway = make_server(tmp_path / "shared", SHARED_ID_CONFIG)
    gateway.start()
    try:
        assert post_axon(gateway, batch(purchase()), pixel="shared-1", key="key-shared").status_code == 200
        af_event = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_purchase", "eventValue": "", "os": "17.4"}
        with gateway.client(headers={"authentication": "af-shared-key"}) as c:
            assert c.post("/inappevent/shared-1", json=af_event).status_code == 200
        with checked_page(browser, gateway.url) as page:
            logged_in(page)
            labels = ["shared-1 (Axon pixel, standard)", "shared-1 (AppsFlyer app)"]
            for select in ("#rq-source", "#ev-filters [name=source]", "#q-source", "#send-source"):
                # The lists fill once the sources load after the login: wait for them.
                expect(page.locator(f"{select} option").filter(has_text=re.compile("^shared-1"))).to_have_text(labels)

            page.click("a[data-view=events]")
            form = page.locator("#ev-filters")
            rows = page.locator("#events tr.event")
            expect(rows).to_have_count(2)
            form.locator("[name=source]").select_option(label=labels[1])
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("af_purchase")
            expect(page).to_have_url(re.compile(r"#events\?.*api=appsflyer"))
            page.reload()  # the fragment keeps the choice: the app's, not the pixel's of that id
            expect(form.locator("[name=source]")).to_have_value("appsflyer:shared-1")
            expect(rows).to_have_count(1)
            form.locator("[name=source]").select_option(label=labels[0])
            expect(rows).to_have_count(1)
            expect(rows.first).to_contain_text("purchase")
            expect(rows.first).not_to_contain_text("af_purchase")

            page.click("a[data-view=requests]")
            requests = page.locator("#requests tr.request")
            page.locator("#rq-source").select_option(label=labels[1])
            expect(requests).to_have_count(1)
            expect(requests.first).to_contain_text("/inappevent/shared-1")
            page.locator("#rq-source").select_option(label=labels[0])
            expect(requests).to_have_count(1)
            expect(requests.first).to_contain_text("/v1/event")

            page.click("a[data-view=quality]")
            cards = page.locator(".card.quality")
            expect(cards).to_have_count(2)
            page.locator("#q-source").select_option(label=labels[0])
            expect(cards).to_have_count(1)
            expect(cards.first).to_have_attribute("data-api", "axon")
            expect(cards.first).to_have_attribute("data-name", "purchase")

            # The send form sends to the app chosen, with the app's example, not to the pixel.
            page.click("a[data-view=send]")
            page.locator("#send-source").select_option(label=labels[1])
            assert '"eventName"' in page.input_value("#send-body")
            page.click("#send-button")
            expect(page.locator("#send-status")).to_have_text("200")
        with gateway.admin() as c:
            found = c.get("/api/events", params={"source": "shared-1", "api": "appsflyer"}).json()["events"]
        assert len(found) == 2 and {e["api"] for e in found} == {"appsflyer"}
    finally:
        gateway.stop()


def test_the_api_reads_need_the_session(page: Page, gateway: Server) -> None:
    page.goto("/api/requests")
    assert "unauthorized" in page.content()
    logged_in(page)
    page.goto("/api/requests?limit=1")
    assert '"requests"' in page.content()
