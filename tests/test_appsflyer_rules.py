"""The AppsFlyer S2S in-app event rules, one test (or parametrised group) per rule."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import capigate.appsflyer as appsflyer
from capigate.appsflyer import (
    APPSFLYER_ID_MISSING,
    BAD_REQUEST,
    MAX_BODY_BYTES,
    OK,
    PARSE_FAILED,
    RESTAMPED_FIELD,
    InAppCheck,
    check_in_app_event,
    format_event_time,
    parse_event_time,
    rules,
    schema,
)
from capigate.appsflyer.upstream import upstream_body as appsflyer_body
from capigate.errors import Problem

FIXTURES = Path(__file__).parent / "fixtures" / "appsflyer"
IOS_APP = "id1440123456"
ANDROID_APP = "com.example.fitcoach"
NOW_MS = parse_event_time("2026-05-09 12:00:00.000")
UUID_UPPER = "3F1B9C2E-7A44-4D1E-9E0B-5C6A2D8F1B3C"
UUID_LOWER = "9c9a82fb-d5de-4cd1-90c3-527441c11828"
SHA_UPPER = hashlib.sha256(b"someone@example.com").hexdigest().upper()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def base(**fields: Any) -> dict[str, Any]:
    """A minimal valid event (os included, so no recommended_field_missing warning)."""
    event: dict[str, Any] = {
        "appsflyer_id": "1234567890123-1234567",
        "eventName": "af_login",
        "eventValue": "",
        "os": "17.4.1",
    }
    event.update(fields)
    return event


def check(
    event: dict[str, Any] | bytes,
    *,
    app_id: str = IOS_APP,
    received_at_ms: int = NOW_MS,
    dedupe_key: str | None = None,
) -> InAppCheck:
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    return check_in_app_event(body, app_id=app_id, received_at_ms=received_at_ms, dedupe_key=dedupe_key)


def codes(problems: list[Problem]) -> set[tuple[str, str]]:
    return {(p.path, p.code) for p in problems}


def payload(result: InAppCheck) -> dict[str, Any]:
    assert result.event is not None, result.problems
    decoded: dict[str, Any] = json.loads(result.event.payload)
    return decoded


def assert_refused(result: InAppCheck, path: str, code: str, text: str = BAD_REQUEST) -> None:
    assert (result.status, result.text) == (400, text), result.problems
    assert (path, code) in codes(result.problems), result.problems
    assert result.event is None


def assert_accepted(result: InAppCheck) -> None:
    assert (result.status, result.text, result.problems) == (200, OK, []), result.problems
    assert result.event is not None


# --- the body ------------------------------------------------------------------------------


def test_body_over_1024_bytes_counted_in_bytes_not_characters() -> None:
    event = base(customer_user_id="")
    filler = 1024 - len(json.dumps(event, ensure_ascii=False))
    event["customer_user_id"] = "é" * filler  # 2 bytes each in UTF-8
    text = json.dumps(event, ensure_ascii=False)
    assert len(text) <= 1024 < len(text.encode())
    assert_refused(check(text.encode()), "", "payload_too_large", PARSE_FAILED)


def test_body_of_exactly_1024_bytes_is_accepted() -> None:
    event = base(customer_user_id="")
    event["customer_user_id"] = "x" * (MAX_BODY_BYTES - len(json.dumps(event)))
    body = json.dumps(event).encode()
    assert len(body) == MAX_BODY_BYTES
    assert_accepted(check(body))


@pytest.mark.parametrize("body", [b"", b"  \r\n"])
def test_empty_body_fails_to_parse(body: bytes) -> None:
    assert_refused(check(body), "", "empty_body", PARSE_FAILED)


@pytest.mark.parametrize("body", [b"{", b'{"appsflyer_id": 5,', b"{'eventName': 'x'}", b'{"a": 1,}', b"\xff\xfe{}"])
def test_malformed_json_fails_to_parse(body: bytes) -> None:
    assert_refused(check(body), "", "malformed_json", PARSE_FAILED)


@pytest.mark.parametrize(
    ("start", "said"), [(b"\x1f\x8b", "Content-Encoding: gzip"), (b"\xef\xbb\xbf", "byte order mark")]
)
def test_a_gzip_or_bom_body_is_refused_saying_what_it_is(start: bytes, said: str) -> None:
    body = start + b'{"appsflyer_id": "1415211453000-6513711", "eventName": "af_purchase"}'
    result = check(body)
    assert_refused(result, "", "malformed_json", PARSE_FAILED)
    assert said in result.problems[0].message


@pytest.mark.parametrize("body", [b"[]", b'"OK"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_fails_to_parse(body: bytes) -> None:
    assert_refused(check(body), "", "not_an_object", PARSE_FAILED)


def test_array_body_is_told_to_send_one_event_per_request() -> None:
    result = check(json.dumps([base(), base()]).encode())
    assert "one event per request" in result.problems[0].message


# --- required fields and collecting every problem ------------------------------------------


@pytest.mark.parametrize("value", ["missing", None, ""])
def test_missing_appsflyer_id_answers_mandatory_field_text(value: str | None) -> None:
    event = base()
    if value == "missing":
        del event["appsflyer_id"]
    else:
        event["appsflyer_id"] = value
    assert_refused(check(event), "appsflyer_id", "missing_field", APPSFLYER_ID_MISSING)


def test_missing_appsflyer_id_wins_over_other_problems_but_all_are_reported() -> None:
    event = base(eventTime="yesterday", ip="::1")
    del event["appsflyer_id"]
    result = check(event)
    assert result.text == APPSFLYER_ID_MISSING
    assert {"appsflyer_id", "eventTime", "ip"} <= {p.path for p in result.problems}


@pytest.mark.parametrize("value", ["123-456", "12345678901234-1", "1234567890123-", 1234567890123])
def test_malformed_appsflyer_id_is_bad_request(value: object) -> None:
    result = check(base(appsflyer_id=value))
    assert (result.status, result.text) == (400, BAD_REQUEST)
    assert [p.path for p in result.problems] == ["appsflyer_id"]


@pytest.mark.parametrize("field", ["eventName", "eventValue"])
def test_missing_event_name_or_event_value_is_bad_request(field: str) -> None:
    event = base()
    del event[field]
    assert_refused(check(event), field, "missing_field")


def test_blank_event_name_is_bad_request() -> None:
    assert_refused(check(base(eventName="")), "eventName", "invalid_length")
    assert_refused(check(base(eventName="   ")), "eventName", "blank_event_name")


def test_every_problem_is_collected_not_just_the_first() -> None:
    event = base(
        eventValue='{"af_revenue": "$5", "af_quantity": "two"}',
        eventCurrency="XYZ",
        eventTime="2026-13-01 00:00:00.000",
        ip="10.0.0",
        idfa="not-a-uuid",
        att=4,
        aie="yes",
        sharing_filter=[],
        app_type="clip",
        fb_login_id="fb-1",
        email_hashed="nobody",
        consent_data={"tcf": {"gdpr_applies": 2}},
        app_set_id={"scope": 3, "id": "x"},
    )
    result = check(event)
    assert result.text == BAD_REQUEST
    assert {p.path for p in result.problems} == {
        "eventValue.af_revenue",
        "eventValue.af_quantity",
        "eventCurrency",
        "eventTime",
        "ip",
        "idfa",
        "att",
        "aie",
        "sharing_filter",
        "app_type",
        "fb_login_id",
        "email_hashed",
        "consent_data.tcf.gdpr_applies",
        "app_set_id.scope",
        "app_set_id.id",
    }


def test_wrong_type_is_reported_with_its_path() -> None:
    result = check(base(eventName=5, customer_user_id=["a"]))
    assert codes(result.problems) == {
        ("eventName", "wrong_type"),
        ("customer_user_id", "wrong_type"),
    }


# --- eventValue ----------------------------------------------------------------------------


def test_event_value_stringified_object_is_parsed_into_the_payload() -> None:
    result = check(base(eventValue='{"af_revenue": "6", "your_custom_attribute": "456.123"}'))
    assert_accepted(result)
    assert payload(result)["eventValue"] == {"af_revenue": "6", "your_custom_attribute": "456.123"}


def test_event_value_empty_string_means_no_value() -> None:
    result = check(base(eventValue=""))
    assert_accepted(result)
    assert payload(result)["eventValue"] == {}


def test_event_value_object_is_accepted_with_warning() -> None:
    result = check(base(eventValue={"af_content_id": "15854"}))
    assert_accepted(result)
    assert ("eventValue", "event_value_not_stringified") in codes(result.warnings)
    assert payload(result)["eventValue"] == {"af_content_id": "15854"}


@pytest.mark.parametrize("value", ["{af_revenue: 6}", "{", "af_revenue=6"])
def test_event_value_that_is_not_json_is_bad_request(value: str) -> None:
    assert_refused(check(base(eventValue=value)), "eventValue", "malformed_json")


@pytest.mark.parametrize("value", ["", " ", "  \t"])
def test_event_value_blank_is_no_value(value: str) -> None:
    # "" is documented; the dev hub's API reference tells clients to send " " for no value.
    result = check(base(eventValue=value))
    assert_accepted(result)
    assert payload(result)["eventValue"] == {}


@pytest.mark.parametrize("value", ["[1, 2]", "6", '"af_revenue"', "null"])
def test_event_value_json_that_is_not_an_object_is_bad_request(value: str) -> None:
    assert_refused(check(base(eventValue=value)), "eventValue", "not_an_object")


@pytest.mark.parametrize("value", [None, 6, ["a"]])
def test_event_value_of_another_type_is_bad_request(value: object) -> None:
    assert_refused(check(base(eventValue=value)), "eventValue", "wrong_type")


@pytest.mark.parametrize("revenue", ["6", "9.99", "-3.5", "0.5", ".5", 6, 6.25, -1])
def test_af_revenue_numeric_is_accepted(revenue: object) -> None:
    result = check(base(eventValue=json.dumps({"af_revenue": revenue}), eventCurrency="USD"))
    assert_accepted(result)


@pytest.mark.parametrize(
    "revenue", ["$9.99", "9,99", "1,000.00", "9.99 USD", " 9.99", "", "ten", "1e3", True, None, []]
)
def test_af_revenue_must_be_numeric(revenue: object) -> None:
    result = check(base(eventValue=json.dumps({"af_revenue": revenue}), eventCurrency="USD"))
    assert_refused(result, "eventValue.af_revenue", "not_numeric")


@pytest.mark.parametrize("currency", ["EUR", "JPY", "ZAR"])
def test_af_currency_iso_4217_is_accepted(currency: str) -> None:
    assert_accepted(check(base(eventValue=json.dumps({"af_currency": currency}))))


@pytest.mark.parametrize(
    ("currency", "code"),
    [("XYZ", "unknown_currency"), ("EURO", "invalid_currency"), (978, "invalid_currency")],
)
def test_af_currency_must_be_iso_4217(currency: object, code: str) -> None:
    result = check(base(eventValue=json.dumps({"af_currency": currency})))
    assert_refused(result, "eventValue.af_currency", code)


def test_af_currency_lower_case_is_upper_cased_with_warning() -> None:
    result = check(base(eventValue='{"af_currency": "eur"}'))
    assert_accepted(result)
    assert ("eventValue.af_currency", "currency_not_upper_case") in codes(result.warnings)
    assert payload(result)["eventValue"]["af_currency"] == "EUR"


@pytest.mark.parametrize("quantity", [2, "2", 0, [1, 2], ["1", 3]])
def test_af_quantity_integer_is_accepted(quantity: object) -> None:
    assert_accepted(check(base(eventValue=json.dumps({"af_quantity": quantity}))))


@pytest.mark.parametrize("quantity", [1.5, "1.5", "two", [], [1, "x"], True, None])
def test_af_quantity_must_be_an_integer(quantity: object) -> None:
    result = check(base(eventValue=json.dumps({"af_quantity": quantity})))
    assert_refused(result, "eventValue.af_quantity", "not_integer")


def test_af_price_not_numeric_is_only_a_warning() -> None:
    result = check(base(eventValue='{"af_price": "about 5"}'))
    assert_accepted(result)
    assert ("eventValue.af_price", "price_not_numeric") in codes(result.warnings)
    assert_accepted(check(base(eventValue='{"af_price": [5, "4.5"]}')))
    assert check(base(eventValue='{"af_price": [5, "4.5"]}')).warnings == []


def test_unknown_af_key_in_event_value_is_warned_with_did_you_mean() -> None:
    result = check(base(eventValue='{"af_revnue": "5", "af_orderid": "A1"}', eventCurrency="USD"))
    assert_accepted(result)
    messages = {p.path: p.message for p in result.warnings if p.code == "unknown_event_value_key"}
    assert "'af_revenue'" in messages["eventValue.af_revnue"]
    assert "'af_order_id'" in messages["eventValue.af_orderid"]


def test_reserved_and_custom_event_value_keys_are_not_warned() -> None:
    value = {"af_content_id": "1", "af_param_10": "x", "af_receipt_id": "r", "plan": "monthly"}
    result = check(base(eventValue=json.dumps(value)))
    assert_accepted(result)
    assert result.warnings == []


def test_revenue_without_currency_is_warned() -> None:
    result = check(base(eventValue='{"af_revenue": "5"}'))
    assert_accepted(result)
    assert ("eventCurrency", "revenue_without_currency") in codes(result.warnings)
    assert check(base(eventValue='{"af_revenue": "5", "af_currency": "USD"}')).warnings == []


# --- eventName, eventCurrency --------------------------------------------------------------


def test_af_prefixed_event_name_that_is_not_predefined_is_warned() -> None:
    result = check(base(eventName="af_purchse"))
    assert_accepted(result)
    warning = next(p for p in result.warnings if p.code == "unknown_event_name")
    assert "'af_purchase'" in warning.message
    assert check(base(eventName="renewal_web")).warnings == []


def test_event_currency_iso_4217_is_accepted() -> None:
    result = check(base(eventCurrency="ZAR"))
    assert_accepted(result)
    assert result.warnings == []


@pytest.mark.parametrize(
    ("currency", "code"),
    [("XYZ", "unknown_currency"), ("US", "invalid_format"), ("US1", "invalid_format")],
)
def test_event_currency_must_be_iso_4217(currency: str, code: str) -> None:
    assert_refused(check(base(eventCurrency=currency)), "eventCurrency", code)


def test_event_currency_lower_case_is_upper_cased_with_warning() -> None:
    result = check(base(eventCurrency="usd"))
    assert_accepted(result)
    assert ("eventCurrency", "currency_not_upper_case") in codes(result.warnings)
    assert payload(result)["eventCurrency"] == "USD"


def test_withdrawn_currency_still_in_appsflyer_list_is_accepted_with_warning() -> None:
    result = check(base(eventCurrency="HRK"))
    assert_accepted(result)
    assert ("eventCurrency", "withdrawn_currency") in codes(result.warnings)


# --- eventTime -----------------------------------------------------------------------------


def test_event_time_sets_event_time_ms() -> None:
    result = check(base(eventTime="2026-05-09 11:59:58.250"))
    assert_accepted(result)
    assert result.event is not None
    assert result.event.event_time_ms == NOW_MS - 1750
    assert result.warnings == []


def test_event_time_absent_means_arrival_time() -> None:
    result = check(base())
    assert result.event is not None
    assert result.event.event_time_ms == NOW_MS


def test_event_time_without_milliseconds_is_accepted_with_warning() -> None:
    result = check(base(eventTime="2026-05-09 11:00:00"))
    assert_accepted(result)
    assert result.event is not None
    assert result.event.event_time_ms == NOW_MS - 3_600_000
    assert ("eventTime", "event_time_without_milliseconds") in codes(result.warnings)


@pytest.mark.parametrize(
    "value",
    [
        "2026-05-09T11:00:00.000",
        "2026-05-09 11:00:00.000Z",
        "2026-05-09 11:00:00.000+02:00",
        "2026-05-09 11:00:00.12",
        "2026-05-09 11:00:00.123456",
        "2026/05/09 11:00:00.000",
        "09-05-2026 11:00:00.000",
        "2026-05-09",
    ],
)
def test_event_time_in_another_format_is_bad_request(value: str) -> None:
    assert_refused(check(base(eventTime=value)), "eventTime", "invalid_format")


@pytest.mark.parametrize("value", ["2026-02-30 10:00:00.000", "2026-13-01 10:00:00.000", "2026-05-09 24:00:00.000"])
def test_event_time_that_is_not_a_real_date_is_bad_request(value: str) -> None:
    assert_refused(check(base(eventTime=value)), "eventTime", "invalid_event_time")


def test_event_time_number_is_bad_request() -> None:
    assert_refused(check(base(eventTime=NOW_MS)), "eventTime", "wrong_type")


def test_event_time_in_the_future_beyond_the_skew_is_warned() -> None:
    ahead = format_event_time(NOW_MS + rules.FUTURE_SKEW_MS + 1000)
    result = check(base(eventTime=ahead))
    assert_accepted(result)
    assert ("eventTime", "event_time_in_future") in codes(result.warnings)
    assert result.event is not None
    assert result.event.event_time_ms == NOW_MS + rules.FUTURE_SKEW_MS + 1000


def test_event_time_slightly_ahead_within_the_skew_is_not_warned() -> None:
    result = check(base(eventTime=format_event_time(NOW_MS + 60_000)))
    assert result.warnings == []


@pytest.mark.parametrize(
    ("received", "restamped"),
    [
        ("2026-05-09 01:59:59.999", False),
        ("2026-05-09 02:00:00.000", False),
        ("2026-05-09 02:00:00.001", True),
        ("2026-06-01 00:00:00.000", True),
    ],
)
def test_late_event_is_restamped_after_0200_utc_of_the_next_day(received: str, restamped: bool) -> None:
    sent = "2026-05-08 00:00:01.000"
    received_ms = parse_event_time(received)
    result = check(base(eventTime=sent), received_at_ms=received_ms)
    assert_accepted(result)
    assert result.event is not None
    body = payload(result)
    assert body["eventTime"] == sent
    if restamped:
        assert result.event.event_time_ms == received_ms
        assert body[RESTAMPED_FIELD] == received
        assert ("eventTime", "event_time_restamped") in codes(result.warnings)
    else:
        assert result.event.event_time_ms == parse_event_time(sent)
        assert RESTAMPED_FIELD not in body
        assert result.warnings == []


def test_event_time_format_and_parse_round_trip() -> None:
    for ms in (0, 1, 999, NOW_MS, NOW_MS + 123):
        assert parse_event_time(format_event_time(ms)) == ms
    assert format_event_time(NOW_MS) == "2026-05-09 12:00:00.000"


# --- ip, device ids ------------------------------------------------------------------------


@pytest.mark.parametrize("ip", ["81.2.69.160", "8.8.8.8", "1.1.1.1"])
def test_public_ipv4_is_accepted(ip: str) -> None:
    result = check(base(ip=ip))
    assert_accepted(result)
    assert result.warnings == []


@pytest.mark.parametrize("ip", ["::1", "2001:db8::1", "10.0.0", "256.1.1.1", "01.2.3.4", "a.b.c.d"])
def test_ip_must_be_ipv4(ip: str) -> None:
    result = check(base(ip=ip))
    assert_refused(result, "ip", "invalid_ip")
    if ":" in ip:
        assert "IPv6" in result.problems[0].message


def test_ip_longer_than_16_characters_is_bad_request() -> None:
    assert_refused(check(base(ip="::ffff:192.168.10.1")), "ip", "invalid_length")


@pytest.mark.parametrize("ip", ["10.1.2.3", "192.168.0.10", "172.20.1.1", "127.0.0.1", "100.64.0.1", "0.0.0.0"])
def test_non_public_ip_is_warned(ip: str) -> None:
    result = check(base(ip=ip))
    assert_accepted(result)
    assert codes(result.warnings) == {("ip", "non_public_ip")}


@pytest.mark.parametrize("ip", ["192.0.2.1", "198.51.100.7", "203.0.113.7"])
def test_documentation_ip_is_not_warned(ip: str) -> None:
    """Rule (shared with Axon's client_ip_address, capigate/addresses.py): the documentation
    ranges are not warned about; AppsFlyer's own examples use them."""
    result = check(base(ip=ip))
    assert_accepted(result)
    assert result.warnings == []


@pytest.mark.parametrize("field", ["idfa", "idfv"])
def test_idfa_and_idfv_lower_case_are_upper_cased_with_warning(field: str) -> None:
    result = check(base(**{field: UUID_UPPER.lower()}))
    assert_accepted(result)
    assert (field, "not_upper_case") in codes(result.warnings)
    assert payload(result)[field] == UUID_UPPER


@pytest.mark.parametrize("field", ["idfa", "idfv", "advertising_id"])
@pytest.mark.parametrize("value", ["9876F1SS-2983-3855-27RR-2R626772VFNB", "", UUID_UPPER[:-1]])
def test_device_ids_must_be_uuids(field: str, value: str) -> None:
    app = ANDROID_APP if field == "advertising_id" else IOS_APP
    assert_refused(check(base(**{field: value}), app_id=app), field, "invalid_format")


@pytest.mark.parametrize("oaid", ["1fe9a970-efbb-29e0-0bdd-f5dbbf751ab5", "e7d4b7f1a0c5b8d2", "a" * 64])
def test_oaid_is_a_uuid_or_vendor_hex_id(oaid: str) -> None:
    assert_accepted(check(base(oaid=oaid), app_id=ANDROID_APP))


@pytest.mark.parametrize("oaid", ["not-an-oaid", "e7d4b7f1", "g" * 16])
def test_oaid_that_is_neither_is_bad_request(oaid: str) -> None:
    assert_refused(check(base(oaid=oaid), app_id=ANDROID_APP), "oaid", "invalid_format")


@pytest.mark.parametrize(("field", "app"), [("idfa", IOS_APP), ("advertising_id", ANDROID_APP)])
def test_zeroed_device_id_is_warned(field: str, app: str) -> None:
    result = check(base(**{field: "00000000-0000-0000-0000-000000000000"}), app_id=app)
    assert_accepted(result)
    assert (field, "zeroed_device_id") in codes(result.warnings)


@pytest.mark.parametrize("att", [0, 1, 2, 3])
def test_att_between_0_and_3_is_accepted(att: int) -> None:
    assert_accepted(check(base(att=att)))


@pytest.mark.parametrize(("att", "code"), [(-1, "out_of_range"), (4, "out_of_range"), ("3", "wrong_type")])
def test_att_must_be_between_0_and_3(att: object, code: str) -> None:
    assert_refused(check(base(att=att)), "att", code)


def test_aie_must_be_boolean() -> None:
    assert_accepted(check(base(aie=False)))
    assert_refused(check(base(aie="false")), "aie", "wrong_type")


# --- sharing, app type, consent, app set id, custom data, fb login --------------------------


@pytest.mark.parametrize("value", ["all", ["googleadwords_int"], ["Apple Search Ads", "twitter"]])
def test_sharing_filter_all_or_list_of_partners_is_accepted(value: object) -> None:
    assert_accepted(check(base(sharing_filter=value)))


@pytest.mark.parametrize("value", ["none", "All", [], [""], 5, ["a", 1]])
def test_sharing_filter_must_be_all_or_a_non_empty_list_of_names(value: object) -> None:
    result = check(base(sharing_filter=value))
    assert result.text == BAD_REQUEST
    assert {p.path.split("[")[0] for p in result.problems} == {"sharing_filter"}


@pytest.mark.parametrize("value", ["", "app_clip"])
def test_app_type_empty_or_app_clip_is_accepted(value: str) -> None:
    assert_accepted(check(base(app_type=value)))


def test_app_type_must_be_empty_or_app_clip() -> None:
    assert_refused(check(base(app_type="clip")), "app_type", "invalid_enum")


@pytest.mark.parametrize(
    "value",
    [
        {"tcf": {"policy_version": 4, "gdpr_applies": 1, "cmp_sdk_id": 300, "tcstring": "CQ"}},
        {"tcf": {"gdpr_applies": -1}},
        {"manual": {"gdpr_applies": True, "ad_user_data_enabled": False}},
    ],
)
def test_consent_data_tcf_or_manual_is_accepted(value: dict[str, Any]) -> None:
    result = check(base(consent_data=value))
    assert_accepted(result)
    assert payload(result)["consent_data"] == value


@pytest.mark.parametrize("value", [{}, {"tcf": {}, "manual": {}}, {"tcf": None}, {"manual": None, "tcf": None}])
def test_consent_data_holds_exactly_one_of_tcf_and_manual(value: dict[str, Any]) -> None:
    assert_refused(check(base(consent_data=value)), "consent_data", "invalid_consent_data")


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"tcf": {"gdpr_applies": 2}}, "consent_data.tcf.gdpr_applies"),
        ({"tcf": {"policy_version": "4"}}, "consent_data.tcf.policy_version"),
        ({"manual": {"gdpr_applies": 1}}, "consent_data.manual.gdpr_applies"),
        ({"tcf": "CQ"}, "consent_data.tcf"),
        ("tcf", "consent_data"),
    ],
)
def test_consent_data_fields_have_their_documented_types(value: object, path: str) -> None:
    result = check(base(consent_data=value))
    assert result.text == BAD_REQUEST
    assert [p.path for p in result.problems] == [path]


