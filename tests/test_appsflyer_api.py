"""POST /inappevent/{app_id}: AppsFlyer's statuses and texts, the 1 KB limit, the silent
iOS failure made loud, hashing, the journal and the query API, through a real server."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from tests.conftest import Server, example
from tests.helpers import paths, stored, wait_until
from tests.storekit import store_as_text

SHOP = "/inappevent/com.example.shop"
KEY = {"authentication": "af-dev-key"}


def event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "appsflyer_id": "1415211453000-6513711",
        "eventName": "af_purchase",
        "eventValue": json.dumps({"af_revenue": "9.99", "af_currency": "USD", "af_order_id": f"o-{time.time_ns()}"}),
        "eventCurrency": "USD",
        "customer_user_id": f"cu-{time.time_ns()}",
    }
    body.update(overrides)
    return body


def post(
    server: Server, body: Any, path: str = SHOP, headers: dict[str, str] | Literal[False] | None = None, **kw: Any
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    with server.client() as c:
        return c.post(path, content=content, headers={**KEY, **(headers or {})} if headers is not False else {}, **kw)


def journal(server: Server, **params: Any) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        with server.admin() as c:
            rows: list[dict[str, Any]] = c.get("/api/requests", params={"limit": 1000, **params}).json()["requests"]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_valid_event_is_200_ok_in_plain_text_and_stored(server: Server) -> None:
    body = event()
    r = post(server, body)
    assert (r.status_code, r.text) == (200, "OK")
    assert r.headers["content-type"].startswith("text/plain")
    [row] = stored(server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})
    assert row["api"] == "appsflyer" and row["name"] == "af_purchase"
    assert row["payload"]["eventValue"]["af_revenue"] == "9.99"


def test_demo_example_is_accepted(server: Server) -> None:
    assert post(server, example("appsflyer_purchase.json")).status_code == 200


def test_either_key_authenticates_and_header_name_is_case_insensitive(server: Server) -> None:
    assert post(server, event(), headers={"authentication": "af-s2s-token"}).status_code == 200
    with server.client() as c:
        r = c.post(SHOP, json=event(), headers={"AUTHENTICATION": "af-dev-key"})
    assert r.status_code == 200


def test_missing_or_wrong_key_is_401_unauthorized(server: Server) -> None:
    with server.client() as c:
        r = c.post(SHOP, json=event())
    assert (r.status_code, r.text) == (401, "Unauthorized")
    r = post(server, event(), headers={"authentication": "af-ios-key"})
    assert (r.status_code, r.text) == (401, "Unauthorized")


def test_a_key_sent_in_authorization_is_401_with_a_hint_to_the_authentication_header(server: Server) -> None:
    """Axon's header name is the habit of a client that sends both APIs: the text stays
    AppsFlyer's; the JSON answer and the journal say where the key should have been."""
    r = post(server, event(), headers=False)
    assert (r.status_code, r.text) == (401, "Unauthorized")
    with server.client() as c:
        r = c.post(SHOP, json=event(), headers={"Authorization": "af-dev-key", "Accept": "application/json"})
    [problem] = r.json()["problems"]
    assert r.status_code == 401 and problem["path"] == "authentication"
    assert "'authentication' header" in problem["message"] and "'Authorization'" in problem["message"]
    with server.client() as c:
        plain = c.post(SHOP, json=event(), headers={"Accept": "application/json"})
    assert "Authorization" not in plain.json()["problems"][0]["message"]


def test_unknown_app_is_401_unauthorized(server: Server) -> None:
    r = post(server, event(), path="/inappevent/com.example.nope")
    assert (r.status_code, r.text) == (401, "Unauthorized")


