"""The Axon validation rules of NOTES.md, each checked through a real server."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.conftest import Server, example
from tests.helpers import batch, now_ms, page_view, paths, purchase

KEYS = {"px_std": "key-std", "px_lead": "key-lead", "px_restricted": "key-restricted"}


def post(server: Server, *events: dict[str, Any], pixel: str = "px_std") -> httpx.Response:
    with server.client() as c:
        return c.post(f"/v1/event?pixel_id={pixel}", json=batch(*events), headers={"Authorization": KEYS[pixel]})


def problems(server: Server, *events: dict[str, Any], pixel: str = "px_std") -> dict[str, str]:
    r = post(server, *events, pixel=pixel)
    assert r.status_code == 400, r.text
    return paths(r.json())


def warnings(server: Server, *events: dict[str, Any], pixel: str = "px_std") -> dict[str, str]:
    r = post(server, *events, pixel=pixel)
    assert r.status_code == 200, r.text
    return paths(r.json(), "warnings")


def items_event(name: str, **data: Any) -> dict[str, Any]:
    item = {
        "item_id": "sku-1",
        "item_name": "Shoe",
        "item_variant_id": "v1",
        "price": 10,
        "image_url": "https://x.example/i.png",
        "item_category_id": 187,
        "quantity": 2,
    }
    return purchase(name=name, data={"items": [item], "currency": "USD", "value": 20, **data})


# --- standard events and their data ------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["view_item", "add_to_cart", "remove_from_cart", "view_cart", "begin_checkout", "add_payment_info", "purchase"],
)
def test_item_events_accept_their_documented_data(server: Server, name: str) -> None:
    extra = {"transaction_id": "t1", "shipping": 1, "tax": 1, "user_id": "u"} if name == "purchase" else {}
    if name == "add_payment_info":
        extra = {"payment_type": "wallet"}
    assert post(server, items_event(name, **extra)).status_code == 200


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("generate_lead", {"currency": "EUR", "value": 0}),
        ("search", {"search_term": "shoes", "results": [{"item_id": "a"}]}),
        ("sign_up", {"method": "google"}),
        ("login", {}),
        ("subscribe", {"currency": "USD", "value": 5}),
        ("page_view", {"user_id": "u1"}),
        ("page_view", None),
        ("app_open", None),
    ],
)
def test_other_standard_events_accept_their_documented_data(server: Server, name: str, data: Any) -> None:
    assert post(server, purchase(name=name, data=data)).status_code == 200


def test_purchase_requires_currency_items_transaction_id_and_value(server: Server) -> None:
    assert problems(server, purchase(data={})) == {
        "events[0].data.currency": "missing_field",
        "events[0].data.items": "missing_field",
        "events[0].data.transaction_id": "missing_field",
        "events[0].data.value": "missing_field",
    }


def test_begin_checkout_requires_currency_and_value(server: Server) -> None:
    event = items_event("begin_checkout")
    del event["data"]["currency"], event["data"]["value"]
    assert problems(server, event) == {
        "events[0].data.currency": "missing_field",
        "events[0].data.value": "missing_field",
    }


def test_view_item_requires_items(server: Server) -> None:
    assert problems(server, purchase(name="view_item", data={"currency": "USD"})) == {
        "events[0].data.items": "missing_field"
    }


def test_generate_lead_value_is_a_number_at_least_zero(server: Server) -> None:
    assert problems(server, purchase(name="generate_lead", data={"currency": "USD", "value": -1})) == {
        "events[0].data.value": "out_of_range"
    }


def test_add_payment_info_payment_type_is_an_enum(server: Server) -> None:
    event = items_event("add_payment_info", payment_type="cheque")
    assert problems(server, event) == {"events[0].data.payment_type": "invalid_enum"}


def test_currency_must_be_iso_4217(server: Server) -> None:
    assert problems(server, items_event("view_item", currency="XYZ")) == {"events[0].data.currency": "unknown_currency"}
    assert problems(server, items_event("view_item", currency="US")) == {"events[0].data.currency": "invalid_format"}


def test_item_requires_item_id(server: Server) -> None:
    event = items_event("view_item")
    del event["data"]["items"][0]["item_id"]
    assert problems(server, event) == {"events[0].data.items[0].item_id": "missing_field"}


@pytest.mark.parametrize("name", ["add_to_cart", "remove_from_cart", "purchase"])
def test_item_quantity_is_required_for_cart_and_purchase_events(server: Server, name: str) -> None:
    extra = {"transaction_id": "t1"} if name == "purchase" else {}
    event = items_event(name, **extra)
    del event["data"]["items"][0]["quantity"]
    assert problems(server, event)["events[0].data.items[0].quantity"] == "missing_field"


def test_item_category_id_is_an_integer_or_numeric_string(server: Server) -> None:
    event = items_event("view_item")
    event["data"]["items"][0]["item_category_id"] = "604"
    assert post(server, event).status_code == 200
    event = items_event("view_item")
    event["data"]["items"][0]["item_category_id"] = "shoes"
    assert problems(server, event) == {"events[0].data.items[0].item_category_id": "invalid_format"}


def test_value_not_matching_price_times_quantity_is_a_warning(server: Server) -> None:
    found = warnings(server, items_event("view_item", value=99))
    assert found["events[0].data.value"] == "value_mismatch"


def test_null_price_or_quantity_skips_the_value_check_instead_of_failing(server: Server) -> None:
    event = purchase()
    event["data"]["items"][0].update(price=None, quantity=None)
    response = post(server, event)
    assert response.status_code == 200, response.text
    assert "events[0].data.value" not in {w["path"] for w in response.json()["warnings"]}


def test_an_ip_with_a_nul_character_is_an_invalid_ip_not_a_server_error(server: Server) -> None:
    event = purchase()
    event["user_data"]["client_ip_address"] = "198.51.100.1\u0000"
    assert problems(server, event)["events[0].user_data.client_ip_address"] == "invalid_ip"


def test_missing_recommended_fields_are_warnings(server: Server) -> None:
    event = purchase(
        data={"currency": "USD", "value": 1, "transaction_id": "t", "items": [{"item_id": "a", "quantity": 1}]}
    )
    found = warnings(server, event)
    assert found["events[0].data.shipping"] == "missing_recommended"
    assert found["events[0].data.items[0]"] == "missing_recommended"


def test_app_open_sends_null_data(server: Server) -> None:
    assert problems(server, purchase(name="app_open", data={"x": 1})) == {"events[0].data": "data_must_be_null"}


def test_unknown_event_name_is_refused_with_did_you_mean(server: Server) -> None:
    r = post(server, purchase(name="purchse"))
    assert paths(r.json()) == {"events[0].name": "unknown_event"}
    assert "'purchase'" in r.json()["problems"][0]["message"]


def test_event_requires_name_time_url_user_data_and_data(server: Server) -> None:
    assert problems(server, {}) == {
        "events[0].name": "missing_field",
        "events[0].event_time": "missing_field",
        "events[0].event_source_url": "missing_field",
        "events[0].user_data": "missing_field",
        "events[0].data": "missing_field",
    }


def test_event_that_is_not_an_object_is_refused(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/event?pixel_id=px_std", json={"events": [1]}, headers={"Authorization": "key-std"})
    assert paths(r.json()) == {"events[0]": "not_an_object"}


def test_event_source_url_must_be_absolute(server: Server) -> None:
    assert problems(server, page_view(event_source_url="/cart")) == {"events[0].event_source_url": "invalid_url"}


# --- event_time --------------------------------------------------------------------------


def test_event_time_in_seconds_is_a_warning(server: Server) -> None:
    assert warnings(server, page_view(event_time=now_ms() // 1000))["events[0].event_time"] == "time_in_seconds"


def test_event_time_years_away_is_a_warning(server: Server) -> None:
    assert (
        warnings(server, page_view(event_time=now_ms() - 3 * 365 * 86_400_000))["events[0].event_time"]
        == "time_far_away"
    )


def test_event_time_must_be_a_non_negative_integer(server: Server) -> None:
    assert problems(server, page_view(event_time=-5)) == {"events[0].event_time": "out_of_range"}
    assert problems(server, page_view(event_time=1.5)) == {"events[0].event_time": "wrong_type"}


# --- user_data -----------------------------------------------------------------------------


def test_user_data_requires_ip_user_agent_and_esi(server: Server) -> None:
    event = page_view(user_data={"client_id": "c"})
    assert problems(server, event) == {
        "events[0].user_data.client_ip_address": "missing_field",
        "events[0].user_data.client_user_agent": "missing_field",
        "events[0].user_data.esi": "missing_field",
    }


def test_user_data_needs_at_least_one_identifier(server: Server) -> None:
    event = page_view()
    del event["user_data"]["client_id"]
    assert problems(server, event) == {"events[0].user_data": "missing_identifier"}


@pytest.mark.parametrize("identifier", ["aleid", "axwrt", "alart", "client_id", "user_id", "email", "phone"])
def test_each_identifier_alone_is_enough(server: Server, identifier: str) -> None:
    event = page_view()
    del event["user_data"]["client_id"]
    event["user_data"][identifier] = {"email": "a@b.co", "phone": "+14155550123"}.get(identifier, "v")
    assert post(server, event).status_code == 200


def test_esi_is_web_or_app(server: Server) -> None:
    event = page_view()
    event["user_data"]["esi"] = "server"
    assert problems(server, event) == {"events[0].user_data.esi": "invalid_enum"}


def test_client_ip_address_accepts_ipv4_and_ipv6(server: Server) -> None:
    for ip in ("198.51.100.1", "2001:db8::1"):
        event = page_view()
        event["user_data"]["client_ip_address"] = ip
        assert post(server, event).status_code == 200


def test_unknown_os_is_a_warning_known_os_is_not(server: Server) -> None:
    event = page_view()
    event["user_data"]["os"] = "macos"
    assert warnings(server, event)["events[0].user_data.os"] == "unknown_enum"
    event = page_view()
    event["user_data"]["os"] = "ios"
    assert "events[0].user_data.os" not in warnings(server, event)


def test_country_code_must_be_iso_3166_alpha_2(server: Server) -> None:
    event = page_view()
    event["user_data"]["country_code"] = "ZZ"
    assert problems(server, event) == {"events[0].user_data.country_code": "unknown_country"}


def test_us_zip_is_cut_to_five_digits(
    server: Server,
) -> None:
    event = page_view()
    event["user_data"].update(country_code="us", zip="94105-1234")
    assert post(server, event).status_code == 200
    with server.admin() as c:
        rows = c.get("/api/events", params={"source": "px_std", "limit": 100}).json()["events"]
    row = next(e for e in rows if e["dedupe_id"] == event["dedupe_id"])
    assert row["payload"]["user_data"]["zip"] == "94105"
    assert row["payload"]["user_data"]["country_code"] == "US"


# --- measurement_partner_data ----------------------------------------------------------------


def test_measurement_partner_data_requires_its_four_fields(server: Server) -> None:
    event = page_view(measurement_partner_data={"campaign_id": "1"})
    assert problems(server, event) == {
        "events[0].measurement_partner_data.accounting_mode": "missing_field",
        "events[0].measurement_partner_data.attribution_model": "missing_field",
        "events[0].measurement_partner_data.attribution_share": "missing_field",
        "events[0].measurement_partner_data.is_claimable": "missing_field",
    }


def test_measurement_partner_data_enums_and_share_range(server: Server) -> None:
    mpd = copy.deepcopy(example("axon_purchase.json")["events"][0]["measurement_partner_data"])
    mpd.update(accounting_mode="CREDIT", attribution_model="LAST_TOUCH", attribution_share=1.5)
    assert problems(server, page_view(measurement_partner_data=mpd)) == {
        "events[0].measurement_partner_data.accounting_mode": "invalid_enum",
        "events[0].measurement_partner_data.attribution_model": "invalid_enum",
        "events[0].measurement_partner_data.attribution_share": "out_of_range",
    }


def test_measurement_timestamps_allow_null(server: Server) -> None:
    mpd = copy.deepcopy(example("axon_purchase.json")["events"][0]["measurement_partner_data"])
    mpd["first_visit_ts"] = None
    assert post(server, page_view(measurement_partner_data=mpd)).status_code == 200


# --- unknown fields ---------------------------------------------------------------------------


def test_unknown_field_is_kept_with_a_did_you_mean_warning_under_standard(server: Server) -> None:
    event = page_view(dedup_id="x", event_url="https://e.example/")
    r = post(server, event)
    assert r.status_code == 200
    found = {w["path"]: w["message"] for w in r.json()["warnings"]}
    assert "'dedupe_id'" in found["events[0].dedup_id"]
    assert "'event_source_url'" in found["events[0].event_url"]


# --- profiles ------------------------------------------------------------------------------------


def test_lead_gen_spec_examples_are_accepted(server: Server) -> None:
    for name in ("lead_gen_page_view.json", "lead_gen_generate_lead.json"):
        with server.client() as c:
            r = c.post("/v1/event?pixel_id=px_lead", json=example(name), headers={"Authorization": "key-lead"})
        assert r.status_code == 200, (name, r.text)


def test_lead_gen_allows_only_page_view_generate_lead_app_open(server: Server) -> None:
    assert problems(server, purchase(), pixel="px_lead") == {"events[0].name": "unknown_event"}
    assert post(server, page_view(name="app_open"), pixel="px_lead").status_code == 200


def test_lead_gen_page_view_data_is_null(server: Server) -> None:
    assert problems(server, page_view(data={"user_id": "u"}), pixel="px_lead") == {
        "events[0].data": "data_must_be_null"
    }


def test_restricted_spec_examples_are_accepted(server: Server) -> None:
    for name in ("restricted_page_view.json", "restricted_generate_lead.json"):
        with server.client() as c:
            r = c.post(
                "/v1/event?pixel_id=px_restricted", json=example(name), headers={"Authorization": "key-restricted"}
            )
        assert r.status_code == 200, (name, r.text)


def restricted_lead(**user: Any) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(example("restricted_generate_lead.json")["events"][0])
    event["user_data"].update(user)
    return event


def test_restricted_refuses_email_phone_and_other_fields(server: Server) -> None:
    event = restricted_lead(email="a@b.co", phone="+14155550123", os="ios")
    assert problems(server, event, pixel="px_restricted") == {
        "events[0].user_data.email": "unknown_field",
        "events[0].user_data.phone": "unknown_field",
        "events[0].user_data.os": "unknown_field",
    }


def test_unknown_keys_are_reported_in_the_order_they_were_sent(server: Server) -> None:
    keys = ["zeta", "alpha", "mid", "beta", "omega", "gamma"]
    event = restricted_lead(**dict.fromkeys(keys, "x"))
    r = post(server, event, pixel="px_restricted")
    reported = [p["path"].rsplit(".", 1)[1] for p in r.json()["problems"] if p["code"] == "unknown_field"]
    assert reported == keys


def test_restricted_refuses_extra_keys_anywhere(server: Server) -> None:
    event = restricted_lead()
    event["custom"] = 1
    event["data"]["extra"] = 2
    found = problems(server, event, pixel="px_restricted")
    assert found == {"events[0].custom": "unknown_field", "events[0].data.extra": "unknown_field"}


def test_restricted_refuses_measurement_partner_data(server: Server) -> None:
    mpd = example("axon_purchase.json")["events"][0]["measurement_partner_data"]
    event = restricted_lead()
    event["measurement_partner_data"] = mpd
    assert problems(server, event, pixel="px_restricted")["events[0].measurement_partner_data"] == "unknown_field"


@pytest.mark.parametrize("url", ["https://applovin.com/signup", "https://applovin.com/?a=1", "https://applovin.com/#x"])
def test_restricted_event_source_url_is_scheme_and_host_only(server: Server, url: str) -> None:
    event = restricted_lead()
    event["event_source_url"] = url
    assert problems(server, event, pixel="px_restricted") == {"events[0].event_source_url": "url_not_origin"}


def test_restricted_user_id_is_numeric(server: Server) -> None:
    assert problems(server, restricted_lead(user_id="abc"), pixel="px_restricted") == {
        "events[0].user_data.user_id": "invalid_format"
    }


def test_restricted_needs_client_id_alart_or_user_id(server: Server) -> None:
    event = restricted_lead()
    for key in ("client_id", "user_id"):
        del event["user_data"][key]
    assert problems(server, event, pixel="px_restricted") == {"events[0].user_data": "missing_identifier"}


def test_restricted_allows_only_page_view_and_generate_lead(server: Server) -> None:
    event = restricted_lead()
    event["name"], event["data"] = "app_open", None
    assert problems(server, event, pixel="px_restricted") == {"events[0].name": "unknown_event"}
