"""The inspector's HTTP side: login and session cookie, the page's headers, /api/sources,
/api/stats and /api/test-event (the source's key stays on the server)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import ADMIN, DEFAULT_CONFIG, Server, make_server
from tests.helpers import batch, purchase


@contextmanager
def session(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        answer = client.post("/login", data={"token": ADMIN})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        yield client


def test_login_sets_an_httponly_strict_cookie_that_is_not_the_token(server: Server) -> None:
    with server.client() as c:
        wrong = c.post("/login", data={"token": "nope-nope"})
        assert wrong.status_code == 401 and "Wrong admin token" in wrong.text
        assert "set-cookie" not in wrong.headers
        right = c.post("/login", data={"token": ADMIN})
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert ADMIN not in cookie


def test_the_page_is_the_login_form_until_logged_in(server: Server) -> None:
    with server.client() as c:
        page = c.get("/")
    assert page.status_code == 200 and 'name="token"' in page.text and 'id="tabs"' not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    with session(server) as c:
        page = c.get("/")
        assert 'id="tabs"' in page.text
        script = page.text.split('<script src="')[1].split('"')[0]
        asset = c.get(script)
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
        assert "immutable" in asset.headers["cache-control"]
        assert c.post("/logout").headers["set-cookie"].startswith("capigate_session=;")


def test_get_login_leads_to_the_page_not_a_405(server: Server) -> None:
    """/login typed in a browser answered 405 with a JSON body (a trial): it leads to the page,
    whose login form loads its script from the page's own origin."""
    with server.client() as c:
        typed = c.get("/login")
        assert (typed.status_code, typed.headers["location"]) == (303, "/")
        form = c.get("/")
        script = form.text.split('<script src="')[1].split('"')[0]
        assert script.startswith("/inspector/login.js?v=") and c.get(script).status_code == 200


def test_the_cookie_reads_the_api_but_writes_only_with_the_inspector_header(server: Server) -> None:
    with session(server) as c:
        assert c.get("/api/requests?limit=1").status_code == 200
        assert c.get("/api/sources").status_code == 200
        body = {"source": "px_std", "body": json.dumps(batch(purchase()))}
        assert c.post("/api/test-event", json=body).status_code == 403  # a cross-site form could do this much
        assert c.post("/api/test-event", json=body, headers={"X-Capigate-Inspector": "1"}).status_code == 200
    with server.client() as c:
        c.cookies.set("capigate_session", "0" * 64)
        assert c.get("/api/requests").status_code == 401


def test_sources_carry_the_spec_examples_and_never_a_key(server: Server) -> None:
    with server.admin() as c:
        page = c.get("/api/sources").json()
    text = json.dumps(page)
    for key in ("key-std", "key-lead", "key-restricted", "af-dev-key", "af-s2s-token", "af-ios-key", ADMIN):
        assert key not in text
    by_id = {s["id"]: s for s in page["sources"]}
    assert [e["name"] for e in by_id["px_std"]["examples"]] == ["axon_purchase.json"]
    assert [e["name"] for e in by_id["px_lead"]["examples"]] == [
        "lead_gen_generate_lead.json",
        "lead_gen_page_view.json",
    ]
    assert by_id["px_restricted"]["examples"][0]["name"] == "restricted_generate_lead.json"
    assert by_id["com.example.shop"]["api"] == "appsflyer"
    event = json.loads(by_id["px_std"]["examples"][0]["body"])["events"][0]
    assert abs(event["event_time"] - page["now"]) < 60_000 and event["dedupe_id"].startswith("inspector-")
    assert page["dedupe_retention_days"] == 30