def test_an_unknown_app_and_a_wrong_key_get_one_answer_the_journal_says_which(server: Server) -> None:
    """An unknown app was told `unknown_app` "no app with this id is configured", a configured
    app's wrong key `unauthorized` "missing or wrong authentication key": anyone without a key
    learnt which app ids are configured (a trial). One answer now, as Axon's for an unknown
    pixel_id or a wrong key; the journal (the operator's) still says which it was."""
    tag = f"which-{time.time_ns()}"
    answers = {}
    for path, key in (
        (SHOP, "wrong"),
        ("/inappevent/com.example.nope", "wrong"),
        ("/inappevent/com.example.nope", "af-dev-key"),
    ):
        headers = {"authentication": key, "Accept": "application/json", "X-Capigate-Test": tag}
        r = post(server, event(), path=path, headers=headers)
        assert r.status_code == 401, r.text
        answers[path, key] = r.json()
    told = {json.dumps(a, sort_keys=True) for a in answers.values()}
    assert len(told) == 1, told
    [problem] = answers[SHOP, "wrong"]["problems"]
    assert answers[SHOP, "wrong"]["error"] == "unauthorized" == problem["code"]
    assert problem == {
        "path": "authentication",
        "code": "unauthorized",
        "message": "unknown app id or wrong authentication key",
    }
    keyless = [post(server, event(), path=p, headers=False) for p in (SHOP, "/inappevent/com.example.nope")]
    assert {(r.status_code, r.text) for r in keyless} == {(401, "Unauthorized")}
    with server.client() as c:
        keyless = [
            c.post(p, json=event(), headers={"Accept": "application/json"})
            for p in (SHOP, "/inappevent/com.example.nope")
        ]
    assert keyless[0].json() == keyless[1].json()
    assert keyless[0].json()["problems"][0]["message"] == "no key in the 'authentication' header"
    entries = journal(server, test_tag=tag)
    while len(entries) < 3:
        time.sleep(0.05)
        entries = journal(server, test_tag=tag)
    said = sorted((e["source"], e["problems"][0]["message"]) for e in entries)
    assert said == [
        (
            "com.example.nope",
            "unknown app id or wrong authentication key (journal only: no app with this id is configured)",
        ),
        (
            "com.example.nope",
            "unknown app id or wrong authentication key (journal only: no app with this id is configured)",
        ),
        (
            "com.example.shop",
            "unknown app id or wrong authentication key (journal only: the app is configured; the key is not one of its keys)",
        ),
    ], said


def test_a_configured_apps_request_without_a_key_is_journaled_as_such(server: Server) -> None:
    """The journal said "no key in the 'authentication' header (journal only: the app is
    configured; the key is not one of its keys)" of a request that sent none (a trial)."""
    tag = f"keyless-{time.time_ns()}"
    with server.client() as c:
        r = c.post(SHOP, json=event(), headers={"Accept": "application/json", "X-Capigate-Test": tag})
    assert r.status_code == 401, r.text
    [entry] = journal(server, test_tag=tag)
    message = entry["problems"][0]["message"]
    assert message == "no key in the 'authentication' header (journal only: the app is configured)", message


def test_missing_appsflyer_id_is_400_with_its_text(server: Server) -> None:
    body = event()
    del body["appsflyer_id"]
    r = post(server, body)
    assert (r.status_code, r.text) == (400, "appsflyer_id is a mandatory field")


def test_not_json_or_not_an_object_is_400_payload_failed_to_parse(server: Server) -> None:
    for content in (b"", b"{not json", b"[1, 2]", b'"text"'):
        r = post(server, content)
        assert (r.status_code, r.text) == (400, "Payload is missing or failed to parse"), content


def test_other_validation_failures_are_400_bad_request(server: Server) -> None:
    r = post(server, event(eventCurrency="DOLLARS", ip="not-an-ip"))
    assert (r.status_code, r.text) == (400, "Bad request")


def test_body_limit_is_1024_bytes_counting_multibyte_characters(server: Server) -> None:
    def body(name: str) -> bytes:
        return json.dumps(event(eventName=name, customer_user_id="cu-limit"), ensure_ascii=False).encode()

    room = 1024 - len(body(""))
    assert len(body("é" + "x" * (room - 2))) == 1024
    assert post(server, body("é" + "x" * (room - 2))).status_code == 200
    over = body("é" * room)  # as many characters as fit, but each is two bytes
    assert len(over.decode()) <= 1024 < len(over)
    r = post(server, over)
    assert (r.status_code, r.text) == (400, "Payload is missing or failed to parse")