def test_app_set_id_with_scope_1_or_2_and_uuid_id_is_accepted() -> None:
    for scope in (1, 2):
        value = {"scope": scope, "id": UUID_LOWER}
        assert_accepted(check(base(app_set_id=value), app_id=ANDROID_APP))


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"scope": 3, "id": UUID_LOWER}, "app_set_id.scope"),
        ({"scope": 1, "id": "abc"}, "app_set_id.id"),
        ({"id": UUID_LOWER}, "app_set_id.scope"),
        ({"scope": 1}, "app_set_id.id"),
        (UUID_LOWER, "app_set_id"),
    ],
)
def test_app_set_id_has_scope_1_or_2_and_uuid_id(value: object, path: str) -> None:
    result = check(base(app_set_id=value), app_id=ANDROID_APP)
    assert result.text == BAD_REQUEST
    assert [p.path for p in result.problems] == [path]


def test_fb_login_id_is_a_numeric_string() -> None:
    assert_accepted(check(base(fb_login_id="10158329512345678")))
    assert_refused(check(base(fb_login_id="fb10158")), "fb_login_id", "invalid_format")
    assert_refused(check(base(fb_login_id=10158)), "fb_login_id", "wrong_type")


def test_custom_data_stringified_json_is_parsed_into_the_payload() -> None:
    value = '{"key_group": {"key_a1": "value a1"}, "key_b": "value b"}'
    result = check(base(custom_data=value))
    assert_accepted(result)
    assert payload(result)["custom_data"] == json.loads(value)