def test_a_test_event_goes_through_the_gateway_with_the_key_and_a_test_tag(server: Server) -> None:
    with server.admin() as c:
        sources = {s["id"]: s for s in c.get("/api/sources").json()["sources"]}
        for source in ("px_std", "px_lead", "px_restricted", "com.example.shop"):
            for example in sources[source]["examples"]:
                sent = c.post("/api/test-event", json={"source": source, "body": example["body"]})
                assert sent.status_code == 200, sent.text
                answer = sent.json()
                assert answer["status"] == 200, (source, example["name"], answer)
                assert json.loads(answer["body"])["stored"] == 1
        time.sleep(0.3)
        journal = c.get("/api/requests", params={"source": "px_lead", "limit": 5}).json()["requests"]
        mine = [r for r in journal if r["test_tag"] == "inspector"]
        assert mine and mine[0]["user_agent"].startswith("capigate-inspector/")
        events = c.get("/api/events", params={"source": "com.example.shop", "test_tag": "inspector"}).json()["events"]
        assert events and events[0]["name"] == "af_purchase"

        refused = c.post("/api/test-event", json={"source": "px_std", "body": '{"events": [{"name": "purchas"}]}'})
        assert refused.status_code == 200
        assert refused.json()["status"] == 400 and "invalid_batch" in refused.json()["body"]
        unknown = c.post("/api/test-event", json={"source": "px_nope", "body": "{}"})
        assert unknown.status_code == 400 and unknown.json()["problems"][0]["code"] == "unknown_source"
        assert c.post("/api/test-event", json={"source": "px_std"}).status_code == 400
    with server.client() as c:
        assert c.post("/api/test-event", json={"source": "px_std", "body": "{}"}).status_code == 401


def test_a_bad_test_event_body_is_refused_as_a_body_problem_at_its_field(server: Server) -> None:
    """Not "invalid_query" at path "": the problem is in the JSON body, at the field it names
    (as /api/replay reports its body's problems)."""
    cases = [
        (b'{"source": "px_demo"}', "body", "missing_field"),
        (b'{"body": "{}"}', "source", "missing_field"),
        (b'{"source": "px_std", "body": {"events": []}}', "body", "wrong_type"),
        (b'{"source": "px_std", "body": "{}", "extra": 1}', "extra", "unknown_field"),
        (b'{"source": ', "", "malformed_json"),
        (b"", "", "malformed_json"),
        (b"[[[[[[", "", "malformed_json"),  # not "must be an object, not an array": not JSON at all
    ]
    with server.admin() as c:
        for raw, path, code in cases:
            answer = c.post("/api/test-event", content=raw, headers={"Content-Type": "application/json"})
            assert answer.status_code == 400, (raw, answer.text)
            error = answer.json()
            assert error["error"] == "invalid_test_event", (raw, error)
            assert [(p["path"], p["code"]) for p in error["problems"]] == [(path, code)], (raw, error)
            assert "query" not in error["message"], error
            assert code != "malformed_json" or not raw or "not valid JSON" in error["problems"][0]["message"], error
        unknown = c.post("/api/test-event", json={"source": "px_nope", "body": "{}"}).json()
        assert unknown["error"] == "invalid_test_event", unknown
        assert [(p["path"], p["code"]) for p in unknown["problems"]] == [("source", "unknown_source")]


def test_stats_per_source_and_their_limits(fresh_server: Server) -> None:
    with fresh_server.client() as c:
        c.post("/v1/event?pixel_id=px_std", json=batch(purchase(), purchase()), headers={"Authorization": "key-std"})
        c.post("/v1/event?pixel_id=px_std", json={"events": []}, headers={"Authorization": "key-std"})
    time.sleep(0.3)
    with fresh_server.admin() as c:
        stats = c.get("/api/stats").json()
        assert stats["until"] - stats["since"] == 3_600_000 and stats["bucket_ms"] == 60_000
        # Two minutes' buckets when the two requests straddled a minute's end (a CI run did).
        buckets = stats["buckets"]
        assert 1 <= len(buckets) <= 2 and {b["source"] for b in buckets} == {"px_std"}, buckets
        assert sum(b["requests"] for b in buckets) == 2 and sum(b["failed_requests"] for b in buckets) == 1
        assert sum(b["events_accepted"] for b in buckets) == 2
        assert stats["relay"] == []  # the store has an outbox; no source relays here
        assert c.get("/api/stats", params={"source": "px_lead"}).json()["buckets"] == []
        assert c.get("/api/stats", params={"since": 10, "until": 5}).status_code == 400
        a_day = {"since": 1_700_000_000_000, "until": 1_700_086_400_000, "bucket": 1000}  # 86,400 buckets
        assert c.get("/api/stats", params=a_day).status_code == 400
        assert c.get("/api/stats", params={"bucket": "x"}).status_code == 400
    with fresh_server.client() as c:
        assert c.get("/api/stats").status_code == 401