def test_an_unreadable_body_names_the_size_limit_only_when_it_is_the_cause(server: Server) -> None:
    """The answer "Content-Encoding 'br' is not supported; use gzip or none (AppsFlyer accepts at most 1024
    bytes)" blamed a 2-byte body on its size."""
    answers = {
        encoding: post(server, b"{}", headers={"Content-Encoding": encoding, "Accept": "application/json"})
        for encoding in ("br", "gzip")
    }
    big = post(server, event(customer_user_id="x" * 1100), headers={"Accept": "application/json"})
    for r in (*answers.values(), big):
        assert r.status_code == 400 and r.json()["message"] == "Payload is missing or failed to parse", r.text
    assert [p["code"] for p in answers["br"].json()["problems"]] == ["unsupported_encoding"]
    assert [p["code"] for p in answers["gzip"].json()["problems"]] == ["bad_gzip"]
    assert all("1024" not in p["message"] for r in answers.values() for p in r.json()["problems"])
    (problem,) = big.json()["problems"]
    assert problem["code"] == "payload_too_large" and "at most 1024 bytes" in problem["message"]


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip"])
def test_a_gzip_body_is_inflated_and_its_1024_byte_limit_counts_the_inflated_body(
    server: Server, encoding: str
) -> None:
    body = event()
    r = post(server, gzip.compress(json.dumps(body).encode()), headers={"Content-Encoding": encoding})
    assert (r.status_code, r.text) == (200, "OK")
    assert stored(server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})
    padded = gzip.compress(json.dumps(event(customer_user_id="x" * 1100)).encode())
    assert len(padded) < 1024
    r = post(server, padded, headers={"Content-Encoding": encoding, "Accept": "application/json"})
    assert r.status_code == 400 and [p["code"] for p in r.json()["problems"]] == ["payload_too_large"]


def test_json_accept_gets_every_problem_with_its_path(server: Server) -> None:
    body = event(eventCurrency="DOLLARS", ip="300.1.1.1", att=7)
    del body["appsflyer_id"]
    r = post(server, body, headers={**KEY, "Accept": "application/json"})
    assert r.status_code == 400
    found = paths(r.json())
    assert found["appsflyer_id"] == "missing_field"
    assert {"eventCurrency", "ip", "att"} <= set(found)
    assert r.json()["message"] == "appsflyer_id is a mandatory field"


def test_json_accept_gets_counts_and_warnings_on_success(server: Server) -> None:
    body = event(eventValue={"af_revenue": "1.5", "af_currency": "USD"})
    r = post(server, body, headers={**KEY, "Accept": "application/json"})
    assert r.status_code == 200
    assert r.json()["stored"] == 1
    assert paths(r.json(), "warnings")["eventValue"] == "event_value_not_stringified"
    assert "event_value_not_stringified" in r.headers["x-capigate-warnings"]


def test_ios_app_id_without_prefix_answers_200_ok_records_nothing_and_warns(fresh_server: Server) -> None:
    body = event()
    r = post(fresh_server, body, path="/inappevent/123456789", headers={"authentication": "af-ios-key"})
    assert (r.status_code, r.text) == (200, "OK")
    assert "ios_app_id_without_prefix" in r.headers["x-capigate-warnings"]
    assert "x-capigate-dropped" in r.headers
    with fresh_server.admin() as c:
        assert c.get("/api/events").json()["events"] == []
    [entry] = journal(fresh_server)
    assert entry["status"] == 200 and entry["events_stored"] == 0
    assert entry["warnings"][0]["code"] == "ios_app_id_without_prefix"


def test_a_silently_dropped_event_is_found_under_the_app_it_was_meant_for(fresh_server: Server) -> None:
    """The journal entry of /inappevent/123456789 is the configured app id123456789's: found by
    source, event name and af_order_id, its body kept with personal data treated, one event
    received (not stored) on that app's overview card, not among the unknown sources."""
    order = f"o-{time.time_ns()}"
    body = event(eventValue=json.dumps({"af_order_id": order, "af_revenue": "5"}), email_hashed="Jane@Example.com")
    headers = {"authentication": "af-ios-key", "Accept": "application/json"}
    r = post(fresh_server, body, path="/inappevent/123456789", headers=headers)
    assert r.status_code == 200 and "x-capigate-dropped" in r.headers
    assert (r.json()["received"], r.json()["stored"]) == (1, 0)
    for found_by in ({"source": "id123456789"}, {"transaction_id": order}, {"name": "af_purchase"}):
        [entry] = journal(fresh_server, **found_by)
        assert entry["source"] == "id123456789" and entry["path"] == "/inappevent/123456789", found_by
        assert (entry["events_received"], entry["events_stored"]) == (1, 0)
    with fresh_server.admin() as c:
        kept = c.get(f"/api/requests/{entry['request_id']}").json()
        stats = c.get("/api/stats").json()
    assert kept["body"]["eventValue"]["af_order_id"] == order
    assert kept["body"]["email_hashed"] == hashlib.sha256(b"jane@example.com").hexdigest()
    assert "Jane@Example.com" not in json.dumps(kept)
    assert {("name", "af_purchase"), ("transaction_id", order)} <= {tuple(k) for k in kept["keys"]}
    card = [b for b in stats["buckets"] if b["source"] == "id123456789"]
    assert sum(b["events_received"] for b in card) == sum(b["events_refused"] for b in card) == 1
    assert stats["unknown"]["requests"] == 0