def test_custom_data_object_is_accepted_with_warning() -> None:
    result = check(base(custom_data={"key_b": "value b"}))
    assert_accepted(result)
    assert ("custom_data", "custom_data_not_stringified") in codes(result.warnings)


@pytest.mark.parametrize(("value", "code"), [("{key: 1}", "malformed_json"), ("[1]", "not_an_object")])
def test_custom_data_must_be_a_stringified_object(value: str, code: str) -> None:
    assert_refused(check(base(custom_data=value)), "custom_data", code)


def test_os_missing_is_warned() -> None:
    event = base()
    del event["os"]
    result = check(event)
    assert_accepted(result)
    assert codes(result.warnings) == {("os", "recommended_field_missing")}


# --- hashed identifiers and plain PII ------------------------------------------------------


@pytest.mark.parametrize("field", schema.HASHED_FIELDS)
def test_hashed_field_with_sha256_passes_through_lower_cased(field: str) -> None:
    result = check(base(**{field: f" {SHA_UPPER} "}))
    assert_accepted(result)
    assert result.warnings == []
    assert payload(result)[field] == SHA_UPPER.lower()


@pytest.mark.parametrize(
    ("field", "plain", "normalised"),
    [
        ("email_hashed", "  John.Doe@Example.COM ", "john.doe@example.com"),
        ("phone_number_hashed", "+1 (650) 555-1212", "16505551212"),
        ("phone_number_hashed", "16505551212", "16505551212"),
        ("phone_number_e164_hashed", "+1 213 373 4253", "+12133734253"),
        ("phone_number_e164_hashed", "0012133734253", "+12133734253"),
        ("first_name_hashed", " Zoë ", "zoë"),
        ("last_name_hashed", "O'Brien-Smith", "o'brien-smith"),
    ],
)
def test_plain_pii_is_normalised_and_hashed_with_warning(field: str, plain: str, normalised: str) -> None:
    result = check(base(**{field: plain}))
    assert_accepted(result)
    assert payload(result)[field] == sha256(normalised)
    assert (field, "plain_pii_hashed") in codes(result.warnings)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email_hashed", "john.doe-at-example.com"),
        ("email_hashed", "+16505551212"),
        ("email_hashed", "jane@example.com/"),  # stray punctuation: hashed as sent, said normalised
        ("email_hashed", "jane@example..com"),
        ("email_hashed", "<jane@example.com"),
        ("email_hashed", ".jane@example.com"),
        ("phone_number_hashed", "john.doe@example.com"),
        ("phone_number_hashed", "call me maybe"),
        ("phone_number_e164_hashed", "+999 123"),
        ("first_name_hashed", "john.doe@example.com"),
        ("last_name_hashed", "R2D2"),
    ],
)
def test_hashed_field_neither_hash_nor_plain_value_is_bad_request_without_echo(field: str, value: str) -> None:
    result = check(base(**{field: value}))
    assert_refused(result, field, "invalid_hash")
    assert value not in msgspec.json.encode(result).decode()


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        ("john.doe-at-example.com", "no @ in it: expected local@domain.tld"),
        ("jane@example..com", "two dots in a row: an address holds none"),
        ("jane@-example.com", "a part of the domain starts or ends with a hyphen, as no hostname's does"),
    ],
)
def test_email_hashed_neither_hash_nor_address_says_why_it_is_no_address(value: str, cause: str) -> None:
    """Rule (identity._why_no_address, as Axon's email): a refused email_hashed says the
    cause, at the same path and with the same code, invalid_hash; every one said "expected
    local@domain.tld"."""
    result = check(base(email_hashed=value))
    assert_refused(result, "email_hashed", "invalid_hash")
    (said,) = [p.message for p in result.problems if p.path == "email_hashed"]
    assert said == f"email_hashed is neither a SHA-256 hex digest nor an email address: not an email address ({cause})"


