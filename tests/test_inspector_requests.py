"""Finding a request: GET /api/requests filters, GET /api/requests/{request_id} with the body of
a refused request (PII treated as at ingest, capped), and the links between requests and events."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from capigate.kept import DROPPED, MAX_KEPT_BYTES, _axon_keys, _batch_keys, note_accepted
from capigate.store.base import NewEvent
from tests.conftest import ADMIN, DEFAULT_CONFIG, Server, make_server, served_on
from tests.helpers import all_pages, batch, now_ms, page_view, purchase


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("requests"))
    srv.start()
    yield srv
    srv.stop()


def post_axon(gateway: Server, body: Any, **headers: str) -> httpx.Response:
    with gateway.client(headers={"Authorization": "key-std", **headers}) as c:
        return c.post("/v1/event?pixel_id=px_std", content=json.dumps(body).encode())


def post_appsflyer(gateway: Server, body: dict[str, Any], app: str = "com.example.orders") -> httpx.Response:
    key = {"com.example.orders": "af-orders-key", "com.example.shop": "af-dev-key"}[app]
    with gateway.client(headers={"authentication": key, "Accept": "application/json"}) as c:
        return c.post(f"/inappevent/{app}", content=json.dumps(body).encode())


def requests_where(gateway: Server, **params: Any) -> list[dict[str, Any]]:
    time.sleep(0.2)  # the journal is written a few milliseconds after the answer
    return all_pages(gateway, "/api/requests", "requests", **params)


def detail(gateway: Server, request_id: str) -> dict[str, Any]:
    with gateway.admin() as c:
        answer = c.get(f"/api/requests/{request_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def at_path(body: Any, path: str) -> Any:
    node = body
    for dotted in path.split("."):
        name, *indexes = dotted.split("[")
        node = node[name] if name else node
        for index in indexes:
            node = node[int(index.rstrip("]"))]
    return node


def test_a_refused_purchase_is_found_by_transaction_id_with_its_body_pii_hashed(gateway: Server) -> None:
    txn = f"T-{uuid.uuid4().hex[:10]}"
    event = purchase()
    event["data"] = {**event["data"], "transaction_id": txn, "currency": "ZZZ"}
    event["user_data"] = {**event["user_data"], "email": " Buyer.One@Example.com ", "phone": "+1 650 555 1212"}
    refused = post_axon(gateway, batch(event))
    assert refused.status_code == 400
    found = requests_where(gateway, transaction_id=txn)
    assert [r["status"] for r in found] == [400]
    kept = detail(gateway, found[0]["request_id"])
    problem = next(p for p in kept["problems"] if p["code"] == "unknown_currency")
    assert at_path(kept["body"], problem["path"]) == "ZZZ"  # the failing path points into the kept body
    user = kept["body"]["events"][0]["user_data"]
    assert user["email"] == sha256("buyer.one@example.com") and user["phone"] == sha256("16505551212")
    assert ("transaction_id", txn) in [tuple(k) for k in kept["keys"]]
    # Never plain: not in the answer, not in the database file.
    assert "Buyer.One" not in json.dumps(kept) and "650 555" not in json.dumps(kept)
    db = Path(gateway.db)
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            assert b"Buyer.One@Example.com" not in path.read_bytes()


def test_a_refused_email_that_cannot_be_hashed_is_dropped_not_kept(gateway: Server) -> None:
    txn = f"T-{uuid.uuid4().hex[:10]}"
    event = purchase()
    event["data"] = {**event["data"], "transaction_id": txn}
    event["user_data"] = {**event["user_data"], "email": "not an email at all"}
    assert post_axon(gateway, batch(event)).status_code == 400
    (found,) = requests_where(gateway, transaction_id=txn)
    kept = detail(gateway, found["request_id"])
    assert kept["body"]["events"][0]["user_data"]["email"] == DROPPED
    assert "not an email at all" not in json.dumps(kept)


def test_a_refused_body_shows_an_identifier_hashed_at_ingest_as_hashed_not_dropped(gateway: Server) -> None:
    """An email address as user_data.user_id, data.user_id or a look-alike of email
    (``email_address``) is hashed at ingest (``plain_pii_hashed``), but the refused body showed
    each as ``<dropped: personal data>`` (a trial): the page said they were dropped. They show
    as the hash the stored event would hold; what ingest drops is still shown dropped."""
    txn = f"T-{uuid.uuid4().hex[:10]}"
    event = purchase()
    event["data"] = {**event["data"], "transaction_id": txn, "user_id": "Bob.Two@Example.com"}
    event["user_data"] = {
        **event["user_data"],
        "user_id": " Jane.Roe@Example.com",
        "email_address": "X.Y@example.com",
        "email_note": "call after six",  # an unknown key named like personal data: dropped
    }
    refused = dict(event, data={**event["data"], "currency": "ZZZ"})
    assert post_axon(gateway, batch(refused)).status_code == 400
    (found,) = requests_where(gateway, transaction_id=txn)
    kept = detail(gateway, found["request_id"])["body"]["events"][0]
    assert kept["user_data"]["user_id"] == sha256("jane.roe@example.com")
    assert kept["user_data"]["email_address"] == sha256("x.y@example.com")
    assert kept["data"]["user_id"] == sha256("bob.two@example.com")
    assert kept["user_data"]["email_note"] == DROPPED
    # The event accepted: its warnings say which were hashed, which dropped, and it is stored
    # with the values the refused body shows, the dropped key left out.
    accepted = post_axon(gateway, batch(event), **{"X-Capigate-Test": txn})
    assert accepted.status_code == 200, accepted.text
    codes = {(w["path"], w["code"]) for w in accepted.json()["warnings"]}
    for path in ("user_data.user_id", "user_data.email_address", "data.user_id"):
        assert (f"events[0].{path}", "plain_pii_hashed") in codes, codes
    assert ("events[0].user_data.email_note", "plain_pii_dropped") in codes, codes
    with gateway.admin() as c:
        (stored,) = c.get("/api/events", params={"test_tag": txn}).json()["events"]
    user = stored["payload"]["user_data"]
    assert (user["user_id"], user["email_address"]) == (
        kept["user_data"]["user_id"],
        kept["user_data"]["email_address"],
    )
    assert stored["payload"]["data"]["user_id"] == kept["data"]["user_id"] and "email_note" not in user


def test_a_refused_appsflyer_event_is_found_by_af_order_id_with_hashed_fields_hashed(gateway: Server) -> None:
    order = f"O-{uuid.uuid4().hex[:10]}"
    body = {
        "appsflyer_id": "1415211453000-6513711",
        "eventName": "af_purchase",
        "eventValue": json.dumps({"af_revenue": "six", "af_order_id": order, "buyer_email": "b@example.com"}),
        "email_hashed": "Someone@Example.com",
    }
    assert post_appsflyer(gateway, body).status_code == 400
    (found,) = requests_where(gateway, transaction_id=order)
    kept = detail(gateway, found["request_id"])
    assert kept["body"]["email_hashed"] == sha256("someone@example.com")
    assert kept["body"]["eventValue"]["buyer_email"] == DROPPED
    assert kept["body"]["eventValue"]["af_revenue"] == "six"
    assert "b@example.com" not in json.dumps(kept) and "Someone@" not in json.dumps(kept)
    problem = next(p for p in kept["problems"] if p["path"].startswith("eventValue"))
    assert at_path(kept["body"], problem["path"]) == "six"


def test_a_refused_body_is_capped(gateway: Server) -> None:
    big = [purchase(data={**purchase()["data"], "transaction_id": "x" * 2000}) for _ in range(101)]
    assert post_axon(gateway, batch(*big), **{"User-Agent": "cap-test/1"}).status_code == 400
    (found,) = [r for r in requests_where(gateway, status="400") if r["user_agent"] == "cap-test/1"]
    kept = detail(gateway, found["request_id"])
    assert isinstance(kept["body"], str) and len(kept["body"].encode()) <= MAX_KEPT_BYTES + 200
    assert kept["body"].startswith("<the body is")


def test_status_filters_take_a_code_or_a_class_and_combine_with_time_and_source(gateway: Server) -> None:
    since = now_ms()
    agent = {"User-Agent": f"status-test/{uuid.uuid4().hex[:6]}"}
    assert post_axon(gateway, batch(page_view()), **agent).status_code == 200
    assert post_axon(gateway, batch(page_view(name="no_such_event")), **agent).status_code == 400
    with gateway.client(headers=agent) as c:
        assert c.post("/v1/event?pixel_id=px_std", json=batch(page_view())).status_code == 401
    until = now_ms() + 1
    mine = {"source": "px_std", "since": since, "until": until}
    assert [r["status"] for r in requests_where(gateway, status="2xx", **mine)] == [200]
    assert sorted(r["status"] for r in requests_where(gateway, status="4xx", **mine)) == [400, 401]
    assert [r["status"] for r in requests_where(gateway, status="401", **mine)] == [401]
    assert requests_where(gateway, status="5xx", **mine) == []
    assert requests_where(gateway, status="2xx", source="px_std", since=until) == []


@pytest.mark.parametrize("status", ["4XXX", "abc", "6xx", "40", "x4x"])
def test_a_bad_status_filter_is_a_400_naming_the_parameter(gateway: Server, status: str) -> None:
    with gateway.admin() as c:
        answer = c.get("/api/requests", params={"status": status})
    assert answer.status_code == 400
    assert [p["path"] for p in answer.json()["problems"]] == ["query.status"]


def test_name_dedupe_id_client_ip_and_test_tag_filters_combine_and_page(gateway: Server) -> None:
    tag = f"tag-{uuid.uuid4().hex[:8]}"
    dedupe = f"d-{uuid.uuid4().hex}"
    assert post_axon(gateway, batch(purchase(dedupe_id=dedupe)), **{"X-Capigate-Test": tag}).status_code == 200
    for _ in range(3):
        assert post_axon(gateway, batch(page_view()), **{"X-Capigate-Test": tag}).status_code == 200
    assert [r["test_tag"] for r in requests_where(gateway, dedupe_id=dedupe)] == [tag]
    assert len(requests_where(gateway, test_tag=tag)) == 4
    assert len(requests_where(gateway, test_tag=tag, name="page_view")) == 3
    assert len(requests_where(gateway, test_tag=tag, name="purchase", client_ip="127.0.0.1")) == 1
    assert requests_where(gateway, test_tag=tag, client_ip="192.0.2.1") == []
    with gateway.admin() as c:
        first = c.get("/api/requests", params={"test_tag": tag, "name": "page_view", "limit": 2}).json()
        assert len(first["requests"]) == 2 and first["next"]
        rest = c.get("/api/requests", params={"test_tag": tag, "name": "page_view", "cursor": first["next"]}).json()
    assert len(rest["requests"]) == 1 and rest["next"] is None
    ids = {r["id"] for r in first["requests"]} | {r["id"] for r in rest["requests"]}
    assert len(ids) == 3


def test_a_request_lists_its_stored_events_and_an_event_names_its_request(gateway: Server) -> None:
    tag = f"link-{uuid.uuid4().hex[:8]}"
    assert post_axon(gateway, batch(purchase(), page_view()), **{"X-Capigate-Test": tag}).status_code == 200
    (found,) = requests_where(gateway, test_tag=tag)
    kept = detail(gateway, found["request_id"])
    assert kept["body"] is None  # accepted: its events are what is kept
    assert [e["name"] for e in kept["events"]] == ["purchase", "page_view"]
    events = all_pages(gateway, "/api/events", "events", test_tag=tag)
    assert {e["request_id"] for e in events} == {found["request_id"]}
    assert sorted(e["id"] for e in kept["events"]) == sorted(e["id"] for e in events)


def test_every_ingest_answer_names_the_request_id_its_journal_entry_is_found_by(gateway: Server) -> None:
    """A client had no way to its own entry but a search by time or dedupe id (a tryout)."""
    answers = [
        post_axon(gateway, batch(purchase())),
        post_axon(gateway, {"events": "not a list"}),
        post_appsflyer(
            gateway,
            {"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "eventValue": ""},
            "com.example.shop",
        ),
    ]
    assert [a.status_code for a in answers] == [200, 400, 200], answers[2].text
    ids = [a.headers["x-capigate-request-id"] for a in answers]
    assert len(set(ids)) == 3
    time.sleep(0.2)  # the journal is written a few milliseconds after the answer
    found = [detail(gateway, i) for i in ids]
    assert [(f["request_id"], f["status"]) for f in found] == [(ids[0], 200), (ids[1], 400), (ids[2], 200)]


def test_an_unknown_request_id_is_a_404(gateway: Server) -> None:
    with gateway.admin() as c:
        assert c.get("/api/requests/0123456789abcdef").status_code == 404
        assert c.get("/api/requests/not-an-id").status_code == 404
        assert c.get("/api/requests/" + "a" * 100).status_code == 404


def test_kept_bodies_and_keys_go_with_the_journal_when_it_is_pruned(tmp_path: Path) -> None:
    srv = make_server(tmp_path / "gw")
    srv.start()
    try:
        txn = f"T-{uuid.uuid4().hex[:10]}"
        event = purchase()
        event["data"] = {**event["data"], "transaction_id": txn, "currency": "ZZZ"}
        assert post_axon(srv, batch(event)).status_code == 400
        (found,) = requests_where(srv, transaction_id=txn)
    finally:
        srv.stop()
    with sqlite3.connect(srv.db) as conn:
        assert conn.execute("SELECT count(*) FROM request_bodies").fetchone() == (1,)
        for table in ("requests", "request_bodies", "request_keys"):  # eight days older
            conn.execute(f"UPDATE {table} SET received_at = received_at - 8 * 86400000")
    srv.start()  # prunes at start: the journal keeps 7 days
    try:
        with srv.admin() as c:
            assert c.get(f"/api/requests/{found['request_id']}").status_code == 404
        assert requests_where(srv, transaction_id=txn) == []
    finally:
        srv.stop()
    with sqlite3.connect(srv.db) as conn:
        assert conn.execute("SELECT count(*) FROM request_bodies").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM request_keys").fetchone() == (0,)
    assert srv.log is not None
    assert "pruned 0 events, 1 journal entries, 0 dedupe keys" in srv.log.read_text()  # what retention did


@pytest.mark.parametrize("path", ["typed", "slow"])
def test_an_accepted_purchase_is_found_by_its_transaction_id_and_dedupe_id_on_either_rules_path(
    gateway: Server, path: str
) -> None:
    """The keys of an accepted request come from the events its rules accepted, whichever path
    checked them (the slow path takes a body with a key the schema does not define)."""
    txn, dedupe = f"T-{uuid.uuid4().hex[:10]}", f"d-{uuid.uuid4().hex}"
    event = purchase(dedupe_id=dedupe)
    event["data"] = {**event["data"], "transaction_id": txn}
    if path == "slow":
        event["custom_note"] = "an unknown key: kept, with a warning"
    answer = post_axon(gateway, batch(event))
    assert answer.status_code == 200, answer.text
    assert any(w["code"] == "unknown_field" for w in answer.json()["warnings"]) == (path == "slow")
    (by_txn,) = requests_where(gateway, transaction_id=txn)
    (by_dedupe,) = requests_where(gateway, dedupe_id=dedupe)
    assert by_txn["request_id"] == by_dedupe["request_id"]
    keys = {tuple(k) for k in detail(gateway, by_txn["request_id"])["keys"]}
    assert {("name", "purchase"), ("dedupe_id", dedupe), ("transaction_id", txn)} <= keys


def test_an_accepted_transaction_id_holding_an_email_address_is_never_a_key(gateway: Server) -> None:
    dedupe = f"d-{uuid.uuid4().hex}"
    event = purchase(dedupe_id=dedupe)
    event["data"] = {**event["data"], "transaction_id": "order-for-buyer@example.com"}
    answer = post_axon(gateway, batch(event))
    (found,) = requests_where(gateway, dedupe_id=dedupe)
    assert found["status"] == answer.status_code
    kept = detail(gateway, found["request_id"])
    assert "buyer@example.com" not in json.dumps(kept["keys"])
    assert requests_where(gateway, transaction_id="order-for-buyer@example.com") == []


_ONE_EVENT_CASES = [
    ("purchase", "d-1", "T-1"),
    ("page_view", None, None),
    (" lead ", "  ", 12345),  # stripped; a blank id is no key; an int id is kept as text
    ("purchase", "x" * 300, "jane@example.com"),  # capped; an id holding an email is never a key
]


@pytest.mark.parametrize(("name", "dedupe_id", "transaction_id"), _ONE_EVENT_CASES)
def test_a_one_event_request_gets_the_keys_of_the_batch_rule(
    name: str, dedupe_id: str | None, transaction_id: Any
) -> None:
    """Rule: a one-event Axon request's keys (kept.py's fast path) are what the batch rule gives."""
    event = NewEvent(
        api="axon", source="px", name=name, event_time_ms=1, dedupe_id=dedupe_id, payload=b"{}",
        transaction_id=transaction_id,
    )  # fmt: skip
    assert _axon_keys([event]) == _batch_keys([event])
    assert note_accepted(None, [event], set()) == _batch_keys([event])


def _journaled_dedupe_ids(gateway: Server, request_id: str) -> set[str]:
    with sqlite3.connect(gateway.db) as conn:
        rows = conn.execute("SELECT value FROM request_keys WHERE kind = 'dedupe_id' AND request_id = ?", (request_id,))
        return {value for (value,) in rows}


def test_a_stored_events_dedupe_id_finds_its_request_through_the_store_not_a_journal_key(gateway: Server) -> None:
    """kept.dedupe_ids_not_stored: SQLite's dedupe keys name the event that stored each id, so
    the journal indexes only the ids the store cannot answer for: a duplicate's (its dedupe key
    names the request that stored it first). The look-up and the request's keys are the same."""
    first, second, again = (f"d-{uuid.uuid4().hex}" for _ in range(3))
    answer = post_axon(
        gateway,
        batch(
            purchase(dedupe_id=first),
            purchase(dedupe_id=second),
            page_view(dedupe_id=again),
            page_view(dedupe_id=second),  # a duplicate within the batch: its id is stored, by the second event
        ),
    )
    assert (answer.json()["stored"], answer.json()["duplicates"]) == (3, 1), answer.text
    (stored,) = requests_where(gateway, dedupe_id=second)
    assert _journaled_dedupe_ids(gateway, stored["request_id"]) == set()
    keys = {tuple(k) for k in detail(gateway, stored["request_id"])["keys"]}
    assert {("dedupe_id", first), ("dedupe_id", second), ("dedupe_id", again)} <= keys

    resent = post_axon(gateway, batch(purchase(dedupe_id=first), page_view(dedupe_id=f"d-{uuid.uuid4().hex}")))
    assert resent.json()["duplicates"] == 1, resent.text
    found = [r["request_id"] for r in requests_where(gateway, dedupe_id=first)]
    assert len(found) == 2 and found[1] == stored["request_id"]
    assert _journaled_dedupe_ids(gateway, found[0]) == {first}  # the duplicate's: the store names the first
    assert [r["request_id"] for r in requests_where(gateway, dedupe_id=again)] == [stored["request_id"]]