def test_ios_app_id_without_prefix_and_wrong_key_is_401(server: Server) -> None:
    r = post(server, event(), path="/inappevent/123456789", headers={"authentication": "wrong"})
    assert r.status_code == 401


def test_a_trailing_slash_after_the_app_id_is_named_in_the_401(server: Server) -> None:
    """`POST /inappevent/com.example.shop/` with the app's key: 401 "no app with this id is
    configured (or the key is wrong)", which sent a trial to check the key (a trial). AppsFlyer
    documents /inappevent/{app_id} only, so it stays a 401; the message names the slash, to a
    client with the key only (a wrong key learns nothing of the app ids)."""
    tag = f"slash-{time.time_ns()}"
    headers = {**KEY, "Accept": "application/json", "X-Capigate-Test": tag}
    r = post(server, event(), path=f"{SHOP}/", headers=headers)
    assert r.status_code == 401 and r.text != "OK"
    (problem,) = r.json()["problems"]
    assert problem["code"] == "unknown_app" and "trailing '/'" in problem["message"], problem
    assert f"POST {SHOP} " in problem["message"], problem
    [entry] = journal(server, test_tag=tag)  # found under the app its sender meant, the path as sent
    assert (entry["source"], entry["path"], entry["status"]) == ("com.example.shop", f"{SHOP}/", 401), entry
    wrong = post(server, event(), path=f"{SHOP}/", headers={"authentication": "wrong", "Accept": "application/json"})
    assert wrong.status_code == 401 and "/" not in wrong.json()["problems"][0]["message"]


def test_an_empty_app_id_is_named_missing_from_the_path(server: Server) -> None:
    """`POST /inappevent/` was told "no app with this id is configured (or the key is
    wrong)", of an id it never gave (a trial)."""
    for path in ("/inappevent/", "/inappevent//"):
        r = post(server, event(), path=path, headers={**KEY, "Accept": "application/json"})
        assert r.status_code == 401
        (problem,) = r.json()["problems"]
        assert "the app id is missing from the path: POST /inappevent/{app_id}" in problem["message"], problem


def test_ios_app_with_prefix_is_recorded(server: Server) -> None:
    body = event(idfa="6D92078A-8246-4BA4-AE5B-76104861E7DC")
    r = post(server, body, path="/inappevent/id123456789", headers={"authentication": "af-ios-key"})
    assert r.status_code == 200
    assert len(stored(server, "id123456789", payload={"customer_user_id": body["customer_user_id"]})) == 1


def test_plain_email_and_phone_in_hashed_fields_are_hashed_and_warned(server: Server) -> None:
    body = event(email_hashed=" Shopper@Example.com ", phone_number_hashed="+1 (650) 555-1212")
    r = post(server, body, headers={**KEY, "Accept": "application/json"})
    assert r.status_code == 200
    assert paths(r.json(), "warnings")["email_hashed"] == "plain_pii_hashed"
    [row] = stored(server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})
    assert row["payload"]["email_hashed"] == hashlib.sha256(b"shopper@example.com").hexdigest()
    assert row["payload"]["phone_number_hashed"] == hashlib.sha256(b"16505551212").hexdigest()
    assert "Shopper" not in r.text and "555-1212" not in r.text