@pytest.mark.parametrize("digest", ["d41d8cd98f00b204e9800998ecf8427e", "a" * 40, "b" * 128])
def test_hex_digest_that_is_not_sha256_is_bad_request(digest: str) -> None:
    assert_refused(check(base(email_hashed=digest)), "email_hashed", "invalid_hash")


def test_empty_hashed_field_is_left_out_with_warning() -> None:
    result = check(base(email_hashed="  "))
    assert_accepted(result)
    assert ("email_hashed", "empty_value") in codes(result.warnings)
    assert "email_hashed" not in payload(result)


def test_sha256_of_empty_string_is_warned() -> None:
    result = check(base(first_name_hashed=sha256("")))
    assert_accepted(result)
    assert ("first_name_hashed", "hash_of_empty_string") in codes(result.warnings)


def test_impossible_phone_number_is_hashed_with_warning() -> None:
    result = check(base(phone_number_hashed="+1 555 12"))
    assert_accepted(result)
    assert ("phone_number_hashed", "phone_not_possible") in codes(result.warnings)
    (said,) = [w.message for w in result.warnings if w.code == "phone_not_possible"]
    assert said == (  # as Axon's phone says it (tests/test_axon_rules.py)
        "phone_number_hashed is not a possible number for its country code (no number there has as many digits): "
        "check the country code; it was hashed anyway"
    )


@pytest.mark.parametrize("plain", ["+44 07700 900123", "+44 (0)7700 900123"])
@pytest.mark.parametrize(
    ("field", "normalised"), [("phone_number_hashed", "447700900123"), ("phone_number_e164_hashed", "+447700900123")]
)
def test_phone_rule_a_trunk_prefix_after_the_country_code_is_left_out_with_a_warning(
    field: str, normalised: str, plain: str
) -> None:
    """Rule (identity._without_trunk_prefix, the phone fields): `+44 07700 900123` was hashed
    as 4407700900123 with only phone_not_possible. It is hashed without the trunk prefix, and
    phone_trunk_prefix_removed says so, naming the field, as Axon's phone says it."""
    result = check(base(**{field: plain}))
    assert_accepted(result)
    assert payload(result)[field] == sha256(normalised)
    assert codes(result.warnings) == {(field, "plain_pii_hashed"), (field, "phone_trunk_prefix_removed")}
    (said,) = [w.message for w in result.warnings if w.code == "phone_trunk_prefix_removed"]
    assert said == (
        f"{field} has the national trunk prefix (a 0 dialled within the country) after its country code, "
        "where a number in international form has none: it was left out before hashing; send the number without it"
    )