def test_an_appsflyer_order_stored_under_its_af_order_id_is_found_by_it_as_a_dedupe_id(gateway: Server) -> None:
    """The same rule on AppsFlyer (an app deduplicating on af_order_id): the id its event was
    stored under finds the request and is among its keys, and a resend is found beside it."""
    order = f"O-{uuid.uuid4().hex[:10]}"
    body = {
        "appsflyer_id": "1415211453000-6513711",
        "eventName": "af_purchase",
        "eventValue": json.dumps({"af_revenue": "6", "af_currency": "USD", "af_order_id": order}),
    }
    assert post_appsflyer(gateway, body).status_code == 200
    (stored,) = requests_where(gateway, dedupe_id=order)
    assert ("dedupe_id", order) in {tuple(k) for k in detail(gateway, stored["request_id"])["keys"]}
    assert _journaled_dedupe_ids(gateway, stored["request_id"]) == set()
    assert post_appsflyer(gateway, body).status_code == 200
    found = [r["request_id"] for r in requests_where(gateway, dedupe_id=order)]
    assert len(found) == 2 and found[1] == stored["request_id"]


def test_a_journal_kept_longer_than_the_events_indexes_their_dedupe_ids_itself(tmp_path: Path) -> None:
    """Where the journal outlives the events or their dedupe keys, their ids stay its own keys:
    a request is found by them for as long as it is kept."""
    config = DEFAULT_CONFIG + "\n[store]\njournal_retention_days = 60\nevent_retention_days = 30\n"
    srv = make_server(tmp_path / "gw", config)
    srv.start()
    try:
        dedupe = f"d-{uuid.uuid4().hex}"
        assert post_axon(srv, batch(purchase(dedupe_id=dedupe))).status_code == 200
        (found,) = requests_where(srv, dedupe_id=dedupe)
        assert _journaled_dedupe_ids(srv, found["request_id"]) == {dedupe}
    finally:
        srv.stop()