def test_plain_email_in_event_value_never_reaches_the_store_journal_or_log(fresh_server: Server) -> None:
    email, phone = "Jane.Roe+Shop@Example.org", "+44 20 7946 0958"
    value = {"af_revenue": "9.99", "af_content_id": email, "buyer": {"email": email, "phone": phone, "tier": "gold"}}
    body = event(eventValue=json.dumps(value), custom_data=json.dumps({"contact": email}))
    plain = post(fresh_server, body)
    assert (plain.status_code, plain.text) == (200, "OK")
    assert "plain_pii_dropped" in plain.headers["x-capigate-warnings"]
    r = post(fresh_server, {**body, "customer_user_id": "cu-json"}, headers={**KEY, "Accept": "application/json"})
    assert r.status_code == 200 and r.json()["stored"] == 1
    warned = paths(r.json(), "warnings")
    for path in ("eventValue.af_content_id", "eventValue.buyer.email", "eventValue.buyer.phone", "custom_data.contact"):
        assert warned[path] == "plain_pii_dropped"
    [row] = stored(fresh_server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})
    assert row["payload"]["eventValue"] == {"af_revenue": "9.99", "buyer": {"tier": "gold"}}
    assert row["payload"]["custom_data"] == {}
    assert len(journal(fresh_server)) >= 1
    with fresh_server.admin() as c:
        haystacks = {
            "response": plain.text + r.text + str(r.headers),
            "events": c.get("/api/events", params={"limit": 100}).text,
            "journal": c.get("/api/requests", params={"limit": 100}).text,
        }
    fresh_server.stop()  # flush and close the store before reading its files
    haystacks["log"] = fresh_server.output()
    for db_file in Path(fresh_server.db).parent.glob("capigate.db*"):
        haystacks[db_file.name] = db_file.read_bytes().decode("latin-1")
    for where, text in haystacks.items():
        for needle in ("Example.org", "example.org", "Jane.Roe"):
            assert needle not in text, f"{needle!r} found in {where}"
        # The phone's last eight digits, with or without its separators: its "7946" alone was
        # found in a millisecond timestamp (1796537794678) by chance, a CI run's false alarm.
        assert re.search(r"7946\D{0,3}0958", text) is None, f"the phone number found in {where}"


def test_dedupe_on_af_order_id_works_beside_a_dropped_parameter(server: Server) -> None:
    order = f"o-{time.time_ns()}"
    body = event(eventValue=json.dumps({"af_order_id": order, "email": "jane@example.org"}))
    headers = {"authentication": "af-orders-key", "Accept": "application/json"}
    first = post(server, body, path="/inappevent/com.example.orders", headers=headers)
    second = post(server, body, path="/inappevent/com.example.orders", headers=headers)
    assert paths(first.json(), "warnings")["eventValue.email"] == "plain_pii_dropped"
    assert (first.json()["stored"], second.json()["duplicates"]) == (1, 1)
    [row] = stored(server, "com.example.orders", payload={"customer_user_id": body["customer_user_id"]})
    assert row["dedupe_id"] == order and row["payload"]["eventValue"] == {"af_order_id": order}