@pytest.mark.parametrize(
    ("field", "plain", "country", "normalised"),
    [
        ("phone_number_hashed", "(650) 555-1212", "US", "16505551212"),
        ("phone_number_hashed", "020 7946 0958", "gb", "442079460958"),
        ("phone_number_e164_hashed", "(650) 555-1212", "US", "+16505551212"),
        ("phone_number_hashed", "+1 650 555 1212", "FR", "16505551212"),
    ],
)
def test_phone_rule_national_number_is_read_in_the_bodys_country(
    field: str, plain: str, country: str, normalised: str
) -> None:
    result = check(base(**{field: plain}, eventValue=json.dumps({"af_country": country})))
    assert_accepted(result)
    assert payload(result)[field] == sha256(normalised)
    assert codes(result.warnings) & {(field, "phone_without_country_code"), (field, "phone_not_possible")} == set()


def test_phone_rule_without_country_hashes_digits_as_sent_and_warns() -> None:
    result = check(base(phone_number_hashed="(650) 555-1212"))
    assert_accepted(result)
    assert payload(result)["phone_number_hashed"] == sha256("6505551212")
    assert ("phone_number_hashed", "phone_without_country_code") in codes(result.warnings)


@pytest.mark.parametrize(
    ("field", "form"), [("phone_number_hashed", "16505551212"), ("phone_number_e164_hashed", "+16505551212")]
)
def test_phone_without_country_code_gives_the_fields_form_as_an_example(field: str, form: str) -> None:
    """A trial: "(AppsFlyer expects 16505551212)" ended the message whatever number was sent,
    as if read from it, and for the E.164 field too, whose form has its "+"."""
    result = check(base(**{field: "020 7946 0958"}))
    (warning,) = [w for w in result.warnings if w.code == "phone_without_country_code"]
    assert f"in international form, like {form})" in warning.message
    assert "expects 16505551212" not in warning.message and "7946" not in warning.message


PLAIN_PII = {
    "email_hashed": "Jane.Roe@Example.org",
    "phone_number_hashed": "+44 20 7946 0958",
    "phone_number_e164_hashed": "+442079460958",
    "first_name_hashed": "Janette",
    "last_name_hashed": "Roebuck",
}


@pytest.mark.parametrize("valid", [True, False], ids=["accepted", "refused"])
def test_plain_pii_never_appears_in_any_output(valid: bool) -> None:
    event = base(**PLAIN_PII)
    if not valid:
        event["ip"] = "not an ip"  # the event is refused for another reason
    result = check(event)
    assert result.status == (200 if valid else 400)
    outputs = [msgspec.json.encode(result).decode()]  # problems, warnings, NewEvent
    if result.event is not None:
        outputs.append(result.event.payload.decode())
    everything = "\n".join(outputs).lower()
    for plain in PLAIN_PII.values():
        digits = "".join(c for c in plain if c.isdigit())
        for form in filter(None, (plain.lower(), plain.lower().strip(), digits)):
            assert form not in everything


def test_invalid_plain_pii_never_appears_in_any_output() -> None:
    values = {
        "email_hashed": "jane.roe(at)example",
        "phone_number_hashed": "jane roe 0207",
        "first_name_hashed": "J4net",
    }
    result = check(base(**values))
    assert result.status == 400
    everything = msgspec.json.encode(result).decode()
    for plain in values.values():
        assert plain not in everything


def test_unknown_field_that_looks_personal_is_dropped() -> None:
    result = check(base(email="jane.roe@example.org", phone="+442079460958", note="x@y.io"))
    assert_accepted(result)
    assert codes(result.warnings) == {
        ("email", "plain_pii_dropped"),
        ("phone", "plain_pii_dropped"),
        ("note", "plain_pii_dropped"),
    }
    body = result.event.payload.decode() if result.event else ""
    assert "example.org" not in body and "2079460958" not in body and "x@y.io" not in body


def test_unknown_field_named_like_a_phone_holding_one_is_dropped() -> None:
    result = check(base(mobile="+44 20 7946 0958", mobile_os="android", note="order%40shop"))
    assert_accepted(result)
    assert codes(result.warnings) >= {("mobile", "plain_pii_dropped")}
    body = result.event.payload.decode() if result.event else ""
    assert "7946" not in body and '"mobile_os":"android"' in body


def test_unknown_field_with_personal_data_inside_does_not_say_kept_as_sent() -> None:
    result = check(base(customer={"email": "jane.roe@example.org", "tier": "gold"}, note="plain"))
    assert_accepted(result)
    said = {w.path: (w.code, w.message) for w in result.warnings}
    assert said["customer"][0] == "unknown_field" and "kept as sent" not in said["customer"][1]
    assert said["customer.email"][0] == "plain_pii_dropped"
    assert said["note"] == ("unknown_field", "`note` is not an AppsFlyer field; it was kept as sent")
    assert [w.path for w in result.warnings].index("customer") < [w.path for w in result.warnings].index(
        "customer.email"
    )


def test_customer_user_id_that_looks_like_an_email_is_dropped_with_a_warning() -> None:
    result = check(base(customer_user_id="jane.roe@example.org"))
    assert_accepted(result)
    assert ("customer_user_id", "pii_in_customer_user_id") in codes(result.warnings)
    assert "customer_user_id" not in payload(result)
    assert "jane.roe" not in msgspec.json.encode(result.warnings).decode()


# --- personal data inside eventValue and custom_data ------------------------------------

JANE = "jane.roe@example.org"


def stored_event_value(result: InAppCheck) -> str:
    """eventValue as the relay sends it to AppsFlyer: a string again."""
    assert result.event is not None, result.problems
    relayed: str = json.loads(appsflyer_body(result.event.payload))["eventValue"]
    return relayed


def everything(result: InAppCheck) -> str:
    """Every output of a check: problems, warnings, the event and its payload."""
    outputs = [msgspec.json.encode(result).decode()]
    if result.event is not None:
        outputs.append(result.event.payload.decode())
    return "\n".join(outputs)


@pytest.mark.parametrize("slow", [False, True], ids=["typed_decode", "field_by_field"])
def test_personal_key_in_event_value_is_dropped_at_any_depth(slow: bool) -> None:
    value = {
        "af_revenue": "9.99",
        "email": JANE,
        "buyer": {"tier": "gold", "phone": "+44 20 7946 0958", "Last_Name": "Roebuck"},
        "items": [{"sku": "s-1", "e-mail": JANE}],
    }
    event = base(eventValue=json.dumps(value))
    if slow:
        event["extra_ref"] = "r-1"  # an unknown top-level key: the body takes the slower path
    result = check(event)
    assert_accepted(result)
    dropped = {("eventValue.email", "plain_pii_dropped")}
    dropped |= {("eventValue.buyer.phone", "plain_pii_dropped"), ("eventValue.buyer.Last_Name", "plain_pii_dropped")}
    dropped |= {("eventValue.items[0].e-mail", "plain_pii_dropped")}
    assert dropped <= codes(result.warnings)
    assert payload(result)["eventValue"] == {"af_revenue": "9.99", "buyer": {"tier": "gold"}, "items": [{"sku": "s-1"}]}
    out = everything(result)
    assert "example.org" not in out and "7946" not in out and "Roebuck" not in out


def test_dropped_parameter_warning_names_it_and_says_event_value_is_stored_without_it() -> None:
    result = check(base(eventValue=json.dumps({"email": JANE})))
    [warning] = [w for w in result.warnings if w.code == "plain_pii_dropped"]
    assert warning.path == "eventValue.email"
    assert "`email`" in warning.message and "eventValue is stored and relayed without it" in warning.message
    assert "jane" not in warning.message


def test_email_under_a_harmless_key_in_event_value_is_dropped() -> None:
    value = {"af_content_id": JANE, "af_content_type": "shoes", "note": f"contact {JANE} asap"}
    result = check(base(eventValue=json.dumps(value)))
    assert_accepted(result)
    assert codes(result.warnings) == {
        ("eventValue.af_content_id", "plain_pii_dropped"),
        ("eventValue.note", "plain_pii_dropped"),
    }
    assert "holds an email address" in result.warnings[0].message
    assert payload(result)["eventValue"] == {"af_content_type": "shoes"}
    assert "example.org" not in everything(result)