def test_a_write_with_the_session_cookie_alone_is_told_the_header_it_lacks(server: Server) -> None:
    """A live session writing without X-Capigate-Inspector was told "send Authorization: Bearer
    <admin_token>", as if the session were not valid. It is authenticated, and refused: 403
    (a 401 says log in again, which the page does on one), without a challenge."""
    with session(server) as c:
        for path in ("/api/replay", "/api/test-event"):
            refused = c.post(path, json={})
            assert (refused.status_code, refused.json()["error"]) == (403, "forbidden"), refused.text
            assert "www-authenticate" not in refused.headers
            message = refused.json()["message"]
            assert "X-Capigate-Inspector" in message and "CSRF" in message and "Bearer" in message, message
        assert c.post("/api/replay", json={}, headers={"X-Capigate-Inspector": "1"}).status_code == 200
    with server.client() as c:  # no session: the hint stays the bearer token's
        assert "X-Capigate-Inspector" not in c.post("/api/replay", json={}).json()["message"]


def test_a_refused_stats_bucket_is_told_its_real_range_and_the_condition_it_failed(server: Server) -> None:
    """bucket=bogus said "an integer from 0 to ..." while 0, 1 and 1000 (over the default
    hour) were answered "since < until, bucket >= 1000 ms, at most 500 buckets", naming no
    condition and contradicting the first. Then bucket=0 was told two minima ("an integer from
    7186 to 253402300799999 over this window; 0 is below 1000 ms") and a maximum no window has,
    and a bucket wider than the window was answered 200 (a trial): one range, the window's."""

    def problem(**params: str | int) -> dict[str, str]:
        with server.admin() as c:
            r = c.get("/api/stats", params=params)
        assert r.status_code == 400, r.text
        (said,) = r.json()["problems"]
        return said  # type: ignore[no-any-return]

    hour = {"since": 1_700_000_000_000, "until": 1_700_003_600_000}
    low = 3_600_000 // 501 + 1  # 500 buckets at most
    said = (
        f"bucket is a number of milliseconds, an integer from {low} (at most 500 buckets of the window) "
        "to 3600000 (the window, since to until)"
    )
    assert problem(bucket="bogus", **hour) == {
        "path": "query.bucket",
        "code": "invalid_format",
        "message": f"{said}; 'bogus' is not an integer",
    }
    for small in (0, -5, 1, 1000):
        answer = problem(bucket=small, **hour)
        assert answer == {"path": "query.bucket", "code": "out_of_range", "message": f"{said}; {small} is below {low}"}
    for wide in (3_600_001, 99_999_999_999, 999_999_999_999_999):
        answer = problem(bucket=wide, **hour)
        assert answer == {
            "path": "query.bucket",
            "code": "out_of_range",
            "message": f"{said}; {wide} is wider than the window",
        }
    minute = {"since": 1_700_000_000_000, "until": 1_700_000_060_000}  # 1000 ms buckets: 60 of them
    assert problem(bucket=0, **minute)["message"] == (
        "bucket is a number of milliseconds, an integer from 1000 (the shortest bucket) "
        "to 60000 (the window, since to until); 0 is below 1000"
    )
    with server.admin() as c:
        for fits in (low, 3_600_000):
            assert c.get("/api/stats", params={"bucket": fits, **hour}).json()["bucket_ms"] == fits
        assert c.get("/api/stats", params={"bucket": 1000, **minute}).status_code == 200
        blink = {"since": 1_700_000_000_000, "until": 1_700_000_000_500}  # shorter than the shortest bucket
        assert c.get("/api/stats", params={"bucket": 1000, **blink}).status_code == 200
    with server.admin() as c:  # no window: the shortest bucket is the only bound
        unread = c.get("/api/stats", params={"bucket": 0, "since": "x"}).json()["problems"]
    assert [p["path"] for p in unread] == ["query.since", "query.bucket"]
    assert unread[1]["message"] == (
        "bucket is a number of milliseconds, an integer of at least 1000 (the shortest bucket); 0 is below 1000"
    )
    said_since = problem(since=hour["until"], until=hour["since"])
    assert said_since == {"path": "query.since", "code": "out_of_range", "message": "since must be before until"}


def test_a_page_size_that_is_not_an_integer_is_a_format_problem(server: Server) -> None:
    with server.admin() as c:
        (bad,) = c.get("/api/events", params={"limit": "abc"}).json()["problems"]
        (big,) = c.get("/api/events", params={"limit": "5000"}).json()["problems"]
    assert (bad["path"], bad["code"]) == ("query.limit", "invalid_format"), bad
    assert bad["message"] == "limit is the page size, an integer from 1 to 1000; 'abc' is not an integer"
    assert (big["code"], big["message"]) == (
        "out_of_range",
        "limit is the page size, an integer from 1 to 1000; 5000 is above 1000",
    )