@pytest.mark.parametrize("blank", ["", " ", None], ids=["empty", "space", "null"])
def test_a_blank_dedupe_key_value_is_stored_each_time_with_the_axon_warning(server: Server, blank: str | None) -> None:
    """An app with dedupe_key = "af_order_id" sent `"af_order_id": ""` (a client's
    `order.id || ""`): each event was stored, silently not deduplicated (a trial). As on
    Axon, the warning is blank_dedupe_id; the parameter itself still goes upstream."""
    body = event(eventValue=json.dumps({"af_order_id": blank, "af_revenue": "5"}))
    headers = {"authentication": "af-orders-key", "Accept": "application/json"}
    answers = [post(server, body, path="/inappevent/com.example.orders", headers=headers) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert (answer.json()["stored"], answer.json()["duplicates"]) == (1, 0)
        assert paths(answer.json(), "warnings")["eventValue.af_order_id"] == "blank_dedupe_id"
        assert "blank_dedupe_id" in answer.headers["x-capigate-warnings"]
    rows = stored(server, "com.example.orders", payload={"customer_user_id": body["customer_user_id"]})
    assert [r["dedupe_id"] for r in rows] == [None, None]
    assert all(r["payload"]["eventValue"]["af_order_id"] == blank for r in rows)


def test_an_event_without_the_dedupe_key_is_stored_each_time_with_the_axon_warning(server: Server) -> None:
    """An app with dedupe_key = "af_order_id" sent an event without af_order_id: 200, no
    warning, and it could not be deduplicated (a trial). As on Axon, missing_dedupe_id."""
    body = event(eventValue=json.dumps({"af_revenue": "5", "af_currency": "USD"}))
    headers = {"authentication": "af-orders-key", "Accept": "application/json"}
    answers = [post(server, body, path="/inappevent/com.example.orders", headers=headers) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert (answer.json()["stored"], answer.json()["duplicates"]) == (1, 0)
        assert paths(answer.json(), "warnings")["eventValue.af_order_id"] == "missing_dedupe_id"
        assert "missing_dedupe_id" in answer.headers["x-capigate-warnings"]
    shop = post(server, body, headers={"Accept": "application/json"})  # no dedupe_key: no warning
    assert "eventValue.af_order_id" not in paths(shop.json(), "warnings")


def test_event_time_absent_means_arrival_time(server: Server) -> None:
    body = event()
    before = time.time_ns() // 1_000_000
    post(server, body)
    [row] = stored(server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})
    assert before - 1000 <= row["event_time"] <= time.time_ns() // 1_000_000 + 1000


def test_late_event_is_restamped_to_arrival_and_keeps_its_sent_time(server: Server) -> None:
    body = event(eventTime="2020-01-01 10:00:00.000")
    r = post(server, body, headers={**KEY, "Accept": "application/json"})
    assert r.status_code == 200
    assert paths(r.json(), "warnings")["eventTime"] == "event_time_restamped"
    [row] = stored(server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})
    assert row["payload"]["eventTime"] == "2020-01-01 10:00:00.000"
    assert row["event_time"] > 1_700_000_000_000


def test_journal_records_every_appsflyer_request_with_problems(fresh_server: Server) -> None:
    post(fresh_server, event())
    post(fresh_server, event(ip="bad"))
    post(fresh_server, event(), headers={"authentication": "nope"})
    rows = journal(fresh_server, api="appsflyer")
    deadline = time.monotonic() + 5
    while len(rows) < 3 and time.monotonic() < deadline:
        rows = journal(fresh_server, api="appsflyer")
    assert [r["status"] for r in rows] == [401, 400, 200]
    assert rows[1]["problems"][0]["path"] == "ip"
    assert all(r["source"] == "com.example.shop" for r in rows)


UNREADABLE: dict[str, tuple[bytes, dict[str, str]]] = {
    "malformed_json": (b'{"eventName": ', {}),
    "empty_body": (b"", {}),
    "bad_gzip": (b'{"eventName": "x"}', {"Content-Encoding": "gzip"}),
}


def test_an_unreadable_body_counts_no_event_received_on_either_api(fresh_server: Server) -> None:
    """The journal counted 1 event received for an AppsFlyer body of malformed JSON and 0 for a
    bad gzip one; Axon 0 for both. A body that cannot be inflated or read as JSON holds no
    event to count; a JSON object that fails its checks is still the request's one event."""
    axon = {"Authorization": "key-std", "Content-Type": "application/json"}
    with fresh_server.client() as c:
        for body, headers in UNREADABLE.values():
            assert c.post("/v1/event?pixel_id=px_std", content=body, headers={**axon, **headers}).status_code == 400
            assert c.post(SHOP, content=body, headers={**KEY, **headers}).status_code == 400
    assert post(fresh_server, event(ip="bad")).status_code == 400
    wait_until(lambda: len(journal(fresh_server)) == 2 * len(UNREADABLE) + 1, what="every request journaled")
    received = sorted((r["api"], r["problems"][0]["code"], r["events_received"]) for r in journal(fresh_server))
    assert received == [
        ("appsflyer", "bad_gzip", 0),
        ("appsflyer", "empty_body", 0),
        ("appsflyer", "invalid_ip", 1),
        ("appsflyer", "malformed_json", 0),
        ("axon", "bad_gzip", 0),
        ("axon", "malformed_json", 0),  # Axon calls an empty body malformed_json
        ("axon", "malformed_json", 0),
    ]


def test_no_dedupe_by_default(server: Server) -> None:
    body = event()
    post(server, body)
    r = post(server, body, headers={**KEY, "Accept": "application/json"})
    assert r.json()["duplicates"] == 0
    assert len(stored(server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})) == 2


