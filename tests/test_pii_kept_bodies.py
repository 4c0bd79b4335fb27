"""Rule (capigate/kept.py): the body of a refused or silently dropped request is kept as ingest
would have kept it, on either backend: what ingest drops is ``<dropped: personal data>``, what
it hashes is its hash, never plain, in the page's answer or in the store's tables."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from capigate.kept import DROPPED
from tests.conftest import Server, served_on
from tests.helpers import all_pages, batch, purchase
from tests.storekit import store_as_text


@pytest.fixture(params=["sqlite", "postgresql"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, str | None]]:
    with served_on(request.param, tmp_path / "gw", "capigate_pii_kept") as served:
        yield served


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _stored_text(server: Server, schema: str | None) -> dict[str, str]:
    """Every table of the store as text (the server stopped first: its writes flushed)."""
    server.stop()
    return store_as_text(str(server.db), schema)


def _kept_bodies(server: Server) -> dict[str, Any]:
    """The kept body of each journaled request with one, by its event name as kept."""
    time.sleep(0.2)  # the journal is written a few milliseconds after the answer
    out = {}
    with server.admin() as c:
        for row in all_pages(server, "/api/requests", "requests"):
            body = c.get(f"/api/requests/{row['request_id']}").json()["body"]
            if isinstance(body, dict):
                out[str(body.get("eventName"))] = body
    return out


def _post_appsflyer(server: Server, app: str, key: str, body: dict[str, Any]) -> Any:
    with server.client(headers={"authentication": key, "Accept": "application/json"}) as c:
        return c.post(f"/inappevent/{app}", content=json.dumps(body).encode())


def test_a_phone_in_customer_user_id_of_a_refused_or_dropped_appsflyer_body_is_dropped(
    gateway: tuple[Server, str | None],
) -> None:
    """A trial: refused (a bad currency, or an email address as eventName) or silently dropped
    (an iOS app id without ``id``), the kept body held customer_user_id's phone number plain,
    while the answer's pii_in_customer_user_id said it was never stored. The kept body drops it
    as ingest does; an id of digits alone stays, as ingest keeps it."""
    server, schema = gateway
    base = {"appsflyer_id": "1415211453000-6513711", "eventValue": "", "os": "14"}
    sent = [
        ("com.example.shop", "af-dev-key", {**base, "eventName": "af_currency", "eventCurrency": "dollars",
                                            "customer_user_id": "+44 20 7946 0991"}),
        ("com.example.shop", "af-dev-key", {**base, "eventName": "jane.kept@example.com",
                                            "customer_user_id": "+1 650 555 1357"}),
        ("123456789", "af-ios-key", {**base, "eventName": "af_ios", "customer_user_id": "+1 650 555 1358"}),
        ("com.example.shop", "af-dev-key", {**base, "eventName": "af_digits", "eventCurrency": "dollars",
                                            "customer_user_id": "16505551359"}),
    ]  # fmt: skip
    for app, key, body in sent:
        answer = _post_appsflyer(server, app, key, body)
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 400:  # the rules ran: their warning says it was never stored
            warned = {w["path"]: w["code"] for w in answer.json()["warnings"]}
            plus = str(body["customer_user_id"]).startswith("+")
            assert (warned.get("customer_user_id") == "pii_in_customer_user_id") is plus, warned
    kept = _kept_bodies(server)
    assert kept["af_currency"]["customer_user_id"] == DROPPED
    assert kept[DROPPED]["customer_user_id"] == DROPPED  # its name, an email address, dropped too
    assert kept["af_ios"]["customer_user_id"] == DROPPED
    assert kept["af_digits"]["customer_user_id"] == "16505551359"
    for where, text in _stored_text(server, schema).items():
        for needle in ("7946 0991", "447946", "555 1357", "555 1358", "jane.kept"):
            assert needle not in text, f"{needle!r} found in {where}"


def test_a_phone_number_in_an_identifier_of_a_refused_axon_body_is_hashed_or_dropped_as_at_ingest(
    gateway: tuple[Server, str | None],
) -> None:
    """A trial: a refused batch kept zip "+16505551379" and data.user_id plain. A phone number
    in international form in user_id, client_id or data.user_id is kept hashed, as phone is and
    as ingest keeps it; in zip it is dropped, as ingest drops it."""
    server, schema = gateway
    event = purchase()
    event["data"] = {**event["data"], "currency": "ZZZ", "transaction_id": "T-kept-phones", "user_id": "+16505551391"}
    event["user_data"] = {
        **event["user_data"], "user_id": "+1 650 555 1392", "client_id": "+16505551393", "zip": "+16505551379",
    }  # fmt: skip
    with server.client(headers={"Authorization": "key-std"}) as c:
        assert c.post("/v1/event?pixel_id=px_std", json=batch(event)).status_code == 400
    time.sleep(0.2)  # the journal is written a few milliseconds after the answer
    with server.admin() as c:
        (found,) = c.get("/api/requests", params={"transaction_id": "T-kept-phones"}).json()["requests"]
        kept = c.get(f"/api/requests/{found['request_id']}").json()["body"]["events"][0]
    user = kept["user_data"]
    assert (user["user_id"], user["client_id"], user["zip"]) == (sha256("16505551392"), sha256("16505551393"), DROPPED)
    assert kept["data"]["user_id"] == sha256("16505551391")
    for where, text in _stored_text(server, schema).items():
        for needle in ("6505551391", "555 1392", "6505551393", "6505551379"):
            assert needle not in text, f"{needle!r} found in {where}"


def _post_axon(server: Server, body: Any) -> Any:
    with server.client(headers={"Authorization": "key-std"}) as c:
        return c.post("/v1/event?pixel_id=px_std", content=json.dumps(body).encode())


def test_a_phone_number_under_an_identifier_key_of_a_body_of_any_shape_is_never_kept_plain(
    gateway: tuple[Server, str | None],
) -> None:
    """A trial: refused bodies whose shape is wrong (a misspelt or non-list events, the user
    data beside the events, user_data or data as a list, an id wrapped in a list or object, an
    AppsFlyer body that is an array or whose customer_user_id is a list or object) kept a phone
    number plain: the shape-aware treatment never reached it. A phone number under an identifier
    key (user_id, client_id, zip, customer_user_id), at any depth and inside a list or object
    there, is kept as the refused-body rules keep it: hashed in user_id and client_id, dropped
    from zip and customer_user_id."""
    server, schema = gateway
    axon = [
        {"evnts": [{"name": "purchase", "user_data": {"user_id": "+44 20 7946 0601"}}]},
        {"events": {"name": "purchase", "user_data": {"user_id": "+44 20 7946 0602"}}},
        {"events": [], "user_data": {"user_id": "+44 20 7946 0603"}},
        {"events": [{"name": "purchase", "user_data": [{"user_id": "+44 20 7946 0604"}]}]},
        {"events": [{"name": "purchase", "data": [{"user_id": "+44 20 7946 0605"}]}]},
        {"events": [{"name": "purchase", "user_data": {"user_id": ["+44 20 7946 0606"]}}]},
        {"events": [{"name": "purchase", "user_data": {"client_id": {"v": "+44 20 7946 0607"}}}]},
        {"events": [{"name": "purchase", "user_data": {"zip": ["+44 20 7946 0608"]}}]},
    ]
    for body in axon:
        assert _post_axon(server, body).status_code == 400
    base = {"appsflyer_id": "1415211453000-6513711", "eventValue": "", "os": "14"}
    appsflyer = [
        {**base, "eventName": "af_list", "customer_user_id": ["+44 20 7946 0301"]},
        {**base, "eventName": "af_object", "customer_user_id": {"id": "+44 20 7946 0302"}},
        [{**base, "eventName": "af_array", "customer_user_id": "+44 20 7946 0303"}],
    ]
    for body in appsflyer:
        assert _post_appsflyer(server, "com.example.shop", "af-dev-key", body).status_code == 400  # type: ignore[arg-type]
    time.sleep(0.2)  # the journal is written a few milliseconds after the answer
    with server.admin() as c:
        kept = " ".join(
            json.dumps(c.get(f"/api/requests/{row['request_id']}").json()["body"])
            for row in all_pages(server, "/api/requests", "requests")
        )
    assert sha256("442079460601") in kept and sha256("442079460607") in kept  # hashed, as ingest hashes user_id
    for where, text in {"kept bodies": kept, **_stored_text(server, schema)}.items():
        for needle in ("7946 06", "7946 03", "79460"):
            assert needle not in text, f"{needle!r} found in {where}"


def test_a_phone_number_as_an_appsflyer_event_name_is_refused_as_an_email_address_is(
    gateway: tuple[Server, str | None],
) -> None:
    """A trial: an eventName of "+44 20 7946 0506" was stored plain (as the event's name, a
    journal key, in the stats), answered 200 with no warning, where an email address there is
    refused (``plain_pii``: the name cannot be dropped). A phone number in international form
    (identity.is_international_phone) is refused the same way, and its kept body holds DROPPED
    in its place."""
    server, schema = gateway
    base = {"appsflyer_id": "1415211453000-6513711", "eventValue": "", "os": "14"}
    for name in ("+44 20 7946 0506", "\uff0b44 20 7946 0507"):
        answer = _post_appsflyer(server, "com.example.shop", "af-dev-key", {**base, "eventName": name})
        assert answer.status_code == 400, answer.text
        assert {(p["path"], p["code"]) for p in answer.json()["problems"]} == {("eventName", "plain_pii")}
    kept = _kept_bodies(server)
    assert list(kept) == [DROPPED], kept
    for where, text in _stored_text(server, schema).items():
        for needle in ("7946 050", "79460506", "79460507"):
            assert needle not in text, f"{needle!r} found in {where}"
