"""An event must pass the gateway's own rules after its personal data is treated: a value
dropped as an email address or a phone number from a field the event needs (an item's
item_id, the only identifier of user_data) refuses it with ``plain_pii`` at that path, as
data.transaction_id is refused, instead of a 200 for an event AppLovin then refuses (a
re-trial: each was acknowledged, then dead-lettered)."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Server
from tests.helpers import batch, page_view, paths, purchase
from tests.test_pii import _found_nowhere


def post(server: Server, *events: dict[str, Any], pixel: str = "px_std", key: str = "key-std") -> dict[str, Any]:
    with server.client() as c:
        r = c.post(f"/v1/event?pixel_id={pixel}", json=batch(*events), headers={"Authorization": key})
    return {**r.json(), "status": r.status_code}


def _purchase_with_item_id(item_id: str) -> dict[str, Any]:
    event = purchase()
    event["data"]["items"][0]["item_id"] = item_id
    return event


def test_an_items_item_id_holding_a_phone_number_or_an_email_address_refuses_the_event(fresh_server: Server) -> None:
    """Never stored either: the journal keeps the refused body with the value dropped."""
    for item_id in ("0014155550801", "+44 20 7946 0718", "jane@example.com"):
        body = post(fresh_server, _purchase_with_item_id(item_id))
        assert body["status"] == 400, (item_id, body)
        assert paths(body)["events[0].data.items[0].item_id"] == "plain_pii", (item_id, body)
        assert "events[0].data.items[0].item_id" not in paths(body, "warnings"), body
        assert item_id not in json.dumps(body)
    without = purchase()
    del without["data"]["items"][0]["item_id"]
    assert post(fresh_server, without)["status"] == 400  # the rule it would have broken
    _found_nowhere(fresh_server, ("4155550801", "7946 0718", "jane@example.com"))


def test_the_only_identifier_holding_a_phone_number_refuses_the_event(fresh_server: Server) -> None:
    event = page_view()
    del event["user_data"]["client_id"]
    event["user_data"]["aleid"] = "+14155551002"
    body = post(fresh_server, event)
    assert body["status"] == 400, body
    assert paths(body)["events[0].user_data.aleid"] == "plain_pii", body
    assert "missing_identifier" not in paths(body).values(), body
    restricted = page_view()
    restricted["user_data"] = {k: v for k, v in restricted["user_data"].items() if k != "client_id"}
    restricted["user_data"]["alart"] = "+14155551003"
    body = post(fresh_server, restricted, pixel="px_restricted", key="key-restricted")
    assert body["status"] == 400, body
    assert paths(body)["events[0].user_data.alart"] == "plain_pii", body


def test_an_identifier_dropped_beside_another_still_leaves_the_event_accepted(fresh_server: Server) -> None:
    """The other side: dropped where the event does not need it, the value is dropped and said so."""
    event = page_view()
    event["user_data"]["aleid"] = "+14155551004"  # client_id is still there
    item = _purchase_with_item_id("sku-1")
    item["data"]["items"][0]["item_brand"] = "jane@example.com"
    body = post(fresh_server, event, item)
    assert body["status"] == 200, body
    warned = paths(body, "warnings")
    assert warned["events[0].user_data.aleid"] == warned["events[1].data.items[0].item_brand"] == "plain_pii_dropped"


def test_a_refused_events_required_field_holding_one_is_said_a_problem_not_dropped(fresh_server: Server) -> None:
    event = _purchase_with_item_id("+14155550802")
    event["user_data"]["esi"] = "tv"
    body = post(fresh_server, event)
    assert body["status"] == 400, body
    assert paths(body)["events[0].data.items[0].item_id"] == "plain_pii", body
    assert "events[0].data.items[0].item_id" not in paths(body, "warnings"), body


def test_appsflyers_required_fields_holding_one_are_refused_not_dropped(fresh_server: Server) -> None:
    """AppsFlyer's required fields: eventName refuses one (plain_pii), appsflyer_id's format
    does, and eventValue is an object; nothing the event needs is dropped into a 200."""
    from tests.test_appsflyer_api import event as af_event
    from tests.test_appsflyer_api import post as af_post

    for key, value in (("appsflyer_id", "+14155551201"), ("eventName", "+14155551202"), ("eventName", "j@x.com")):
        r = af_post(fresh_server, af_event(**{key: value}), headers={"accept": "application/json"})
        assert r.status_code == 400, (key, r.text)
        assert key in paths(r.json()), (key, r.text)


def test_a_phone_number_as_a_key_is_dropped_as_an_email_address_as_a_key_is(fresh_server: Server) -> None:
    """A re-trial: a phone number used as a JSON key was stored plain on both APIs, where an
    email-shaped key is dropped. It is dropped with plain_pii_dropped, its path masked."""
    from tests.test_appsflyer_api import event as af_event
    from tests.test_appsflyer_api import post as af_post

    axon = page_view(data={"extra": {"+14155550152": "x", "jane152@example.com": "y", "keep": 1}})
    body = post(fresh_server, axon)
    assert body["status"] == 200, body
    warned = paths(body, "warnings")
    assert warned["events[0].data.extra.<phone number>"] == "plain_pii_dropped", body
    assert warned["events[0].data.extra.<email address>"] == "plain_pii_dropped", body
    assert "4155550152" not in json.dumps(body)
    af = af_event(
        eventValue=json.dumps({"af_revenue": "6", "+14155550209": "key"}), custom_data=json.dumps({"+14155550220": 1})
    )
    r = af_post(fresh_server, af, headers={"accept": "application/json"})
    assert r.status_code == 200, r.text
    warned = paths(r.json(), "warnings")
    assert warned["eventValue.<phone number>"] == warned["custom_data.<phone number>"] == "plain_pii_dropped", r.text
    assert "41555502" not in r.text
    _found_nowhere(fresh_server, ("4155550152", "4155550209", "4155550220", "jane152"))


def test_a_refused_events_user_data_look_alikes_are_said_hashed_not_dropped(fresh_server: Server) -> None:
    """A re-trial: a refused batch's user_data em (ph, email_address, phone_number) was warned
    plain_pii_dropped, while the kept body holds it hashed and an accepted event says
    plain_pii_hashed; a list em got both. They are hashed, and only that is said."""
    looks = {
        "em": "jane@example.com",
        "ph": "+14155550301",
        "email_address": "jane2@example.com",
        "phone_number": "+14155550302",
    }
    for key, value in [*looks.items(), ("em", ["a@x.com", "b@x.com"])]:
        event = page_view()
        event["user_data"] |= {key: value, "esi": "tv"}
        body = post(fresh_server, event)
        assert body["status"] == 400, body
        warned = {(w["path"], w["code"]) for w in body["warnings"]}
        assert (f"events[0].user_data.{key}", "plain_pii_hashed") in warned, (key, body)
        assert not [w for w in warned if w[1] == "plain_pii_dropped"], (key, body)


def test_a_refused_events_dropped_value_is_not_said_stored_and_relayed(fresh_server: Server) -> None:
    """A re-trial: a refused AppsFlyer event's warning said its eventValue "is stored and
    relayed without it"; nothing of a refused event is stored or relayed, on either API."""
    from tests.test_appsflyer_api import event as af_event
    from tests.test_appsflyer_api import post as af_post

    af = af_event(eventCurrency="XX", eventValue=json.dumps({"af_revenue": "6", "af_order_id": "+14155551200"}))
    r = af_post(fresh_server, af, headers={"accept": "application/json"})
    assert r.status_code == 400, r.text
    dropped = [w for w in r.json()["warnings"] if w["code"] == "plain_pii_dropped"]
    assert [w["path"] for w in dropped] == ["eventValue.af_order_id"], r.text
    assert "stored and relayed" not in dropped[0]["message"] and "refused" in dropped[0]["message"], r.text
    event = page_view(customer_email="Jane Quimby")  # dropped by its key
    event["user_data"]["esi"] = "tv"
    body = post(fresh_server, event)
    assert body["status"] == 400, body
    dropped = [w for w in body["warnings"] if w["code"] == "plain_pii_dropped"]
    assert [w["path"] for w in dropped] == ["events[0].customer_email"], body
    assert "stored and relayed" not in dropped[0]["message"] and "refused" in dropped[0]["message"], body
    accepted = post(fresh_server, page_view(customer_email="Jane Quimby"))
    dropped = [w for w in accepted["warnings"] if w["code"] == "plain_pii_dropped"]
    assert "the event is stored and relayed without it" in dropped[0]["message"], accepted


def test_a_00_phone_number_after_tel_sms_or_a_space_is_dropped_on_the_typed_path_too(fresh_server: Server) -> None:
    """A re-trial: "tel:00…", "sms:00…" and " 00…" in sid, aleid, ifa and search_term were
    stored plain by the typed fast path (its gate read "00" as the first characters only),
    where the slow path drops them. Each is dropped, plain_pii_dropped at its path."""
    forms = {"sid": "tel:0044 20 7946 0771", "aleid": "sms:0044 20 7946 0772", "ifa": " 0044 20 7946 0773"}
    for key, value in forms.items():
        event = page_view()
        event["user_data"][key] = value
        body = post(fresh_server, event)
        assert body["status"] == 200, body
        assert paths(body, "warnings")[f"events[0].user_data.{key}"] == "plain_pii_dropped", (key, body)
    search = page_view(name="search", data={"search_term": "TEL:0044 20 7946 0774"})
    body = post(fresh_server, search)
    assert paths(body, "warnings")["events[0].data.search_term"] == "plain_pii_dropped", body
    _found_nowhere(fresh_server, ("7946 077",))
