"""GET /api/events and /api/requests: the journal and the stored events, for developers."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from capigate.gateway import ROUTES
from tests.conftest import ADMIN, DEFAULT_CONFIG, Server, example, make_server, served_on
from tests.helpers import batch, page_view, purchase
from tests.test_cli_gateway import capigate


def post(server: Server, *events: dict[str, object], key: str = "key-std") -> httpx.Response:
    with server.client(headers={"User-Agent": "query-test/1.0"}) as c:
        return c.post("/v1/event?pixel_id=px_std", json=batch(*events), headers={"Authorization": key})


def wait_for_requests(server: Server, count: int, **params: Any) -> list[dict[str, object]]:
    deadline = time.monotonic() + 5
    while True:
        with server.admin() as c:
            rows: list[dict[str, object]] = c.get("/api/requests", params={"limit": 1000, **params}).json()["requests"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_query_api_requires_the_admin_token(server: Server) -> None:
    with server.client() as c:
        assert c.get("/api/events").status_code == 401
        assert c.get("/api/requests", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/events", headers={"Authorization": "key-std"}).status_code == 401


def test_event_carries_id_api_source_name_times_dedupe_id_and_payload(fresh_server: Server) -> None:
    event = purchase()
    before = int(time.time() * 1000)
    assert post(fresh_server, event).status_code == 200
    with fresh_server.admin() as c:
        page = c.get("/api/events").json()
    assert page["next"] is None
    [row] = page["events"]
    assert row["api"] == "axon" and row["source"] == "px_std" and row["name"] == "purchase"
    assert row["event_time"] == event["event_time"] and row["dedupe_id"] == event["dedupe_id"]
    assert row["received_at"] >= before and isinstance(row["id"], int)
    assert row["payload"]["data"]["transaction_id"] == event["data"]["transaction_id"]


def test_events_filter_by_source_name_and_time(fresh_server: Server) -> None:
    post(fresh_server, purchase(), page_view(), page_view())
    t_mid = int(time.time() * 1000) + 1
    time.sleep(0.01)
    post(fresh_server, purchase())
    with fresh_server.admin() as c:

        def count(**params: Any) -> int:
            return len(c.get("/api/events", params={"limit": 1000, **params}).json()["events"])

        assert count() == 4
        assert count(name="purchase") == 2
        assert count(name="page_view") == 3 - 1
        assert count(source="px_std") == 4
        assert count(source="px_other") == 0
        assert count(since=t_mid) == 1
        assert count(until=t_mid) == 3
        assert count(status="stored") == 4


# An Axon pixel of the same id as the AppsFlyer app id123456789 of DEFAULT_CONFIG.
SHARED_ID_CONFIG = (
    DEFAULT_CONFIG
    + """