def test_email_in_an_array_is_replaced_by_null_so_parallel_arrays_stay_aligned() -> None:
    value = {"af_content_id": ["sku-1", JANE, "sku-3"], "af_price": [1, 2, 3], "af_quantity": [1, 1, 2]}
    result = check(base(eventValue=json.dumps(value)))
    assert_accepted(result)
    assert codes(result.warnings) == {("eventValue.af_content_id[1]", "plain_pii_dropped")}
    assert payload(result)["eventValue"] == {**value, "af_content_id": ["sku-1", None, "sku-3"]}
    assert "example.org" not in everything(result)


def test_key_that_is_an_email_address_is_dropped_without_showing_it() -> None:
    result = check(base(eventValue=json.dumps({"referrers": {JANE: 3}, "af_level": "2"})))
    assert_accepted(result)
    assert codes(result.warnings) == {("eventValue.referrers.<email address>", "plain_pii_dropped")}
    assert payload(result)["eventValue"] == {"referrers": {}, "af_level": "2"}
    assert "example.org" not in everything(result)


def test_top_level_key_that_is_an_email_address_is_dropped_without_showing_it() -> None:
    result = check(base(**{JANE: "subscriber"}))
    assert_accepted(result)
    assert codes(result.warnings) == {("<email address>", "plain_pii_dropped")}
    assert "example.org" not in everything(result)


@pytest.mark.parametrize(
    "value",
    [
        # Rule (identity.holds_international_phone): 00 before no valid number, or inside an id,
        # and digits without + or 00, are ids; a + after a letter or digit is no number.
        {"af_order_id": "0012345678", "af_receipt_id": "4155550123", "af_content_id": "SKU-0012345678"},
        {"af_param_1": "size+10+1234567", "af_lat": "+51.507351", "af_date_a": "2024-01-15T10:00:00+01:00"},
        {"email": sha256("jane.roe@example.org"), "phone_number": SHA_UPPER},
        {"af_content": "2 @ 5.00", "handle": "@jane", "af_description": "at example.org"},
    ],
    ids=["phone_shaped_ids", "phone_like_text", "hashed_under_personal_keys", "not_emails"],
)
def test_harmless_values_in_event_value_are_kept(value: dict[str, Any]) -> None:
    result = check(base(eventValue=json.dumps(value)))
    assert_accepted(result)
    assert result.warnings == []
    assert payload(result)["eventValue"] == value


def test_event_value_without_personal_data_is_relayed_as_sent() -> None:
    sent = '{"af_revenue":"9.99","af_currency":"EUR","af_content_id":["a","b"],"meta":{"n":1}}'
    result = check(base(eventValue=sent))
    assert_accepted(result)
    assert stored_event_value(result) == sent


def test_event_value_with_personal_data_is_relayed_re_encoded_without_it() -> None:
    sent = '{ "af_revenue": "9.99", "email": "jane.roe@example.org", "af_content_id": "c-1" }'
    result = check(base(eventValue=sent, eventCurrency="EUR"))
    assert_accepted(result)
    assert stored_event_value(result) == msgspec.json.encode({"af_revenue": "9.99", "af_content_id": "c-1"}).decode()


def test_event_value_sent_as_an_object_is_scanned_too() -> None:
    result = check(base(eventValue={"af_content_id": "c-1", "buyer": {"email": JANE}}))
    assert_accepted(result)
    assert {("eventValue", "event_value_not_stringified"), ("eventValue.buyer.email", "plain_pii_dropped")} <= codes(
        result.warnings
    )
    assert payload(result)["eventValue"] == {"af_content_id": "c-1", "buyer": {}}


def test_event_value_rules_still_see_the_parameters_around_a_dropped_one() -> None:
    value = {"af_revenue": "9.99", "af_currency": "eur", "email": JANE}
    result = check(base(eventValue=json.dumps(value)))
    assert_accepted(result)
    assert {("eventValue.af_currency", "currency_not_upper_case"), ("eventValue.email", "plain_pii_dropped")} <= codes(
        result.warnings
    )
    assert payload(result)["eventValue"] == {"af_revenue": "9.99", "af_currency": "EUR"}
    refused = check(base(eventValue=json.dumps({"af_revenue": "$9", "email": JANE})))
    assert_refused(refused, "eventValue.af_revenue", "not_numeric")
    assert "example.org" not in everything(refused)
    no_currency = check(base(eventValue=json.dumps({"af_revenue": "1", "phone": "+14155550123"})))
    assert ("eventCurrency", "revenue_without_currency") in codes(no_currency.warnings)


def test_dedupe_on_af_order_id_still_works_beside_a_dropped_parameter() -> None:
    value = json.dumps({"af_order_id": "A-1", "email": JANE})
    result = check(base(eventValue=value), dedupe_key="af_order_id")
    assert ("eventValue.email", "plain_pii_dropped") in codes(result.warnings)
    assert result.event is not None and result.event.dedupe_id == "A-1"


def test_order_id_holding_an_email_is_dropped_and_not_deduplicated_on() -> None:
    result = check(base(eventValue=json.dumps({"af_order_id": JANE})), dedupe_key="af_order_id")
    assert_accepted(result)
    assert ("eventValue.af_order_id", "plain_pii_dropped") in codes(result.warnings)
    assert result.event is not None and result.event.dedupe_id is None
    assert "example.org" not in everything(result)


@pytest.mark.parametrize("stringified", [True, False])
def test_personal_data_in_custom_data_is_dropped(stringified: bool) -> None:
    value = {"key_group": {"contact_email": JANE, "key_a1": "value a1"}, "ref": JANE, "key_b": "value b"}
    result = check(base(custom_data=json.dumps(value) if stringified else value))
    assert_accepted(result)
    assert {
        ("custom_data.key_group.contact_email", "plain_pii_dropped"),
        ("custom_data.ref", "plain_pii_dropped"),
    } <= codes(result.warnings)
    assert payload(result)["custom_data"] == {"key_group": {"key_a1": "value a1"}, "key_b": "value b"}
    assert "example.org" not in everything(result)


# --- unknown fields -------------------------------------------------------------------------


def test_unknown_top_level_field_is_kept_with_warning() -> None:
    result = check(base(campaign_ref="spring-26", score=7))
    assert_accepted(result)
    assert codes(result.warnings) == {
        ("campaign_ref", "unknown_field"),
        ("score", "unknown_field"),
    }
    assert payload(result)["campaign_ref"] == "spring-26"
    assert payload(result)["score"] == 7


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("eventname", "eventName"), ("EVENTNAME", "eventName"), ("advertisingid", "advertising_id")],
)
def test_unknown_field_near_miss_gets_did_you_mean(key: str, suggestion: str) -> None:
    event = base(**{key: "x"})
    result = check(event)
    warning = next(p for p in result.warnings if p.path == key)
    assert warning.code == "unknown_field"
    assert f"did you mean {suggestion!r}" in warning.message


def test_misspelt_required_field_is_missing_and_suggested() -> None:
    event = base(eventname="af_login")
    del event["eventName"]
    result = check(event)
    assert_refused(result, "eventName", "missing_field")
    assert ("eventname", "unknown_field") in codes(result.warnings)


def test_unknown_nested_field_is_kept_with_warning() -> None:
    consent = {"tcf": {"gdpr_applies": 1, "tc_string": "CQ"}}
    result = check(base(consent_data=consent))
    assert_accepted(result)
    warning = next(p for p in result.warnings if p.code == "unknown_field")
    assert warning.path == "consent_data.tcf.tc_string"
    assert "'tcstring'" in warning.message
    assert payload(result)["consent_data"] == consent


def test_unknown_field_does_not_change_the_rest_of_the_payload() -> None:
    event = json.loads((FIXTURES / "purchase_ios.json").read_text())
    fast = check(json.dumps(event).encode())
    slow = check(json.dumps({**event, "extra_ref": "r-1"}).encode())
    assert_accepted(fast)
    assert_accepted(slow)
    assert payload(slow) == {**payload(fast), "extra_ref": "r-1"}
    assert slow.event is not None and fast.event is not None
    assert slow.event.event_time_ms == fast.event.event_time_ms


def test_explicit_null_optional_field_is_treated_as_absent() -> None:
    result = check(base(idfa=None, ip=None))
    assert_accepted(result)
    assert "idfa" not in payload(result) and "ip" not in payload(result)


# --- platform hints -------------------------------------------------------------------------