def test_login_takes_the_token_as_json_too_and_a_json_body_without_one_is_no_failed_login(
    fresh_server: Server,
) -> None:
    """`POST /login` with `{"token": "<the right token>"}` was answered 401 "Wrong admin token"
    and counted toward the lockout (a trial). A JSON body's token is read as the form's is; a
    JSON body without one is a 400 saying what is wanted, and guesses nothing."""
    with fresh_server.client() as c:
        right = c.post("/login", json={"token": ADMIN})
        assert right.status_code == 303 and right.headers["location"] == "/", right.text
        assert right.headers["set-cookie"].startswith("capigate_session=")
        for body in (b"{not json", b'"a string"', b'{"admin_token": "x"}', b'{"token": 7}') * 2:
            bad = c.post("/login", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
            assert bad.status_code == 400 and '"token"' in bad.text, bad.text
        wrong = c.post("/login", json={"token": "nope-nope"})
        assert wrong.status_code == 401 and "Wrong admin token" in wrong.text
        assert c.post("/login", data={"token": ADMIN}).status_code == 303  # 8 bodies and 1 wrong token: not locked


def test_login_reads_a_json_token_whatever_the_content_type_and_a_body_without_a_token_is_no_failed_login(
    fresh_server: Server,
) -> None:
    """`curl -X POST $URL/login -d '{"token":"<right token>"}'` (form-encoded by curl's
    default) was answered 401 and counted: five locked out even the right token (a re-trial).
    A body that is a JSON object with a "token" string is read as JSON whatever its type; a
    body with no token at all, or a JSON object naming "token" twice, is a 400 that guesses
    nothing."""
    form = "application/x-www-form-urlencoded"
    with fresh_server.client() as c:
        for content_type in (form, "text/plain", form, "text/plain", form, "text/plain"):
            right = c.post("/login", content=f'{{"token":"{ADMIN}"}}', headers={"Content-Type": content_type})
            assert right.status_code == 303 and right.headers["location"] == "/", (content_type, right.text)
        no_token = (b"", b"user=x", b"token=", b"hello", b'{"admin_token": "x"}', b'{"token": 7}')
        for body in no_token:
            for content_type in (form, "text/plain"):
                bad = c.post("/login", content=body, headers={"Content-Type": content_type})
                assert bad.status_code == 400 and "token" in bad.text, (body, content_type, bad.text)
        twice = f'{{"token": "nope-nope", "token": "{ADMIN}"}}'
        for content_type in (form, "text/plain", "application/json"):
            bad = c.post("/login", content=twice, headers={"Content-Type": content_type})
            assert bad.status_code == 400 and "twice" in bad.text, (content_type, bad.text)
        assert c.post("/login", data={"token": ADMIN}).status_code == 303  # 15 bodies without a guess: not locked


def test_a_test_event_for_the_other_apis_source_is_named_as_such(server: Server) -> None:
    """`{"source": "com.example.demo", "api": "axon"}` was told "no pixel or app
    'com.example.demo' is configured" of a configured AppsFlyer app (a trial); an api that is
    neither was told the same."""

    def refused(ask: dict[str, str]) -> tuple[str, str, str]:
        with server.admin() as c:
            answer = c.post("/api/test-event", json=ask)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_test_event", answer.text
        (problem,) = answer.json()["problems"]
        return problem["path"], problem["code"], problem["message"]

    assert refused({"source": "com.example.shop", "api": "axon", "body": "{}"}) == (
        "api",
        "wrong_api",
        '\'com.example.shop\' is an AppsFlyer app, not an Axon pixel: send "api": "appsflyer" (or leave api out)',
    )
    assert refused({"source": "px_std", "api": "appsflyer", "body": "{}"}) == (
        "api",
        "wrong_api",
        '\'px_std\' is an Axon pixel, not an AppsFlyer app: send "api": "axon" (or leave api out)',
    )
    path, code, message = refused({"source": "px_std", "api": "Axon", "body": "{}"})
    assert (path, code) == ("api", "invalid_value") and "axon, appsflyer" in message and "'Axon'" in message
    assert refused({"source": "px_nope", "api": "axon", "body": "{}"})[:2] == ("source", "unknown_source")
    path, code, message = refused({"source": "jane@example.com", "body": "{}"})
    assert (path, code) == ("source", "unknown_source") and "jane" not in message, message
    with server.admin() as c:
        sent = c.post("/api/test-event", json={"source": "com.example.shop", "api": "appsflyer", "body": "{}"})
    assert sent.status_code == 200 and sent.json()["status"] == 400, sent.text


def test_a_test_event_with_the_other_apis_body_says_it_looks_like_that_apis(server: Server) -> None:
    """An AppsFlyer event sent to an Axon pixel was answered Axon's `events: missing_field`,
    an Axon batch sent to an AppsFlyer app AppsFlyer's `appsflyer_id is a mandatory field`,
    with no hint that the body was the other API's (a trial). Such a body is refused as the
    other problems of a test event are, at `body`, saying what it looks like and where it goes."""
    with server.admin() as c:
        examples = {s["id"]: s["examples"][0]["body"] for s in c.get("/api/sources").json()["sources"]}

        def refused(source: str, body: str, **ask: str) -> str:
            answer = c.post("/api/test-event", json={"source": source, "body": body, **ask})
            assert answer.status_code == 400, answer.text
            error = answer.json()
            assert error["error"] == "invalid_test_event", error
            [(path, code, message)] = [(p["path"], p["code"], p["message"]) for p in error["problems"]]
            assert (path, code) == ("body", "wrong_api"), error
            return str(message)

        appsflyer_body, axon_body = examples["com.example.shop"], examples["px_std"]
        assert refused("px_std", appsflyer_body) == (
            "the body looks like an AppsFlyer in-app event (it has appsflyer_id, eventName, eventValue), and "
            "'px_std' is an Axon pixel, which takes {\"events\": [...]}: send it to an AppsFlyer app "
            "('com.example.shop', 'id123456789', 'com.example.orders')"
        )
        assert refused("com.example.shop", axon_body) == (
            "the body looks like an Axon batch (it has events), and 'com.example.shop' is an AppsFlyer app, which "
            "takes one event (appsflyer_id, eventName, ...): send it to an Axon pixel ('px_std', 'px_lead', "
            "'px_restricted')"
        )
        # Each API's own body, and a body of neither (or not JSON), is sent: the gateway's answer says the rest.
        for source, body in (
            ("px_std", axon_body),
            ("com.example.shop", appsflyer_body),
            ("px_std", '{"name": "purchase"}'),
            ("com.example.shop", "[1, 2]"),
            ("px_std", "{not json"),
        ):
            sent = c.post("/api/test-event", json={"source": source, "body": body})
            assert sent.status_code == 200, (source, body, sent.text)


def test_a_test_event_with_the_other_apis_body_names_the_source_of_that_api_with_the_same_id(
    tmp_path: Path,
) -> None:
    """A pixel and an app of one id: the hint is the "api" that sends the body to the other."""
    server = make_server(tmp_path, DEFAULT_CONFIG + '\n[[appsflyer.apps]]\napp_id = "px_std"\nkeys = ["af-shared"]\n')
    server.start()
    try:
        with server.admin() as c:
            appsflyer = '{"appsflyer_id": "1415211453000-6513711", "eventName": "af_purchase"}'
            answer = c.post("/api/test-event", json={"source": "px_std", "body": appsflyer})
            [problem] = answer.json()["problems"]
            said = ': send "api": "appsflyer" to send it to the AppsFlyer app of this id'
            assert problem["message"].endswith(said), problem
            answer = c.post("/api/test-event", json={"source": "px_std", "api": "appsflyer", "body": '{"events": []}'})
            [problem] = answer.json()["problems"]
            assert problem["message"].endswith(': send "api": "axon" to send it to the Axon pixel of this id'), problem
    finally:
        server.stop()


def test_the_openapi_document_describes_the_test_events_fields(server: Server) -> None:
    """The document listed source and body only (api was missing), and did not say body is a
    JSON string."""
    with server.client() as c:
        document = c.get("/openapi.json").json()
    schema = document["paths"]["/api/test-event"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"source", "body", "api"}
    assert schema["properties"]["api"]["enum"] == ["axon", "appsflyer"]
    assert "string" in schema["properties"]["body"]["description"]