[[axon.pixels]]
pixel_id = "id123456789"
api_key = "key-shared"
profile = "standard"
"""
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_events_filter_by_api_when_a_pixel_and_an_app_share_an_id(backend: str, tmp_path: Path) -> None:
    """A pixel and an app of one id: ``source`` alone mixed their events, and ``api`` was
    refused as no parameter of /api/events (a trial)."""
    with served_on(backend, tmp_path, "capigate_api_filter", SHARED_ID_CONFIG) as (server, _):
        with server.client() as c:
            axon = c.post(
                "/v1/event?pixel_id=id123456789", json=batch(purchase()), headers={"Authorization": "key-shared"}
            )
        assert axon.status_code == 200, axon.text
        af_event = {"appsflyer_id": "1234567890123-1234567", "eventName": "af_purchase", "eventValue": "", "os": "17.4"}
        with server.client(headers={"authentication": "af-ios-key"}) as c:
            assert c.post("/inappevent/id123456789", json=af_event).status_code == 200
        with server.admin() as c:

            def names(**params: str) -> list[tuple[str, str]]:
                r = c.get("/api/events", params={"source": "id123456789", **params})
                assert r.status_code == 200, r.text
                return [(e["api"], e["name"]) for e in r.json()["events"]]

            assert names() == [("appsflyer", "af_purchase"), ("axon", "purchase")]
            assert names(api="axon") == [("axon", "purchase")]
            assert names(api="appsflyer") == [("appsflyer", "af_purchase")]
            everywhere = c.get("/api/events", params={"api": "appsflyer"}).json()["events"]
            assert [(e["api"], e["source"]) for e in everywhere] == [("appsflyer", "id123456789")]
            refused = c.get("/api/events", params={"api": "admin"})
            assert refused.status_code == 400
            assert "axon, appsflyer" in refused.json()["problems"][0]["message"]
        # `capigate events --api` lists that API's events (it was for --requests only).
        listed = capigate(
            "events", "--url", server.url, "--token", ADMIN, "--source", "id123456789", "--api", "axon", "--json"
        )
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["api"] for line in listed.stdout.splitlines()] == ["axon"]


def test_events_pages_follow_the_cursor_without_gaps_or_repeats(fresh_server: Server) -> None:
    post(fresh_server, *[page_view() for _ in range(25)])
    seen: list[int] = []
    cursor = None
    with fresh_server.admin() as c:
        while True:
            params: dict[str, Any] = {"limit": 7}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/api/events", params=params).json()
            seen += [e["id"] for e in page["events"]]
            cursor = page["next"]
            if cursor is None:
                break
    assert len(seen) == 25 and len(set(seen)) == 25
    assert seen == sorted(seen, reverse=True)


def test_bad_query_parameters_are_400_with_paths(server: Server) -> None:
    with server.admin() as c:
        r = c.get("/api/events", params={"limit": "0", "since": "last tuesday", "cursor": "!!"})
    assert r.status_code == 400
    found = {p["path"] for p in r.json()["problems"]}
    assert found == {"query.limit", "query.since", "query.cursor"}


def test_journal_records_accepted_and_refused_requests(fresh_server: Server) -> None:
    post(fresh_server, page_view(), page_view())
    bad = page_view()
    bad["user_data"] = {}
    post(fresh_server, bad)
    post(fresh_server, page_view(), key="wrong")
    rows = wait_for_requests(fresh_server, 3)
    assert [r["status"] for r in rows] == [401, 400, 200]
    ok = rows[2]
    assert ok["api"] == "axon" and ok["source"] == "px_std" and ok["path"] == "/v1/event"
    assert ok["events_received"] == 2 and ok["events_stored"] == 2 and ok["events_duplicate"] == 0
    assert ok["client_ip"] == "127.0.0.1" and ok["user_agent"] == "query-test/1.0"
    assert isinstance(ok["latency_ms"], float) and ok["latency_ms"] > 0
    refused = rows[1]
    assert refused["problems"] and refused["problems"][0]["path"].startswith("events[0].user_data")  # type: ignore[index]


def test_journal_records_an_ipv6_client_without_its_port(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.host = "::1"
    server.start()
    try:
        assert post(server, page_view()).status_code == 200
        [row] = wait_for_requests(server, 1)
    finally:
        server.stop()
    assert row["client_ip"] == "::1"


def test_journal_filters_by_status_and_source(fresh_server: Server) -> None:
    post(fresh_server, page_view())
    post(fresh_server, page_view(), key="wrong")
    wait_for_requests(fresh_server, 2)
    with fresh_server.admin() as c:
        assert [r["status"] for r in c.get("/api/requests", params={"status": 401}).json()["requests"]] == [401]
        assert len(c.get("/api/requests", params={"source": "px_std"}).json()["requests"]) == 2
        assert c.get("/api/requests", params={"source": "nope"}).json()["requests"] == []


def test_journal_records_unknown_paths(fresh_server: Server) -> None:
    with fresh_server.client() as c:
        c.post("/v1/events", json={})
    rows = wait_for_requests(fresh_server, 1)
    assert rows[0]["status"] == 404 and rows[0]["path"] == "/v1/events"


def test_openapi_describes_the_api_and_its_error_shape(server: Server) -> None:
    with server.client() as c:
        doc = c.get("/openapi.json").json()
    assert {"/v1/event", "/inappevent/{app_id}", "/api/events", "/api/requests"} <= set(doc["paths"])
    assert "problems" in doc["components"]["schemas"]["ErrorBody"]["properties"]
    assert doc["paths"]["/v1/event"]["post"]["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


def test_rule_openapi_every_route_of_the_route_list_is_in_the_document(server: Server) -> None:
    with server.client() as c:
        paths = c.get("/openapi.json").json()["paths"]
    missing = [f"{r.method} {r.path}" for r in ROUTES if r.method.lower() not in paths.get(r.path, {})]
    assert missing == []
    for path in ("/api/sources", "/api/stats", "/api/test-event", "/metrics", "/login"):
        assert not next(iter(paths[path].values()))["summary"].startswith(("GET ", "POST ")), path
    assert {p["name"] for p in paths["/api/stats"]["get"]["parameters"]} == {"source", "since", "until", "bucket"}
    requests = {p["name"] for p in paths["/api/requests"]["get"]["parameters"]}
    assert {"client_ip", "test_tag", "name", "dedupe_id", "transaction_id", "api", "status"} <= requests


def test_healthz_and_readyz(server: Server) -> None:
    with server.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200


def forwarded(server: Server, chain: str) -> None:
    with server.client() as c:
        r = c.post(
            "/v1/event?pixel_id=px_std",
            json=batch(page_view()),
            headers={"Authorization": "key-std", "X-Forwarded-For": chain},
        )
    assert r.status_code == 200


def test_journal_takes_the_client_ip_from_trusted_proxies_only(tmp_path: Path) -> None:
    config = DEFAULT_CONFIG.replace("[server]\n", '[server]\ntrusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]\n')
    srv = make_server(tmp_path / "gw", config)
    srv.start()
    try:
        forwarded(srv, "198.51.100.7")
        forwarded(srv, "203.0.113.1, 198.51.100.8, 10.1.2.3")  # a client wrote the first hop itself
        forwarded(srv, "not-an-ip")
        rows = wait_for_requests(srv, 3)
    finally:
        srv.stop()
    assert [r["client_ip"] for r in rows] == ["127.0.0.1", "198.51.100.8", "198.51.100.7"]


def test_journal_ignores_x_forwarded_for_without_trusted_proxies(fresh_server: Server) -> None:
    forwarded(fresh_server, "198.51.100.7")
    assert [r["client_ip"] for r in wait_for_requests(fresh_server, 1)] == ["127.0.0.1"]


def _problem(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 400, (response.request.url, response.text)
    return {p["path"]: p["message"] for p in response.json()["problems"]}


def test_rule_admin_parameters_a_bad_or_unknown_parameter_is_a_400_naming_it(server: Server) -> None:
    with server.admin() as c:
        assert "query.cursor" in _problem(c.get("/api/events", params={"cursor": "zzz"}))
        status = _problem(c.get("/api/events", params={"status": "bogus"}))["query.status"]
        assert "stored, pending, delivered, dead" in status and "'bogus'" in status
        assert "axon, appsflyer" in _problem(c.get("/api/requests", params={"api": "nope"}))["query.api"]
        for path in ("/api/events", "/api/requests", "/api/stats"):
            assert "source" in _problem(c.get(path, params={"souce": "px_std"}))["query.souce"]
        assert "once" in _problem(c.get("/api/events?limit=5&limit=6"))["query.limit"]
        assert "once" in _problem(c.get("/api/requests?source=a&source=b"))["query.source"]
        first = c.get("/api/events", params={"limit": 1}).json()
        assert first["next"] is None or c.get("/api/events", params={"cursor": first["next"]}).status_code == 200
        assert c.get("/api/events", params={"status": "stored"}).status_code == 200
        assert c.get("/api/requests", params={"api": "axon"}).status_code == 200


def test_rule_admin_parameters_an_empty_filter_is_a_400_not_every_row(server: Server) -> None:
    """Rule (http/params.query_text): ``?source=`` (a script's unset variable) answered every
    source's events, as if no filter were given (a trial); it is refused, naming it."""
    with server.admin() as c:
        for path, key in [
            ("/api/events", "source"), ("/api/events", "name"), ("/api/events", "test_tag"),
            ("/api/events", "status"), ("/api/events", "api"), ("/api/requests", "source"),
            ("/api/requests", "status"), ("/api/requests", "client_ip"), ("/api/requests", "dedupe_id"),
            ("/api/stats", "source"), ("/api/quality", "name"), ("/api/quality", "source"),
        ]:  # fmt: skip
            for empty in ("", "  "):
                problems = _problem(c.get(path, params={key: empty}))
                assert problems == {f"query.{key}": f"{key} is empty: give it a value, or leave it out"}, (path, key)
        assert c.get("/api/events", params={"source": "px_std"}).status_code == 200


def test_every_admin_get_asks_its_token_and_its_parameters_through_one_helper(server: Server) -> None:
    """/api/events/{id}, /api/requests/{id} and /api/outbox each repeated the check of the
    token then of the parameters, and the others the token's alone: each GET of the admin API
    now begins with refused_admin_get, so that a new one cannot forget either. Without the
    token, a parameter it does not take is a 401, not a 400 that tells the endpoint's rules."""
    gets = [r for r in ROUTES if r.method == "GET" and r.path.startswith("/api/")]
    for route in gets:
        tree = ast.parse(textwrap.dedent(inspect.getsource(route.handler)))
        called = {
            node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert "refused_admin_get" in called, route.path
        assert not called & {"admin_refusal", "unknown_parameters", "_unknown_parameters"}, (route.path, called)
    with server.client() as c:
        for route in gets:
            path = route.path.replace("{id}", "1").replace("{request_id}", "ab")
            refused = c.get(path, params={"x": "1"})
            assert refused.status_code == 401 and refused.json()["error"] == "unauthorized", (path, refused.text)


def test_rule_admin_parameters_every_admin_get_refuses_a_parameter_it_does_not_take(server: Server) -> None:
    """/api/outbox?x=1 was answered 200, where /api/events and /api/requests refuse a parameter
    they do not take (a trial): every GET of the admin API says "not a parameter here"."""
    post(server, page_view())
    with server.admin() as c:
        event_id = c.get("/api/events", params={"limit": 1}).json()["events"][0]["id"]
        request_id = c.get("/api/requests", params={"limit": 1}).json()["requests"][0]["request_id"]
        ids = {"{id}": str(event_id), "{request_id}": request_id}
        gets = [r.path for r in ROUTES if r.method == "GET" and r.path.startswith("/api/")]
        assert {"/api/outbox", "/api/sources", "/api/events/{id}", "/api/requests/{request_id}"} <= set(gets)
        for template in gets:
            path = template
            for placeholder, value in ids.items():
                path = path.replace(placeholder, value)
            assert c.get(path).status_code == 200, path
            refused = c.get(path, params={"x": "1"})
            assert refused.json()["error"] == "invalid_query", (path, refused.text)
            said = _problem(refused)["query.x"]
            assert said.startswith("x is not a parameter here; "), (path, said)
            assert [p["code"] for p in refused.json()["problems"]] == ["unknown_parameter"], path
        assert _problem(c.get("/api/outbox", params={"x": "1"}))["query.x"] == (
            "x is not a parameter here; this endpoint takes none"
        )
        # The README listed client_ip among the filters of both listings (a trial): requests only.
        said = _problem(c.get("/api/events", params={"client_ip": "203.0.113.7"}))["query.client_ip"]
        assert "/api/requests?client_ip=" in said, said


def test_rule_admin_parameters_a_client_ip_that_is_not_an_address_is_a_400(server: Server) -> None:
    """A trial's ``client_ip=notanip`` was answered 200 with an empty page, as if no request had come."""
    with server.admin() as c:
        said = _problem(c.get("/api/requests", params={"client_ip": "notanip"}))["query.client_ip"]
        assert "'notanip' is not an IP address" in said
        assert "query.client_ip" in _problem(c.get("/api/requests", params={"client_ip": "127.0.0.1/8"}))
        for address in ("127.0.0.1", "::1", "2001:db8::8"):
            assert c.get("/api/requests", params={"client_ip": address}).status_code == 200, address


def test_rule_admin_parameters_a_cursor_pages_only_the_listing_that_gave_it(fresh_server: Server) -> None:
    """A trial's cursor from /api/events was taken by /api/requests (and the other way round),
    which answered a page from an unrelated position: each listing's cursors are its own, and
    the other's is a 400 naming the listing it belongs to."""
    post(fresh_server, *[page_view() for _ in range(3)])
    post(fresh_server, page_view())
    wait_for_requests(fresh_server, 2)
    with fresh_server.admin() as c:
        events_next = c.get("/api/events", params={"limit": 1}).json()["next"]
        requests_next = c.get("/api/requests", params={"limit": 1}).json()["next"]
        assert events_next and requests_next and events_next != requests_next
        assert c.get("/api/events", params={"cursor": events_next}).status_code == 200
        assert c.get("/api/requests", params={"cursor": requests_next}).status_code == 200
        said = _problem(c.get("/api/requests", params={"cursor": events_next}))["query.cursor"]
        assert "/api/events" in said
        said = _problem(c.get("/api/events", params={"cursor": requests_next}))["query.cursor"]
        assert "/api/requests" in said
        said = _problem(c.get("/api/events", params={"cursor": "7czd"}))["query.cursor"]  # one made before
        assert "first page" in said


def test_rule_admin_parameters_an_events_id_asked_of_the_events_is_sent_to_the_journal(server: Server) -> None:
    """A trial asked /api/events for a dedupe_id and was told only that it is not a parameter
    there: the answer says which endpoint finds it."""
    with server.admin() as c:
        for key in ("dedupe_id", "transaction_id"):
            message = _problem(c.get("/api/events", params={key: "order-1"}))[f"query.{key}"]
            assert f"/api/requests?{key}=" in message and "use " in message, message
            assert c.get("/api/requests", params={key: "order-1"}).status_code == 200


def test_rule_admin_parameters_times_are_epoch_ms_or_iso_8601_everywhere(server: Server) -> None:
    with server.admin() as c:
        for path in ("/api/events", "/api/requests", "/api/stats"):
            iso = c.get(path, params={"since": "2026-12-03T00:00:00Z", "until": "2026-12-03T06:00:00+00:00"})
            assert iso.status_code == 200, (path, iso.text)
            assert c.get(path, params={"since": "1764720000000", "until": "1764741600000"}).status_code == 200
            assert "query.since" in _problem(c.get(path, params={"since": "last tuesday"}))


def test_cli_events_with_a_bad_status_fails_and_names_it(server: Server, tmp_path: Path) -> None:
    env = {"CAPIGATE_URL": server.url, "CAPIGATE_ADMIN_TOKEN": ADMIN}
    done = capigate("events", "--status", "bogus", cwd=tmp_path, **env)
    assert done.returncode != 0
    assert "status" in done.stderr + done.stdout


def test_rule_admin_parameters_a_time_in_seconds_is_refused_not_reinterpreted(server: Server) -> None:
    """Rule: since/until given in seconds (1733000000) would read as January 1970 in
    milliseconds; the value is refused with a 400 saying so, never silently read either way.
    0 is the same instant in both units, and is taken."""
    with server.admin() as c:
        for path in ("/api/events", "/api/requests", "/api/stats", "/api/quality"):
            for key in ("since", "until"):
                answer = c.get(path, params={key: "1733000000"})
                message = _problem(answer)[f"query.{key}"]
                assert "looks like seconds" in message and "1733000000000" in message, (path, message)
                assert answer.json()["problems"][0]["code"] == "time_in_seconds"
        assert c.get("/api/events", params={"since": "0"}).status_code == 200
        replay = c.post("/api/replay", json={"since": 1733000000})
        assert "looks like seconds" in _problem(replay)["since"]


def test_rule_admin_parameters_an_offset_plus_left_unencoded_is_named(server: Server) -> None:
    """`?until=2026-12-06T07:15:00+02:00`: a `+` in a query string reads as a space, and the
    answer said only "epoch milliseconds or an ISO 8601 time" (a trial). It now says to write
    the `+` as %2B; it is not read as a `+`, and the time in %2B form is taken."""
    with server.admin() as c:
        for path in ("/api/events", "/api/requests", "/api/stats", "/api/quality"):
            for key in ("since", "until"):
                answer = c.get(f"{path}?{key}=2026-12-06T07:15:00+02:00")
                assert answer.status_code == 400, (path, answer.text)
                message = _problem(answer)[f"query.{key}"]
                assert "%2B" in message and "2026-12-06T07:15:00%2B02:00" in message, (path, message)
                assert answer.json()["problems"][0]["code"] == "invalid_format"
                assert c.get(f"{path}?{key}=2026-12-06T07:15:00%2B02:00").status_code == 200, path
        plain = _problem(c.get("/api/events?until=yesterday"))["query.until"]
        assert "%2B" not in plain, plain
        replay = c.post("/api/replay", json={"until": "2026-12-06T07:15:00 02:00"})
        assert "%2B" not in _problem(replay)["until"]


def test_cli_a_time_in_seconds_is_refused_with_the_gateways_reason(server: Server, tmp_path: Path) -> None:
    env = {"CAPIGATE_URL": server.url, "CAPIGATE_ADMIN_TOKEN": ADMIN}
    done = capigate("events", "--since", "1733000000", cwd=tmp_path, **env)
    assert done.returncode != 0 and "looks like seconds" in done.stderr, done.stderr
    replay = capigate("replay", "--config", str(server.config), "--db", str(server.db), "--until", "1733000000")
    assert replay.returncode == 2 and "looks like seconds" in replay.stderr, replay.stderr


def test_rule_one_seconds_threshold_for_the_admin_parameters_and_axon_times(server: Server) -> None:
    """Rule: an epoch value below 10^11 (March 1973 in ms, the year 5138 in s) is seconds, and 0,
    the same instant in both units, is not: since/until, Axon's event_time and its measurement
    timestamps read that one rule (capigate/epoch.py). An event_time of 0 was told it looked like
    seconds while since=0 and a measurement timestamp of 0 were taken as milliseconds."""
    mpd = example("axon_purchase.json")["events"][0]["measurement_partner_data"]
    for value, seconds in ((0, False), (99_999_999_999, True), (100_000_000_000, False)):
        with server.admin() as c:
            answer = c.get("/api/events", params={"since": str(value)})
        assert (answer.status_code == 400) is seconds, (value, answer.text)
        event = page_view(event_time=value, measurement_partner_data={**mpd, "first_visit_ts": value})
        sent = post(server, event)
        assert sent.status_code == 200, sent.text
        told = {w["path"]: w["code"] for w in sent.json()["warnings"]}
        assert (told.get("events[0].event_time") == "time_in_seconds") is seconds, (value, told)
        first_visit = told.get("events[0].measurement_partner_data.first_visit_ts")
        assert (first_visit == "time_in_seconds") is seconds, (value, told)