@pytest.mark.parametrize("field", schema.IOS_ONLY_FIELDS)
def test_ios_field_on_android_app_is_platform_mismatch(field: str) -> None:
    value: object = 3 if field == "att" else UUID_UPPER
    result = check(base(**{field: value}), app_id=ANDROID_APP)
    assert_accepted(result)
    assert (field, "platform_mismatch") in codes(result.warnings)


@pytest.mark.parametrize("field", schema.ANDROID_ONLY_FIELDS)
def test_android_field_on_ios_app_is_platform_mismatch(field: str) -> None:
    value: object = {"scope": 1, "id": UUID_LOWER} if field == "app_set_id" else UUID_LOWER
    result = check(base(**{field: value}), app_id=IOS_APP)
    assert_accepted(result)
    assert (field, "platform_mismatch") in codes(result.warnings)


def test_platform_fields_on_matching_or_unknown_app_give_no_hint() -> None:
    assert check(base(idfa=UUID_UPPER, att=3), app_id=IOS_APP).warnings == []
    assert check(base(advertising_id=UUID_LOWER), app_id=ANDROID_APP).warnings == []
    assert check(base(idfa=UUID_UPPER), app_id="9NBLGGH4R32N").warnings == []


# --- dedupe ---------------------------------------------------------------------------------


def test_dedupe_is_off_by_default() -> None:
    result = check(base(eventValue='{"af_order_id": "A-1"}'))
    assert result.event is not None and result.event.dedupe_id is None


@pytest.mark.parametrize(("order_id", "dedupe_id"), [("A-1", "A-1"), (12345, "12345")])
def test_dedupe_on_af_order_id_sets_dedupe_id(order_id: object, dedupe_id: str) -> None:
    value = json.dumps({"af_order_id": order_id})
    result = check(base(eventValue=value), dedupe_key="af_order_id")
    assert result.event is not None and result.event.dedupe_id == dedupe_id


@pytest.mark.parametrize("value", ["", "{}", '{"af_order_id": ""}', '{"af_order_id": [1]}'])
def test_dedupe_on_without_usable_order_id_gives_no_dedupe_id(value: str) -> None:
    result = check(base(eventValue=value), dedupe_key="af_order_id")
    assert result.event is not None and result.event.dedupe_id is None


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("", "has no af_order_id"),
        ("{}", "has no af_order_id"),
        ('{"af_revenue": "5"}', "has no af_order_id"),
        ('{"af_order_id": [1]}', "is an array"),
        ('{"af_order_id": 1.5}', "is a number with a decimal point"),
        ('{"af_order_id": true}', "is a boolean"),
        (json.dumps({"af_order_id": JANE}), "was dropped as personal data"),
    ],
)
def test_dedupe_on_without_an_order_id_warns_as_axon_does_of_a_missing_dedupe_id(value: str, said: str) -> None:
    """A trial: with dedupe_key = "af_order_id", an event without one was stored with no
    warning, silently undeduplicated; Axon warns missing_dedupe_id in that case."""
    result = check(base(eventValue=value), dedupe_key="af_order_id")
    assert_accepted(result)
    missing = [w for w in result.warnings if w.code == "missing_dedupe_id"]
    assert [w.path for w in missing] == ["eventValue.af_order_id"], result.warnings
    assert said in missing[0].message and "cannot be deduplicated" in missing[0].message
    assert "example.org" not in everything(result)


@pytest.mark.parametrize("value", ['{"af_order_id": "A-1"}', '{"af_order_id": ""}', "{}"])
def test_a_missing_dedupe_id_is_said_once_and_only_when_the_app_dedupes(value: str) -> None:
    off = check(base(eventValue=value))
    assert "missing_dedupe_id" not in {w.code for w in off.warnings}
    on = check(base(eventValue=value), dedupe_key="af_order_id")
    said = [w.code for w in on.warnings if w.path == "eventValue.af_order_id"]
    assert len(said) <= 1, on.warnings  # a blank one is blank_dedupe_id alone


# --- whole events ---------------------------------------------------------------------------


def test_spec_style_payload_is_accepted() -> None:
    event = {
        "appsflyer_id": "1234567890123-1234567",
        "customer_user_id": "customer_user_id",
        "ip": "81.2.69.160",
        "eventName": "af_purchase",
        "eventValue": '{ "af_revenue": "6", "af_content_type": "wallets", "af_content_id": '
        '"15854", "your_custom_attribute" :"456.123" }',
        "eventCurrency": "USD",
        "eventTime": "2019-05-15 12:17:01.123",
        "app_version_name": "my_app_version",
        "app_store": "my_android_store_is_best",
        "bundleIdentifier": "com.myapp",
        "advertising_id": UUID_LOWER,
        "os": "14",
        "aie": True,
        "sharing_filter": ["googleadwords_int", "adcolony_int"],
    }
    received = parse_event_time("2019-05-15 12:17:02.000")
    result = check(event, app_id="com.myapp", received_at_ms=received)
    assert_accepted(result)
    assert result.warnings == []
    assert result.event is not None
    assert result.event.api == "appsflyer"
    assert result.event.source == "com.myapp"
    assert result.event.name == "af_purchase"
    assert result.event.event_time_ms == parse_event_time("2019-05-15 12:17:01.123")
    assert payload(result)["eventValue"]["af_revenue"] == "6"


@pytest.mark.parametrize(
    ("fixture", "app_id", "order_id"),
    [
        ("purchase_ios.json", IOS_APP, "GPA.3384-5521-0932-11470"),
        ("subscribe_android.json", ANDROID_APP, "GPA.3312-4451-7790-55123"),
    ],
)
def test_fixture_payloads_are_accepted(fixture: str, app_id: str, order_id: str) -> None:
    body = (FIXTURES / fixture).read_bytes()
    assert len(body) <= MAX_BODY_BYTES
    sent = json.loads(body)
    received = parse_event_time(sent["eventTime"]) + 30_000
    result = check(body, app_id=app_id, received_at_ms=received, dedupe_key="af_order_id")
    assert_accepted(result)
    assert result.warnings == []
    assert result.event is not None
    assert result.event.dedupe_id == order_id
    assert result.event.event_time_ms == parse_event_time(sent["eventTime"])
    stored = payload(result)
    assert stored["eventValue"] == json.loads(sent["eventValue"])
    assert {k: v for k, v in stored.items() if k not in {"eventValue", "custom_data"}} == {
        k: v for k, v in sent.items() if k not in {"eventValue", "custom_data"}
    }


def test_warnings_are_returned_with_problems() -> None:
    result = check(base(eventValue={"af_revenue": "x"}, eventCurrency="USD"))
    assert_refused(result, "eventValue.af_revenue", "not_numeric")
    assert ("eventValue", "event_value_not_stringified") in codes(result.warnings)


def test_response_texts_are_appsflyers() -> None:
    assert (OK, PARSE_FAILED, APPSFLYER_ID_MISSING, BAD_REQUEST) == (
        "OK",
        "Payload is missing or failed to parse",
        "appsflyer_id is a mandatory field",
        "Bad request",
    )
    assert (schema.UNAUTHORIZED, MAX_BODY_BYTES) == ("Unauthorized", 1024)


def test_reserved_event_value_keys_include_the_common_ones() -> None:
    common = {"af_revenue", "af_currency", "af_content_id", "af_order_id", "af_quantity"}
    assert common | {"af_price", "af_content_type", "af_content_list"} <= (schema.RESERVED_EVENT_VALUE_KEYS)


def test_package_exports_every_public_name() -> None:
    assert set(schema.__all__) | set(rules.__all__) == set(appsflyer.__all__)
    for name in appsflyer.__all__:
        home = schema if name in schema.__all__ else rules
        assert getattr(appsflyer, name) is getattr(home, name), name  # the package re-exports, never redefines


@pytest.mark.parametrize("value", ["2020-02-25 12:00.000", "25/02/2020 12:00:00", "2020-02-30 12:00:00.000"])
def test_messages_event_time_says_the_format_never_a_regex(value: str) -> None:
    result = check(base(eventTime=value))
    assert result.status == 400
    (problem,) = [p for p in result.problems if p.path == "eventTime"]
    assert "yyyy-MM-dd HH:mm:ss.SSS" in problem.message
    assert "\\d" not in problem.message and "^" not in problem.message


def test_messages_do_not_echo_a_possibly_personal_event_name() -> None:
    result = check(base(eventName="af_someone@example.org"))
    assert_refused(result, "eventName", "plain_pii")  # an event name is kept as sent: never an email
    assert ("eventName", "unknown_event_name") in codes(result.warnings)
    assert "someone@example.org" not in msgspec.json.encode(result).decode()


