"""Rule: a 400 says what is wrong in the project's words, at the JSON path of the value
(capigate/unreadable.py), never in msgspec's (``$[...][0]``, ``Expected `int | null```)."""

from __future__ import annotations

import gzip
import json
from typing import Any

from tests.conftest import Server
from tests.helpers import batch, purchase, stored
from tests.test_appsflyer_api import event

AXON = {"Authorization": "key-std", "Content-Type": "application/json"}
APPSFLYER = {"authentication": "af-dev-key", "Accept": "application/json", "Content-Type": "application/json"}


def _problems(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 400, response.text
    return response.json()["problems"]  # type: ignore[no-any-return]


def test_a_number_too_large_is_out_of_range_at_its_path(server: Server) -> None:
    first = purchase()
    first["data"]["value"] = "BIG"
    body = json.dumps(batch(first, purchase())).replace('"BIG"', "1e400")
    with server.client() as c:
        (problem,) = _problems(c.post("/v1/event?pixel_id=px_std", content=body, headers=AXON))
        assert (problem["path"], problem["code"]) == ("events[0].data.value", "out_of_range")
        assert "too large" in problem["message"] and "$" not in problem["message"]
        af = json.dumps(event(af_extra=[1, {"deep": 1}])).replace('{"deep": 1}', '{"deep": -1e999}')
        (problem,) = _problems(c.post("/inappevent/com.example.shop", content=af, headers=APPSFLYER))
        assert (problem["path"], problem["code"]) == ("af_extra[1].deep", "out_of_range")


def test_a_negative_fractional_time_is_out_of_range_in_the_time_rules_words(server: Server) -> None:
    """A negative time with a fraction was answered msgspec's 'Expected integer >= 0', as if
    the fraction were refused (a fraction is read as whole milliseconds: fractional_time)."""
    sent = purchase(event_time=-0.5)
    sent["measurement_partner_data"] = {"is_claimable": True, "attribution_model": "LAST_CLICK",
                                        "attribution_share": 1, "accounting_mode": "CASH", "first_visit_ts": -1.5}  # fmt: skip
    with server.client() as c:
        problems = _problems(c.post("/v1/event?pixel_id=px_std", json=batch(sent), headers=AXON))
    said = "is epoch milliseconds from 0 (1970-01-01T00:00:00Z) to 253402300799999 (9999-12-31T23:59:59.999Z): "
    said += "a negative time is before 1970"
    assert problems == [
        {"path": "events[0].event_time", "code": "out_of_range", "message": f"event_time {said}"},
        {
            "path": "events[0].measurement_partner_data.first_visit_ts",
            "code": "out_of_range",
            "message": f"first_visit_ts {said}",
        },
    ]


def test_a_body_nested_too_deep_says_its_path_is_the_whole_body(server: Server) -> None:
    # AppsFlyer's 1 KB body limit comes first there: too_deep is reached on Axon only.
    with server.client() as c:
        body = b"[" * 5000 + b"]" * 5000
        (problem,) = _problems(c.post("/v1/event?pixel_id=px_std", content=body, headers=AXON))
    assert (problem["path"], problem["code"]) == ("", "too_deep")
    assert "whole body" in problem["message"]


def test_a_replay_filter_of_the_wrong_type_is_said_in_plain_words(server: Server) -> None:
    with server.admin() as c:
        (problem,) = _problems(c.post("/api/replay", json={"status": "abc"}))
    assert problem == {
        "path": "status",
        "code": "wrong_type",
        "message": "status must be an integer or null, not a string",
    }


def test_an_enum_that_allows_the_empty_string_shows_it_quoted(server: Server) -> None:
    with server.client() as c:
        problems = _problems(c.post("/inappevent/com.example.shop", json=event(app_type="tv"), headers=APPSFLYER))
    (message,) = [p["message"] for p in problems if p["path"] == "app_type"]
    assert message.endswith('use one of "", app_clip'), message


def test_a_wrong_type_in_an_optional_field_is_said_in_plain_words(server: Server) -> None:
    """An item's price `true` was answered ``Expected `float | null`, got boolean``."""
    sent = purchase()
    sent["data"]["items"][0]["price"] = True
    sent["data"]["items"][0]["item_category_id"] = [1]
    with server.client() as c:
        answer = c.post("/v1/event?pixel_id=px_std", json=batch(sent), headers=AXON)
    problems = {p["path"]: p["message"] for p in _problems(answer)}
    assert problems["events[0].data.items[0].price"] == "Expected number or null, got boolean"
    assert problems["events[0].data.items[0].item_category_id"] == "Expected integer or string or null, got array"


def test_an_empty_body_is_called_empty(server: Server) -> None:
    """It was 'the body is not valid JSON: Input data was truncated', as if the upload were cut."""
    with server.client() as c:
        for body in (b"", b" \n"):
            (problem,) = _problems(c.post("/v1/event?pixel_id=px_std", content=body, headers=AXON))
            assert problem == {
                "path": "",
                "code": "malformed_json",
                "message": "the body is empty; send a JSON document",
            }
            (problem,) = _problems(c.post("/inappevent/com.example.shop", content=body, headers=APPSFLYER))
            assert problem["message"].startswith("the body is empty;")


def test_an_empty_gzip_body_is_called_empty_and_a_cut_one_truncated(server: Server) -> None:
    """No bytes under Content-Encoding: gzip was 'the gzip stream is truncated', as if the upload
    were cut; a stream that is cut still says so. The code stays bad_gzip on both APIs."""
    cut = gzip.compress(json.dumps(batch(purchase())).encode())[:20]
    with server.client() as c:
        for path, headers in (("/v1/event?pixel_id=px_std", AXON), ("/inappevent/com.example.shop", APPSFLYER)):
            gzipped = {**headers, "Content-Encoding": "gzip"}
            (problem,) = _problems(c.post(path, content=b"", headers=gzipped))
            assert problem == {
                "path": "",
                "code": "bad_gzip",
                "message": "the body is empty: Content-Encoding says gzip but no bytes were sent",
            }, path
            (problem,) = _problems(c.post(path, content=cut, headers=gzipped))
            assert (problem["code"], problem["message"]) == ("bad_gzip", "the gzip stream is truncated"), path


def test_a_lone_utf16_surrogate_is_said_where_it_is_not_called_a_truncated_body(server: Server) -> None:
    """msgspec says "Input data was truncated" of a high surrogate escape (\\ud800) followed by
    fewer than six bytes that are not its low half: the body is whole, and was answered as cut."""
    axon = rb'{"events":[{"name":"purchase\ud800x"}]}'
    appsflyer = rb'{"eventName":"purchase\ud800x"}'
    with server.client() as c:
        (problem,) = _problems(c.post("/v1/event?pixel_id=px_std", content=axon, headers=AXON))
        (af_problem,) = _problems(c.post("/inappevent/com.example.shop", content=appsflyer, headers=APPSFLYER))
    said = "the body is not valid JSON: JSON is malformed: unexpected end of escaped utf-16 surrogate pair"
    assert problem == {"path": "", "code": "malformed_json", "message": f"{said} (byte 34)"}
    assert af_problem == {"path": "", "code": "malformed_json", "message": f"{said} (byte 28)"}
    # a body cut inside the pair is truncated, and said so
    with server.client() as c:
        cut = rb'{"events":[{"name":"purchase\ud800\ud'
        (problem,) = _problems(c.post("/v1/event?pixel_id=px_std", content=cut, headers=AXON))
    assert "truncated" in problem["message"]


def test_a_lone_utf16_surrogate_in_event_value_is_said_as_in_a_body(server: Server) -> None:
    """A trial: eventValue holding a lone surrogate escape was answered "eventValue is not valid
    stringified JSON (Input data was truncated)": the body's rule said nothing to the nested
    parse. It is said as in a body: the surrogate pair, and its byte within eventValue."""
    value = '{"af_revenue":"6","x":"\\ud800"}'
    with server.client() as c:
        (problem,) = _problems(c.post("/inappevent/com.example.shop", json=event(eventValue=value), headers=APPSFLYER))
    assert problem == {
        "path": "eventValue",
        "code": "malformed_json",
        "message": "eventValue is not valid stringified JSON (JSON is malformed: unexpected end of escaped utf-16 "
        f"surrogate pair (byte {value.index('800') + 3}))",
    }


def test_events_null_is_the_wrong_type_not_missing(server: Server) -> None:
    """{"events": null} was answered missing_field "`events` is required": the key is there."""
    with server.client() as c:
        (null,) = _problems(c.post("/v1/event?pixel_id=px_std", content=b'{"events": null}', headers=AXON))
        (text,) = _problems(c.post("/v1/event?pixel_id=px_std", content=b'{"events": "x"}', headers=AXON))
        (absent,) = _problems(c.post("/v1/event?pixel_id=px_std", content=b'{"event": []}', headers=AXON))
    assert null == {"path": "events", "code": "wrong_type", "message": "`events` must be an array of events, got null"}
    assert text["message"] == "`events` must be an array of events, got a string", text
    assert absent["code"] == "missing_field", absent


def test_a_hidden_values_length_takes_the_article_its_reading_takes(server: Server) -> None:
    """ "a 18-character value": eighteen, eleven, eight, eighty… are read with a vowel first."""
    sent = purchase()
    sent["user_data"]["esi"] = "123456789012345678"  # digits: never quoted, only described
    with server.client() as c:
        problems = _problems(c.post("/v1/event?pixel_id=px_std", json=batch(sent), headers=AXON))
    (message,) = [p["message"] for p in problems if p["path"] == "events[0].user_data.esi"]
    assert "(an 18-character value, not shown" in message, message


def test_the_article_of_a_number_is_that_of_its_english_reading() -> None:
    from capigate.checking import a_number

    ans = [8, 11, 18, 80, 83, 89, 800, 899, 8000, 11_000, 18_999, 80_000, 800_000, 8_000_000, 11_000_000]
    as_ = [0, 1, 7, 10, 12, 17, 19, 28, 1_800_000, 100, 110, 180, 1100, 1800, 108, 2008]
    assert [a_number(n) for n in ans] == [f"an {n}" for n in ans]
    assert [a_number(n) for n in as_] == [f"a {n}" for n in as_]


def test_a_number_past_its_bound_is_told_what_the_field_must_be(server: Server) -> None:
    """generate_lead's negative value was answered msgspec's "Expected number >= 0.0"."""
    lead = purchase(name="generate_lead", data={"value": -5, "currency": "USD"})
    share = purchase()
    share["measurement_partner_data"] = {"is_claimable": True, "attribution_model": "LAST_CLICK",
                                         "attribution_share": 2, "accounting_mode": "CASH"}  # fmt: skip
    item = purchase()
    item["data"]["items"] = [{"item_id": "a", "quantity": -2, "price": 1}]
    with server.client() as c:
        problems = _problems(c.post("/v1/event?pixel_id=px_std", json=batch(lead, share, item), headers=AXON))
    said = {p["path"]: (p["code"], p["message"]) for p in problems}
    assert said["events[0].data.value"] == ("out_of_range", "value must be a number of 0 or more, not a negative one")
    assert said["events[1].measurement_partner_data.attribution_share"] == (
        "out_of_range",
        "attribution_share must be a number from 0 to 1, not above 1",
    )
    assert said["events[2].data.items[0].quantity"] == (
        "out_of_range",
        "quantity must be an integer from 0 to 9007199254740991, not a negative one",
    )
    assert not any("Expected" in message for _, message in said.values()), said


def test_invalid_utf8_is_said_with_the_offset_of_its_first_byte(server: Server) -> None:
    """msgspec says only "Invalid UTF-8 encoded string": a trial could not find the byte in a
    body of a hundred events. The offset is the first invalid byte's, counted from 0."""
    axon = b'{"events":[{"name":"caf\xe9 purchase"}]}'  # Latin-1 e-acute at byte 23
    appsflyer = b'{"eventName":"caf\xc3\xa9\xff"}'  # a valid e-acute, then 0xFF at byte 19
    with server.client() as c:
        (problem,) = _problems(c.post("/v1/event?pixel_id=px_std", content=axon, headers=AXON))
        (af_problem,) = _problems(c.post("/inappevent/com.example.shop", content=appsflyer, headers=APPSFLYER))
    said = "the body is not valid JSON: it is not UTF-8, as JSON text must be (RFC 8259, 8.1): "
    assert problem == {"path": "", "code": "malformed_json", "message": said + "byte 23 (0xE9) is invalid"}
    assert af_problem == {"path": "", "code": "malformed_json", "message": said + "byte 19 (0xFF) is invalid"}


def test_a_number_sent_as_a_string_is_told_to_drop_the_quotes_in_every_number_field(server: Server) -> None:
    """`"value": "10"` was answered msgspec's "Expected number, got string", while a quoted
    event_time was told "send it without the quotes" (a trial): every number field says it of
    a number in quotes, and only of one."""
    sent = purchase()
    sent["data"]["value"] = "10"
    sent["data"]["items"][0]["price"] = " 9.99 "
    sent["data"]["items"][0]["quantity"] = "2"
    other = purchase()
    other["data"]["value"] = "ten"
    other["data"]["items"][0]["quantity"] = "2.5"
    with server.client() as c:
        answer = c.post("/v1/event?pixel_id=px_std", json=batch(sent, other), headers=AXON)
    problems = {p["path"]: p["message"] for p in _problems(answer)}
    hint = ": send it without the quotes"
    for path in ("events[0].data.value", "events[0].data.items[0].price", "events[0].data.items[0].quantity"):
        assert problems[path].endswith(hint) and "got string" in problems[path], (path, problems[path])
    assert problems["events[1].data.value"] == "Expected number, got string", problems
    assert hint not in problems["events[1].data.items[0].quantity"], problems


def test_a_quoted_number_is_told_to_drop_the_quotes_only_when_unquoted_it_would_do(server: Server) -> None:
    """`"value": "1e400"` was told "send it without the quotes" (a re-trial): unquoted it is
    out of range, refused too. The hint is given only of a number that unquoted is taken."""
    sent = purchase()
    sent["data"]["value"] = "1e400"
    sent["data"]["items"][0]["price"] = "-1e400"
    fine = purchase()
    fine["data"]["value"] = "1e3"
    with server.client() as c:
        answer = c.post("/v1/event?pixel_id=px_std", json=batch(sent, fine), headers=AXON)
    problems = {p["path"]: p["message"] for p in _problems(answer)}
    for path in ("events[0].data.value", "events[0].data.items[0].price"):
        assert "without the quotes" not in problems[path] and "got string" in problems[path], (path, problems)
    assert problems["events[1].data.value"].endswith(": send it without the quotes"), problems


def test_a_number_where_a_string_is_wanted_names_the_field_and_says_to_quote_it(server: Server) -> None:
    """Axon's `dedupe_id: 123` and AppsFlyer's `os: 14` were told "Expected string or null, got
    integer", where a quoted number is told "send it without the quotes" (a trial)."""
    sent = purchase(dedupe_id=123)
    with server.client() as c:
        (axon,) = _problems(c.post("/v1/event?pixel_id=px_std", json=batch(sent), headers=AXON))
        af = _problems(c.post("/inappevent/com.example.shop", json=event(os=14), headers=APPSFLYER))
    quote = 'must be a string, not a number: send it in quotes ("123", not 123)'
    assert axon == {"path": "events[0].dedupe_id", "code": "wrong_type", "message": f"dedupe_id {quote}"}
    assert af == [{"path": "os", "code": "wrong_type", "message": f"os {quote}"}]


def test_an_empty_or_blank_required_string_is_called_so(server: Server) -> None:
    """An empty client_user_agent or eventName was told "Expected string of length >= 1"; a
    user agent of one space was taken (a trial): it is refused as the empty one is."""
    empty, blank = purchase(), purchase()
    empty["user_data"]["client_user_agent"] = ""
    blank["user_data"]["client_user_agent"] = " \t"
    with server.client() as c:
        axon = _problems(c.post("/v1/event?pixel_id=px_std", json=batch(empty, blank), headers=AXON))
        af = _problems(c.post("/inappevent/com.example.shop", json=event(eventName=""), headers=APPSFLYER))
    assert [(p["path"], p["code"], p["message"]) for p in axon] == [
        ("events[0].user_data.client_user_agent", "invalid_length", "client_user_agent must not be empty"),
        (
            "events[1].user_data.client_user_agent",
            "blank_user_agent",
            "client_user_agent must not be blank: send the User-Agent header of the device's own request",
        ),
    ]
    assert af == [{"path": "eventName", "code": "invalid_length", "message": "eventName must not be empty"}]


def test_an_address_with_a_port_or_a_list_of_them_is_told_so_and_spaces_around_one_are_left_out(
    server: Server,
) -> None:
    """`8.8.8.8:5678` and `8.8.8.8, 10.0.0.1` (an X-Forwarded-For header pasted whole) were told
    only "not an IPv4 or IPv6 address", and so was ` 8.8.8.8`; AppsFlyer told `8.8.8.8:80` it
    does not take IPv6 (a trial). Spaces around an address are left out, as email's and
    phone's are: stored and relayed trimmed."""
    ips = ["8.8.8.8:5678", "8.8.8.8, 10.0.0.1", "[2001:db8::1]:443", " "]
    events = [purchase() for _ in ips]
    for sent, ip in zip(events, ips, strict=True):
        sent["user_data"]["client_ip_address"] = ip
    with server.client() as c:
        axon = _problems(c.post("/v1/event?pixel_id=px_std", json=batch(*events), headers=AXON))
        ported = _problems(c.post("/inappevent/com.example.shop", json=event(ip="8.8.8.8:80"), headers=APPSFLYER))
        listed = _problems(c.post("/inappevent/com.example.shop", json=event(ip="8.8.8.8 1.1.1.1"), headers=APPSFLYER))
    assert [(p["path"], p["code"]) for p in axon] == [
        (f"events[{i}].user_data.client_ip_address", "invalid_ip") for i in range(len(ips))
    ]
    said = [p["message"] for p in axon]
    assert said[0] == "not an IPv4 or IPv6 address: a port follows it (address:port); send the address alone"
    assert said[1] == (
        "not an IPv4 or IPv6 address: a list of addresses (an X-Forwarded-For header pasted whole, maybe); "
        "send the client's one address"
    )
    assert said[2] == said[0] and said[3] == "not an IPv4 or IPv6 address: it is only spaces"
    assert [(p["path"], p["message"]) for p in ported] == [
        ("ip", "ip is not an IPv4 address: a port follows it (address:port); send the address alone")
    ]
    assert "list of addresses" in listed[0]["message"]

    spaced = purchase()
    spaced["user_data"]["client_ip_address"] = " 8.8.8.8 "
    af_body = event(ip=" 10.0.0.1", os="14")
    with server.client() as c:
        answer = c.post("/v1/event?pixel_id=px_std", json=batch(spaced), headers=AXON)
        assert answer.status_code == 200 and answer.json()["warnings"] == [], answer.text
        af = c.post("/inappevent/com.example.shop", json=af_body, headers=APPSFLYER)
        assert af.status_code == 200 and [w["code"] for w in af.json()["warnings"]] == ["non_public_ip"], af.text
    (row,) = stored(server, "px_std", dedupe_id=spaced["dedupe_id"])
    assert row["payload"]["user_data"]["client_ip_address"] == "8.8.8.8"
    (row,) = stored(server, "com.example.shop", payload={"customer_user_id": af_body["customer_user_id"]})
    assert row["payload"]["ip"] == "10.0.0.1"