def test_a_stored_dedupe_id_the_journal_would_strip_stays_a_key_of_its_own(gateway: Server) -> None:
    """The store finds a request by a stored id only as sent; an id the journal keeps otherwise
    (stripped of spaces, cut at 200 characters) is journaled as a key, as before the store
    found any: the request is found by the id's key text and lists it."""
    padded = f" d-{uuid.uuid4().hex} "
    answer = post_axon(gateway, batch(purchase(dedupe_id=padded), purchase()))
    assert answer.status_code == 200 and answer.json()["stored"] == 2, answer.text
    (found,) = requests_where(gateway, dedupe_id=padded.strip())
    assert ("dedupe_id", padded.strip()) in {tuple(k) for k in detail(gateway, found["request_id"])["keys"]}


# --- found as soon as answered ----------------------------------------------------------------


class Caller:
    """One kept-alive connection to a gateway (so to one of its workers), and the node of the
    process that answers on it: the part of a request id that names it (journal.new_request_id)."""

    def __init__(self, server: Server, tag: str) -> None:
        self.client = server.client(headers={"Authorization": "key-std", "X-Capigate-Test": tag})
        self.node = self.ingest(batch(page_view()))[-10:-4]

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def ingest(self, body: dict[str, Any]) -> str:
        answer = self.client.post("/v1/event?pixel_id=px_std", json=body)
        return answer.headers["x-capigate-request-id"]

    def look_up(self, request_id: str) -> httpx.Response:
        return self.client.get(f"/api/requests/{request_id}", headers={"Authorization": f"Bearer {ADMIN}"})

    def listed(self, tag: str) -> list[dict[str, Any]]:
        answer = self.client.get(
            "/api/requests", params={"test_tag": tag}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
        rows: list[dict[str, Any]] = answer.json()["requests"]
        return rows


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_request_is_found_by_its_id_and_listed_as_soon_as_its_answer_came(backend: str, tmp_path: Path) -> None:
    """A script reading the X-Capigate-Request-Id of an answer got a 404 "no request with id":
    the entry waited in the journal's buffer for the next flush, 50 ms (a trial)."""
    tag = f"now-{uuid.uuid4().hex[:8]}"
    with served_on(backend, tmp_path / "gw", "capigate_found_now") as (server, _), Caller(server, tag) as caller:
        for body in (batch(purchase()), batch(page_view(name="no_such_event"))) * 3:  # stored, refused
            request_id = caller.ingest(body)
            found = caller.look_up(request_id)
            assert found.status_code == 200, found.text
            assert found.json()["request_id"] == request_id
        last = caller.ingest(batch(page_view()))
        listed = caller.listed(tag)
        assert [r["request_id"] for r in listed][:1] == [last]
        assert [r["status"] for r in reversed(listed)] == [200, *[200, 400] * 3, 200]


def test_with_two_workers_a_request_is_found_at_once_whichever_worker_answers_the_look_up(tmp_path: Path) -> None:
    """The entry may wait in the other worker's buffer: the look-up waits for its flush."""
    server = make_server(tmp_path / "gw", CAPIGATE_WORKERS="2")
    server.start()
    tag = f"two-{uuid.uuid4().hex[:8]}"
    callers: list[Caller] = []
    try:
        while len({c.node for c in callers}) < 2:  # the kernel may give one worker many in a row
            assert len(callers) < 64, "one worker took every connection: nothing to look up across workers"
            callers.append(Caller(server, tag))
        pairs = [(a, b) for a in callers for b in callers if a.node != b.node]
        for ingester, reader in pairs[:12]:
            request_id = ingester.ingest(batch(page_view()))
            found = reader.look_up(request_id)
            assert found.status_code == 200, found.text
    finally:
        for caller in callers:
            caller.client.close()
        server.stop()
