"""The relay end to end: real `capigate serve` processes relaying to a real local upstream,
or to a second capigate that plays AppLovin; kill -9 mid-stream; test mode; replay by CLI
and API; the attempts next to the event; `capigate relay` as a process of its own."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from capigate.appsflyer import format_event_time
from tests.conftest import ADMIN, EXAMPLES, Server, make_server
from tests.helpers import Load, all_pages, batch, page_view, stored_dedupe_ids, wait_until
from tests.storekit import PG_URL, pg_schema
from tests.upstream import Reply, Upstream

AF_APP = "com.example.shop"


def config(relay_url: str, *, pixel: str = "px_std", key: str = "key-std", **relay: Any) -> str:
    tuning = {"timeout_s": 1.0, "backoff_base_s": 0.05, "backoff_max_s": 0.5, "poll_interval_s": 0.2, **relay}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in tuning.items())
    return f"""
[server]
admin_token = "{ADMIN}"

[[axon.pixels]]
pixel_id = "{pixel}"
api_key = "{key}"
[axon.pixels.relay]
url = "{relay_url}"
{lines}

[[appsflyer.apps]]
app_id = "{AF_APP}"
keys = ["af-key"]
[appsflyer.apps.relay]
url = "{relay_url}"
api_key = "af-upstream-key"
{lines}
"""


PLAIN = f"""
[server]
admin_token = "{ADMIN}"

