"""Take the README's screenshots of the inspector: ``.venv/bin/python docs/screenshots.py [DIR]``
(DIR: docs/, unless given; tests/test_inspector_browser_match.py runs it into a directory of its own).

Starts a real ``capigate serve`` on a fresh store, with a local stand-in upstream (Axon
accepts, AppsFlyer refuses, so dead letters appear), sends it a realistic mix of requests
(good, refused, duplicate, the silent AppsFlyer failure, test events), adds an hour of
per-minute totals so the charts have a history, then drives Debian's chromium through
Playwright and writes ``docs/inspector-*.png``: each view at 1440 px, and a refused purchase
found by its transaction id at 360, 800 and 1440 px (``inspector-requests-<width>.png``).
"""

from __future__ import annotations

import http.server
import json
import math
import random
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port, make_server  # noqa: E402
from tests.helpers import purchase  # noqa: E402
from tests.test_inspector_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

ADMIN = "demo-admin-token"
REFUSED_ORDER = "order-20931"
MINUTE = 60_000


class Upstream(http.server.BaseHTTPRequestHandler):
    """Axon says 200; AppsFlyer says 400 (as to an event it will not take): dead letters."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        status, body = (400, b"Bad request") if self.path.startswith("/inappevent/") else (200, b"{}")
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def config(upstream: str) -> str:
    return f"""
[server]
admin_token = "{ADMIN}"

[[axon.pixels]]
pixel_id = "px_shop"
api_key = "key-shop"
profile = "standard"
relay = {{ url = "{upstream}", api_key = "upstream-axon-key" }}

[[axon.pixels]]
pixel_id = "px_leads"
api_key = "key-leads"
profile = "lead_gen"

[[appsflyer.apps]]
app_id = "com.example.shop"
keys = ["af-key"]
relay = {{ url = "{upstream}", api_key = "upstream-af-key" }}