def test_pii_rule_an_email_in_a_defined_field_is_dropped() -> None:
    result = check(base(app_version_name="build for jane@example.org", extra={"deep": ["k@l.example"]}))
    assert_accepted(result)
    kept = payload(result)
    assert "app_version_name" not in kept and kept["extra"] == {"deep": [None]}
    assert ("app_version_name", "plain_pii_dropped") in codes(result.warnings)
    assert ("extra.deep[0]", "plain_pii_dropped") in codes(result.warnings)


def test_messages_enum_lists_the_allowed_values() -> None:
    result = check(base(app_type="tv"))
    (problem,) = result.problems
    assert problem.code == "invalid_enum" and problem.message.endswith('use one of "", app_clip')


# --- negative amounts and zero quantities: kept (refunds exist), warned -----------------------


@pytest.mark.parametrize(
    ("event_value", "path"),
    [
        ({"af_revenue": "-3.5"}, "eventValue.af_revenue"),
        ({"af_revenue": -1}, "eventValue.af_revenue"),
        ({"af_price": -2.5}, "eventValue.af_price"),
        ({"af_price": ["1", "-2"]}, "eventValue.af_price[1]"),
    ],
)
def test_negative_revenue_or_price_is_kept_with_a_warning(event_value: dict[str, Any], path: str) -> None:
    """Rule: a negative af_revenue or af_price (a refund, or a sign mistake) is accepted as
    AppsFlyer accepts it, with the warning negative_value at its path."""
    result = check(base(eventValue=json.dumps(event_value), eventCurrency="USD"))
    assert_accepted(result)
    assert codes(result.warnings) == {(path, "negative_value")}
    assert payload(result)["eventValue"] == event_value


@pytest.mark.parametrize(
    ("quantity", "path"), [(0, "eventValue.af_quantity"), (["2", "0"], "eventValue.af_quantity[1]")]
)
def test_zero_quantity_is_kept_with_a_warning(quantity: object, path: str) -> None:
    result = check(base(eventValue=json.dumps({"af_quantity": quantity})))
    assert_accepted(result)
    assert codes(result.warnings) == {(path, "zero_quantity")}


@pytest.mark.parametrize("event_value", [{"af_revenue": "0"}, {"af_revenue": 0.0, "af_price": 0, "af_quantity": "1"}])
def test_zero_revenue_and_price_are_not_warned(event_value: dict[str, Any]) -> None:
    result = check(base(eventValue=json.dumps(event_value), eventCurrency="USD"))
    assert_accepted(result)
    assert result.warnings == []


@pytest.mark.parametrize(
    ("field", "plain", "normalised"),
    [
        ("email_hashed", "mailto:Jane@Example.com", "jane@example.com"),
        ("email_hashed", "jane@example.com.", "jane@example.com"),
        ("email_hashed", "jane%40example.com", "jane@example.com"),
        ("email_hashed", "jane\uff20example.com", "jane@example.com"),
        ("email_hashed", "\uff4a\uff41\uff4e\uff45@example.com", "jane@example.com"),  # a Japanese IME's
        ("email_hashed", "jane@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d", "jane@example.com"),
        ("email_hashed", "jane @example.com", "jane@example.com"),
        ("email_hashed", "Jane@ Example.com", "jane@example.com"),
        ("email_hashed", "<jane@example.com>", "jane@example.com"),
        ("email_hashed", "Jane Doe <Jane@Example.com>", "jane@example.com"),
        ("email_hashed", "jane@example.com,", "jane@example.com"),
        ("email_hashed", "'jane@example.com';", "jane@example.com"),
        ("phone_number_hashed", "+1 (650) 555-1212 ext. 5", "16505551212"),
        ("phone_number_hashed", "+1-650-555-1212;ext=5", "16505551212"),
        ("phone_number_hashed", "%2B16505551212", "16505551212"),
        (
            "phone_number_e164_hashed",
            "\uff0b\uff11 \uff16\uff15\uff10 \uff15\uff15\uff15 \uff11\uff12\uff11\uff12",
            "+16505551212",
        ),
    ],
)
def test_plain_pii_as_written_is_normalised_as_the_scanner_reads_it_and_hashed(
    field: str, plain: str, normalised: str
) -> None:
    """Rule (identity.normalise_email, identity.normalise_phone, the *_hashed fields, which
    take a plain value and hash it with plain_pii_hashed): a `mailto:` URI, a trailing dot, an
    angle-addr (`<jane@example.com>`, said "normalised and hashed" with its brackets hashed),
    a list's `,` or `;` after it, or a pair of quotes around it was hashed as sent, never
    matching; an address percent-encoded or with a full-width at
    sign, a number with an extension, percent-encoded or full-width, all read by the
    eventValue scanner as personal data, were refused invalid_hash. Each is hashed as its
    plain form is, with the same warning."""
    result = check(base(**{field: plain}))
    assert_accepted(result)
    assert payload(result)[field] == sha256(normalised)
    assert [(w.path, w.code) for w in result.warnings] == [(field, "plain_pii_hashed")]


@pytest.mark.parametrize(
    "text",
    [
        "name @ example.com",
        "name&#64;example.com",
        "name&commat;example.com",
        "name@ example.com",
        "name@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
    ],
)
def test_an_address_disguised_in_event_value_is_dropped(text: str) -> None:
    """Rule (identity.contains_email, personal.py): an address with spaces around its at
    sign or the at sign as an HTML character reference, inside eventValue, was stored plain,
    unwarned. Dropped with plain_pii_dropped, as `name@example.com` is."""
    result = check(base(eventValue=json.dumps({"note": f"by {text}", "af_content_id": "sku-1"})))
    assert_accepted(result)
    assert ("eventValue.note", "plain_pii_dropped") in codes(result.warnings)
    assert "name" not in result.event.payload.decode()  # type: ignore[union-attr]


# --- a key given twice ---------------------------------------------------------------------


def _repeated(result: InAppCheck) -> list[tuple[str, str]]:
    return [(w.path, w.message) for w in result.warnings if w.code == "duplicate_key"]


@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
def test_a_top_level_key_given_twice_keeps_the_last_value_and_says_so(spaced: bool) -> None:
    """AppsFlyer's parser most likely keeps the last value, as msgspec does: accepted, and said."""
    sep = " " if spaced else ""
    body = (
        f'{{"appsflyer_id":{sep}"1234567890123-1234567","eventName":"first","eventValue":"",'
        f'"os":"17.4.1","eventName" :{sep}"af_login"}}'
    ).encode()
    result = check(body)
    assert_accepted(result)
    assert payload(result)["eventName"] == "af_login"
    assert _repeated(result) == [("eventName", _repeated(result)[0][1])]
    assert "2 times" in _repeated(result)[0][1] and "last" in _repeated(result)[0][1]


def test_a_key_given_twice_on_the_field_by_field_path_is_said_too() -> None:
    body = b'{"appsflyer_id":"1234567890123-1234567","eventName":"af_login","eventValue":"","os":"17.4.1","os":1}'
    result = check(body)  # os 1 is no string: the field-by-field path
    assert_refused(result, "os", "wrong_type")
    assert [p for p, _ in _repeated(result)] == ["os"]


@pytest.mark.parametrize("as_object", [False, True], ids=["stringified", "object"])
def test_a_key_given_twice_inside_event_value_is_said_at_its_path(as_object: bool) -> None:
    inner = '{"af_revenue":1.5,"af_currency":"USD","af_revenue":2.5,"af_content":{"a":1,"a":2}}'
    value = inner if as_object else json.dumps(inner)
    body = (
        '{"appsflyer_id":"1234567890123-1234567","eventName":"af_purchase","eventValue":' + value + ',"os":"17.4.1"}'
    ).encode()
    result = check(body)
    assert_accepted(result)
    assert payload(result)["eventValue"]["af_revenue"] == 2.5
    assert [p for p, _ in _repeated(result)] == ["eventValue.af_revenue", "eventValue.af_content.a"]


def test_a_clean_body_says_no_repeated_key() -> None:
    for event in (base(), base(eventValue={"af_revenue": 100.0}), base(eventValue='{"a":"x:y","b":"\\u003a"}')):
        assert _repeated(check(event)) == []
        assert _repeated(check(json.dumps(event, separators=(",", ":")).encode())) == []