[[axon.pixels]]
pixel_id = "px_std"
api_key = "key-std"
"""


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


def post(server: Server, events: list[dict[str, Any]], **headers: str) -> httpx.Response:
    with server.client() as c:
        return c.post("/v1/event?pixel_id=px_std", json=batch(*events), headers={"Authorization": "key-std", **headers})


def outbox(server: Server) -> dict[str, dict[str, Any]]:
    with server.admin() as c:
        return {d["destination"]: d for d in c.get("/api/outbox").json()["destinations"]}


def test_capigate_relays_to_a_second_capigate_playing_applovin_with_dedupe_ids(tmp_path: Path) -> None:
    applovin = make_server(tmp_path / "applovin", PLAIN)
    applovin.start()
    gateway = make_server(tmp_path / "gateway", config(applovin.url))
    try:
        gateway.start()
        events = [page_view() for _ in range(250)]
        for start in range(0, 250, 100):
            assert post(gateway, events[start : start + 100]).status_code == 200
        sent = {e["dedupe_id"] for e in events}
        wait_until(lambda: set(stored_dedupe_ids(applovin)) == sent, what="every event at the second capigate")
        wait_until(lambda: outbox(gateway)["axon:px_std"]["delivered"] == 250, what="the outcomes recorded")

        with gateway.admin() as c:
            first = c.get("/api/events", params={"limit": 1}).json()["events"][0]
            detail = c.get(f"/api/events/{first['id']}").json()
        assert detail["status"] == "delivered" and detail["dedupe_id"] == first["dedupe_id"]
        (attempt,) = detail["attempts"]
        assert (attempt["destination"], attempt["result"], attempt["status"]) == ("axon:px_std", "delivered", 200)
        assert json.loads(attempt["response_body"])["stored"] >= 1  # the second capigate's own answer
        assert attempt["latency_ms"] > 0
    finally:
        gateway.stop()
        applovin.stop()


def test_kill_9_of_the_relaying_gateway_mid_stream_loses_no_event(tmp_path: Path) -> None:
    applovin = make_server(tmp_path / "applovin", PLAIN)
    applovin.start()
    # Small upstream batches keep the relay behind the senders, so the kill lands mid-stream.
    gateway = make_server(tmp_path / "gateway", config(applovin.url, concurrency=1, batch_size=2, timeout_s=0.5))
    try:
        gateway.start()
        with Load(gateway, senders=4) as load:
            wait_until(lambda: len(stored_dedupe_ids(applovin)) >= 200, what="the relay to be under way")
            gateway.kill9()
        acked = load.acked
        with closing(sqlite3.connect(gateway.db)) as conn:
            (backlog,) = conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
        assert backlog > 0, "the kill came after the relay had caught up: not mid-stream"

        gateway.start()
        wait_until(
            lambda: set(acked) <= set(stored_dedupe_ids(applovin)), timeout_s=40, what="every acknowledged event"
        )
        received = stored_dedupe_ids(applovin)
        assert max(received.values()) == 1  # a redelivery is recognised by its dedupe_id
        wait_until(lambda: outbox(gateway)["axon:px_std"]["pending"] == 0, what="the outcomes recorded")
    finally:
        gateway.stop()
        applovin.stop()


def test_test_mode_events_are_stored_with_their_tag_and_never_relayed(tmp_path: Path, upstream: Upstream) -> None:
    gateway = make_server(tmp_path / "gateway", config(upstream.url))
    try:
        gateway.start()
        tagged = [page_view() for _ in range(5)]
        assert post(gateway, tagged, **{"X-Capigate-Test": "smoke"}).status_code == 200
        with gateway.client() as c:
            body = json.loads((EXAMPLES / "appsflyer_purchase.json").read_text())
            r = c.post(f"/inappevent/{AF_APP}", json=body, headers={"authentication": "af-key", "X-Capigate-Test": "t"})
            assert r.status_code == 200
            assert c.post(f"/inappevent/{AF_APP}", json=body, headers={"authentication": "af-key"}).status_code == 200
        real = page_view()
        assert post(gateway, [real]).status_code == 200
        upstream.wait_for(lambda: len(upstream.requests()) == 2, what="the two real events")
        time.sleep(0.5)
        assert upstream.dedupe_ids() == [real["dedupe_id"]]
        (af,) = upstream.requests("/inappevent/")
        assert af.path == f"/inappevent/{AF_APP}" and af.headers["authentication"] == "af-upstream-key"
        assert af.json()["eventValue"] == body["eventValue"]  # a string, as AppsFlyer takes it
        with gateway.admin() as c:
            events = c.get("/api/events", params={"test_tag": "smoke"}).json()["events"]
        assert len(events) == 5 and {e["status"] for e in events} == {"stored"}
        assert len(upstream.requests()) == 2
    finally:
        gateway.stop()


def test_dead_letters_are_replayed_by_cli_and_api_once_the_upstream_is_fixed(
    tmp_path: Path, upstream: Upstream
) -> None:
    fixed = threading.Event()
    upstream.script = lambda seen: (
        None if fixed.is_set() else Reply(401, b"Unauthorized", {"content-type": "text/plain"})
    )
    gateway = make_server(tmp_path / "gateway", config(upstream.url, max_attempts=2))
    try:
        gateway.start()
        events = [page_view() for _ in range(3)]
        assert post(gateway, events).status_code == 200
        wait_until(lambda: outbox(gateway)["axon:px_std"]["dead"] == 3, what="the 401 to dead-letter the events")
        with gateway.admin() as c:
            (dead,) = c.get("/api/events", params={"status": "dead", "limit": 1}).json()["events"]
            (attempt,) = c.get(f"/api/events/{dead['id']}").json()["attempts"]
        assert (attempt["result"], attempt["status"], attempt["response_body"]) == ("dead", 401, "Unauthorized")
        assert attempt["response_headers"]["content-type"] == "text/plain"

        fixed.set()
        cli = [sys.executable, "-m", "capigate", "replay", "--config", str(gateway.config), "--db", str(gateway.db)]
        out = subprocess.run([*cli, "--status", "401"], capture_output=True, text=True, timeout=30, check=True)
        assert "re-queued 3" in out.stdout
        wait_until(lambda: outbox(gateway)["axon:px_std"]["delivered"] == 3, what="the CLI replay")
        with gateway.admin() as c:
            attempts = c.get(f"/api/events/{dead['id']}").json()["attempts"]
        assert [(a["result"], a["status"]) for a in attempts] == [("dead", 401), ("delivered", 200)]

        fixed.clear()
        more = [page_view() for _ in range(2)]
        assert post(gateway, more).status_code == 200
        wait_until(lambda: outbox(gateway)["axon:px_std"]["dead"] == 2, what="the next dead letters")
        fixed.set()
        with gateway.admin() as c:
            assert c.post("/api/replay", json={"source": "px_std", "status": 500}).json() == {"requeued": 0}
            assert c.post("/api/replay", json={"bogus": 1}).status_code == 400
            assert c.post("/api/replay", json={"since": "yesterday"}).status_code == 400
            r = c.post("/api/replay", json={"destination": "axon:px_std", "since": "2020-01-01T00:00:00Z"})
            assert r.json() == {"requeued": 2}
        with gateway.client() as c:
            assert c.post("/api/replay", json={}).status_code == 401
        wait_until(lambda: outbox(gateway)["axon:px_std"]["delivered"] == 5, what="the API replay")
        assert sorted(upstream.dedupe_ids()) == sorted(e["dedupe_id"] for e in [*events, *more])
    finally:
        gateway.stop()


def test_the_event_endpoint_answers_404_for_an_unknown_id_and_needs_the_admin_token(fresh_server: Server) -> None:
    assert post(fresh_server, [page_view()]).status_code == 200
    with fresh_server.admin() as c:
        (event,) = c.get("/api/events", params={"limit": 1}).json()["events"]
        detail = c.get(f"/api/events/{event['id']}").json()
        assert detail["attempts"] == [] and detail["status"] == "stored"  # no relay configured
        assert c.get("/api/events/999999").status_code == 404
        assert c.get("/api/events/abc").status_code == 400  # not an id: the parameter is named
    with fresh_server.client() as c:
        assert c.get(f"/api/events/{event['id']}").status_code == 401


def test_capigate_relay_runs_alone_beside_a_gateway_without_relay(tmp_path: Path, upstream: Upstream) -> None:
    gateway = make_server(tmp_path / "gateway", config(upstream.url), CAPIGATE_RELAY="0")
    relay: subprocess.Popen[str] | None = None
    try:
        gateway.start()
        events = [page_view() for _ in range(30)]
        assert post(gateway, events).status_code == 200
        time.sleep(0.5)
        assert upstream.requests() == [], "serve --no-relay relayed"
        relay = subprocess.Popen(
            [sys.executable, "-m", "capigate", "relay", "--config", str(gateway.config), "--db", str(gateway.db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        upstream.wait_for(lambda: len(upstream.dedupe_ids()) == 30, what="the relay process")
        relay.send_signal(signal.SIGTERM)
        output, _ = relay.communicate(timeout=15)
        assert relay.returncode == 0, output
        assert f"relay axon:px_std -> {upstream.url}" in output
    finally:
        if relay is not None and relay.poll() is None:
            relay.kill()
        gateway.stop()


APPSFLYER_UPSTREAM = """
[server]
admin_token = "{admin}"