def test_optional_af_order_id_dedupe_when_configured(server: Server) -> None:
    body = event()
    headers = {"authentication": "af-orders-key", "Accept": "application/json"}
    first = post(server, body, path="/inappevent/com.example.orders", headers=headers)
    second = post(server, body, path="/inappevent/com.example.orders", headers=headers)
    assert first.json()["stored"] == 1
    assert (second.status_code, second.json()["duplicates"]) == (200, 1)


def test_a_refund_with_its_purchases_order_id_is_stored_and_a_second_refund_is_a_duplicate(server: Server) -> None:
    """An app with dedupe_key = "af_order_id" sent an af_purchase of order O-2, then its
    af_refund, whose af_order_id is the purchase's by design: the refund was answered stored 0,
    duplicates 1, with no warning, and never relayed (a trial). The key counts per event name."""
    order = f"O-2-{time.time_ns()}"
    headers = {"authentication": "af-orders-key", "Accept": "application/json"}
    path = "/inappevent/com.example.orders"
    purchase = event(eventValue=json.dumps({"af_revenue": "6", "af_currency": "USD", "af_order_id": order}))
    refund = event(
        eventName="af_refund",
        eventValue=json.dumps({"af_revenue": "-6", "af_currency": "USD", "af_order_id": order}),
    )
    answers = [post(server, body, path=path, headers=headers) for body in (purchase, refund, refund, purchase)]
    assert [(a.json()["stored"], a.json()["duplicates"]) for a in answers] == [(1, 0), (1, 0), (0, 1), (0, 1)]
    rows = stored(server, "com.example.orders", dedupe_id=order)
    assert sorted(r["name"] for r in rows) == ["af_purchase", "af_refund"]


def test_an_email_address_percent_encoded_is_dropped_from_a_defined_field(server: Server) -> None:
    """Rule: an email address written %40 is one in AppsFlyer's defined fields too:
    customer_user_id dropped with pii_in_customer_user_id, never stored or relayed plain."""
    body = event(customer_user_id="hank%40gmail.com")
    order = json.loads(body["eventValue"])["af_order_id"]
    r = post(server, body, headers={**KEY, "Accept": "application/json"})
    assert r.status_code == 200
    assert paths(r.json(), "warnings")["customer_user_id"] == "pii_in_customer_user_id"
    [row] = [e for e in stored(server, "com.example.shop") if e["payload"]["eventValue"].get("af_order_id") == order]
    assert "customer_user_id" not in row["payload"] and "gmail" not in json.dumps(row["payload"])


def test_a_phone_number_in_customer_user_id_is_dropped(server: Server) -> None:
    """Rule: customer_user_id holding a phone number in international form is personal data,
    dropped with pii_in_customer_user_id as an email address is; digits alone are an id."""
    for user_id, dropped in (("+1 415 555 0123", True), ("+14155550123", True), ("14155550123", False)):
        body = event(customer_user_id=user_id)
        order = json.loads(body["eventValue"])["af_order_id"]
        r = post(server, body, headers={**KEY, "Accept": "application/json"})
        assert r.status_code == 200
        assert ("customer_user_id" in paths(r.json(), "warnings")) is dropped
        [row] = [
            e for e in stored(server, "com.example.shop") if e["payload"]["eventValue"].get("af_order_id") == order
        ]
        assert ("customer_user_id" not in row["payload"]) is dropped