[[appsflyer.apps]]
app_id = "id123456789"
keys = ["af-ios-key"]
"""


def traffic(url: str) -> None:
    shop = httpx.Client(base_url=url, headers={"User-Agent": "shop-backend/2.3 (python-requests)"})
    app = httpx.Client(base_url=url, headers={"User-Agent": "okhttp/4.12.0"})
    ios = httpx.Client(base_url=url, headers={"User-Agent": "ios-backend/1.4"})
    axon = {"Authorization": "key-shop"}
    for _ in range(6):
        shop.post("/v1/event?pixel_id=px_shop", json={"events": [purchase(), purchase()]}, headers=axon)
        time.sleep(0.05)
    twice = purchase()
    shop.post("/v1/event?pixel_id=px_shop", json={"events": [twice]}, headers=axon)
    shop.post("/v1/event?pixel_id=px_shop", json={"events": [twice, purchase()]}, headers=axon)  # a duplicate
    af_event = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_purchase", "eventCurrency": "USD",
                "eventValue": json.dumps({"af_revenue": "6", "af_content_id": "15854"})}  # fmt: skip
    for _ in range(3):
        app.post("/inappevent/com.example.shop", json=af_event, headers={"authentication": "af-key"})
    bad = purchase()
    bad["data"]["transaction_id"] = REFUSED_ORDER
    bad["user_data"]["esi"] = "tv"
    bad["data"]["currency"] = "usd"
    shop.post("/v1/event?pixel_id=px_shop", json={"events": [purchase(), bad]}, headers=axon)
    for i in range(8):  # purchases with fewer match keys: the quality view has something to say
        thin = purchase()
        for key in ("aleid", "axwrt", "email", "phone") if i % 2 else ("axwrt",):
            thin["user_data"].pop(key, None)
        shop.post("/v1/event?pixel_id=px_shop", json={"events": [thin]}, headers=axon)
    leads = {"events": [{"name": "generate_lead", "event_time": int(time.time() * 1000),
             "event_source_url": "https://forms.example.com/quote", "dedupe_id": uuid.uuid4().hex,
             "user_data": {"client_ip_address": "203.0.113.9", "client_user_agent": "Mozilla/5.0",
                           "email": "lead@example.com", "esi": "web"}, "data": {"currency": "USD", "value": 12}}]}  # fmt: skip
    httpx.post(f"{url}/v1/event?pixel_id=px_leads", json=leads, headers={"Authorization": "key-leads"})
    ios.post("/inappevent/123456789", json=af_event, headers={"authentication": "af-ios-key"})  # the silent failure
    shop.post("/v1/event?pixel_id=px_shop", json={"events": [purchase()]}, headers=axon)


def history(db: Path, now_ms: int) -> None:
    """An hour of per-minute totals before now, as the journal would have kept them."""
    rng = random.Random(3)
    this_minute = now_ms - now_ms % MINUTE
    rows = []
    for i in range(60, 0, -1):
        minute = this_minute - i * MINUTE
        wave = 1.0 + 0.6 * math.sin(i / 9)
        n = int(48 * wave + rng.randrange(10))
        failed = rng.choice([0, 0, 0, 1, 2]) + (6 if 22 <= i <= 25 else 0)  # a bad deploy, fixed
        dup = rng.choice([0, 0, 1, 1, 2, 4])
        rows.append((minute, "px_shop", "axon", n, failed, n * 2, n * 2 - failed * 2 - dup, dup, n // 8))
        m = int(18 * wave + rng.randrange(6))
        rows.append((minute, "com.example.shop", "appsflyer", m, rng.choice([0, 0, 1]), m, m - 1, 0, rng.randrange(3)))
        if i % 3 == 0:
            rows.append((minute, "px_leads", "axon", 3, 0, 3, 3, 0, 1))
    conn = sqlite3.connect(db, timeout=10)
    conn.executemany("INSERT OR REPLACE INTO request_minutes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


def log_in(page: Page) -> None:
    page.goto("/#requests")
    page.reload()
    if page.locator("#token").count():
        page.fill("#token", ADMIN)
        page.click("button[type=submit]")
    page.wait_for_selector("#requests tr.request")


def refused_purchase(page: Page, out: Path, width: int) -> None:
    """The refused purchase, found by its transaction id, its body beside its problems."""
    page.set_viewport_size({"width": width, "height": 900 if width > 360 else 1600})
    log_in(page)
    page.fill("#rq-transaction", REFUSED_ORDER)
    page.click("#rq-filters button[type=submit]")
    # a locator, not wait_for_function: that evals its string in the page, which the inspector's CSP refuses
    expect(page.locator("#requests tr.request")).to_have_count(1)
    page.locator("#requests tr.request").first.click()
    page.wait_for_selector("#requests pre.json.body .hl-error")
    page.locator("#requests pre.json.body .hl-error").first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / f"inspector-requests-{width}.png"), full_page=width == 360)


def shoot(page: Page, out: Path) -> None:
    for width in (360, 800, 1440):
        refused_purchase(page, out, width)
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page)

    page.click("a[data-view=events]")
    page.locator("#events tr.event", has_text="com.example.shop").first.click()
    page.wait_for_selector("#events .attempt-table")
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "inspector-events.png"))

    page.click("a[data-view=overview]")
    page.wait_for_selector(".card .chart")
    page.click('#relay tr[data-destination="appsflyer:com.example.shop"] button.replay')
    page.wait_for_selector("#relay .replay-status")
    page.wait_for_timeout(2500)
    page.screenshot(path=str(out / "inspector-overview.png"), full_page=True)

    page.click("a[data-view=quality]")
    page.wait_for_selector(".card.quality")
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "inspector-quality.png"), full_page=True)

    page.click("a[data-view=send]")
    page.select_option("#send-source", "axon:px_shop")  # an option is "<api>:<id>"
    page.click("#send-button")
    page.wait_for_selector("#send-status")
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "inspector-send.png"))


def main(out: Path = ROOT / "docs") -> None:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        server = make_server(Path(tmp), config(f"http://127.0.0.1:{upstream.server_port}"))
        server.start()
        try:
            traffic(server.url)
            history(server.db, int(time.time() * 1000))
            time.sleep(3)  # the relay delivers to Axon, and AppsFlyer's refusals become dead letters
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 900}).new_page()
                shoot(page, out)
                browser.close()
        finally:
            server.stop()
            upstream.shutdown()
    print("wrote", ", ".join(sorted(str(p) for p in out.glob("inspector-*.png"))))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")