[[appsflyer.apps]]
app_id = "{app}"
keys = ["af-upstream-key"]
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_appsflyer_event_without_event_time_is_relayed_dated_when_capigate_received_it(
    tmp_path: Path, backend: str
) -> None:
    """AppsFlyer dates an event without eventTime at its own arrival: a relay retried for a while
    (here the upstream is down for a few seconds) dated it that much late (a trial). The relay
    sends the time the gateway received it; the stored event stays as sent."""
    appsflyer = make_server(tmp_path / "appsflyer", APPSFLYER_UPSTREAM.format(admin=ADMIN, app=AF_APP))
    gateway = make_server(tmp_path / "gateway", config(appsflyer.url))
    body = json.loads((EXAMPLES / "appsflyer_purchase.json").read_text())
    assert "eventTime" not in body
    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            gateway.db = f"{PG_URL}?schema={stack.enter_context(pg_schema('capigate_test_af_time'))}"
        gateway.start()
        stack.callback(gateway.stop)
        with gateway.client() as c:
            assert c.post(f"/inappevent/{AF_APP}", json=body, headers={"authentication": "af-key"}).status_code == 200
        with gateway.admin() as c:
            (sent,) = c.get("/api/events", params={"source": AF_APP}).json()["events"]
        assert "eventTime" not in sent["payload"]
        wait_until(lambda: outbox(gateway)[f"appsflyer:{AF_APP}"]["pending"] == 1, what="the event queued")
        time.sleep(2.0)  # the upstream is down: the relay retries
        appsflyer.start()
        stack.callback(appsflyer.stop)
        wait_until(lambda: len(all_pages(appsflyer, "/api/events", "events")) == 1, what="the event at the upstream")
        (arrived,) = all_pages(appsflyer, "/api/events", "events")
        assert arrived["received_at"] - sent["received_at"] > 1500
        assert arrived["payload"]["eventTime"] == format_event_time(sent["received_at"])
        assert arrived["event_time"] == sent["received_at"]  # the upstream dates it so, not at its arrival
        with gateway.admin() as c:
            assert "eventTime" not in c.get(f"/api/events/{sent['id']}").json()["payload"]  # stored as sent