def test_an_event_name_holding_control_characters_is_refused_at_event_name(server: Server) -> None:
    """A trial: an eventName of "af_x" + NUL + U+202E was answered 200 and stored as sent, a
    NUL PostgreSQL cannot store and a right-to-left override that reverses what follows it
    wherever the name is shown. Refused at eventName, each character named by its escape, as a
    NUL in an Axon dedupe_id is; a name of printable characters in any script is kept."""
    invisible = (  # format characters (Cf), stored as the real name they display as (a re-trial)
        ("af_purchase\u200b", "\\u200b"),
        ("af_x\ufeff", "\\ufeff"),
        ("af_\u2060login\u00ad", "\\u2060, \\xad"),
    )
    for name, shown in (
        ("af_x\u0000\u202e", "\\x00, \\u202e"),
        ("signup\n", "\\n"),
        ("a\u200fb\tc", "\\u200f, \\t"),
        *invisible,
    ):
        body = event(eventName=name)
        r = post(server, body, headers={"Accept": "application/json"})
        assert r.status_code == 400, (name, r.text)
        [problem] = r.json()["problems"]
        assert (problem["path"], problem["code"]) == ("eventName", "control_character"), problem
        assert shown in problem["message"], problem
        assert "zero-width space" in problem["message"], problem  # what an invisible one does
        assert not stored(server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})
    assert post(server, event(eventName="注文_完了 ü")).status_code == 200
    # the joiners are how some words and emoji are written (Persian, a family): kept
    for joined in ("af_\u0645\u06cc\u200c\u062e", "af_👨\u200d👩\u200d👧"):
        assert post(server, event(eventName=joined)).status_code == 200, joined


def test_a_refused_events_plain_email_and_phone_in_their_hashed_fields_are_said_hashed_not_dropped(
    server: Server,
) -> None:
    """The AppsFlyer side of an Axon trial (a refused event's correct email said dropped): a
    plain email_hashed and phone_number_hashed of an event refused for something else are
    hashed, and said so, as in an accepted one; nothing is said dropped."""
    for refusal in ({"ip": "not-an-ip"}, {"eventTime": "soon"}, {"appsflyer_id": 5}):
        body = event(email_hashed="jane@example.com", phone_number_hashed="+14155550123", **refusal)
        r = post(server, body, headers={"Accept": "application/json"})
        assert r.status_code == 400, r.text
        warned = paths(r.json(), "warnings")
        assert warned["email_hashed"] == warned["phone_number_hashed"] == "plain_pii_hashed", warned
        assert "plain_pii_dropped" not in warned.values(), warned


def test_a_phone_number_in_an_event_value_parameter_is_dropped_as_an_email_address_is(fresh_server: Server) -> None:
    """Rule (identity.holds_international_phone): a phone number in international form, the
    whole value (`+`, hidden, tel:, `00` and a valid number) or inside free text, is dropped from
    eventValue and custom_data at any depth with `plain_pii_dropped`, as an email address there
    is (null in an array, which stays aligned): a trial found af_order_id, af_content_id and
    af_customer_user_id stored and relayed plain. Its false matches stay as sent: `00` inside
    an id or before no valid number, digits without `+`, a `+` after a letter or digit, a signed
    decimal (a coordinate), a time zone."""
    phones = {
        "af_order_id": "+44 20 7946 0741",
        "af_content_id": "0044 20 7946 0742",
        "af_customer_user_id": "tel:+442079460743",
        "af_search_string": "call +44 20 7946 0744",
        "af_description": "%2B44%2020%207946%200745",
    }
    harmless = {
        "af_receipt_id": "0012345678",
        "af_content": "SKU-0012345678",
        "af_param_1": "4155550123",
        "af_param_2": "size+10+1234567",
        "af_lat": "+51.507351",
        "af_date_a": "2024-01-15T10:00:00+01:00",
    }
    value = {**phones, **harmless, "af_content_list": ["sku-1", "+44 20 7946 0746"], "af_revenue": "9.99"}
    body = event(eventValue=json.dumps(value), custom_data=json.dumps({"ref": "+44 20 7946 0747"}))
    r = post(fresh_server, body, headers={**KEY, "Accept": "application/json"})
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    dropped = {p for p, c in paths(r.json(), "warnings").items() if c == "plain_pii_dropped"}
    expected = {f"eventValue.{k}" for k in phones} | {"eventValue.af_content_list[1]", "custom_data.ref"}
    assert dropped == expected, r.text
    assert "phone number" in r.text and "7946" not in r.text
    [row] = stored(fresh_server, "com.example.shop", payload={"customer_user_id": body["customer_user_id"]})
    assert row["payload"]["eventValue"] == {**harmless, "af_content_list": ["sku-1", None], "af_revenue": "9.99"}
    assert row["payload"]["custom_data"] == {}
    fresh_server.stop()
    for where, text in {**store_as_text(str(fresh_server.db), None), "log": fresh_server.output()}.items():
        assert re.search(r"7946\D{0,3}07", text) is None, f"a phone number found in {where}"
