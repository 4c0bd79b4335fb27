"""Bodies that once gave a 500 (or a retryable 503): deep nesting and integers past the store's
range, on both APIs and both store backends. Each is a 400 with a problem, and the gateway
keeps serving. And bodies that made answers and journal entries without bound: tens of
thousands of warnings, each listed (an 8 MB answer to a 0.9 MB body)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from capigate.axon.profiles import PROFILES
from capigate.axon.typed import check_body
from tests.conftest import Server, served_on
from tests.helpers import batch, now_ms, page_view, purchase, stored, wait_until
from tests.storekit import BACKENDS

AXON = {"Authorization": "key-std"}
AF = {"authentication": "af-dev-key", "accept": "application/json"}
AF_BASE = {"appsflyer_id": "1234567890123-1234567", "eventName": "af_login", "eventValue": "", "os": "14"}


@pytest.fixture(params=BACKENDS, scope="module")
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with served_on(request.param, tmp_path_factory.mktemp(f"hostile-{request.param}"), "capigate_hostile") as (
        server,
        _,
    ):
        yield server


def post_axon(server: Server, content: bytes) -> httpx.Response:
    with server.client() as c:
        return c.post(
            "/v1/event?pixel_id=px_std", content=content, headers={**AXON, "content-type": "application/json"}
        )


def post_af(server: Server, content: bytes) -> httpx.Response:
    with server.client() as c:
        return c.post(
            "/inappevent/com.example.shop", content=content, headers={**AF, "content-type": "application/json"}
        )


def problem_codes(response: httpx.Response) -> set[str]:
    return {p["code"] for p in response.json()["problems"]}


def assert_still_serving(server: Server) -> None:
    assert post_axon(server, json.dumps(batch(page_view())).encode()).status_code == 200


def test_axon_body_nested_10000_deep_is_400_too_deep(gateway: Server) -> None:
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"events": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_001):
        r = post_axon(gateway, body)
        assert r.status_code == 400 and problem_codes(r) == {"too_deep"}, r.text[:300]
    assert_still_serving(gateway)


def test_axon_value_nested_deep_under_an_unknown_key_is_400_too_deep(gateway: Server) -> None:
    deep: object = 1
    for _ in range(900):
        deep = {"a": deep}
    event = page_view(extra=deep)
    r = post_axon(gateway, json.dumps(batch(event)).encode())
    assert r.status_code == 400 and problem_codes(r) == {"too_deep"}, r.text[:300]
    assert_still_serving(gateway)


@pytest.mark.parametrize("value", [2**70, 2**63, -(2**70)])
def test_axon_event_time_past_the_stores_range_is_400(gateway: Server, value: int) -> None:
    r = post_axon(gateway, json.dumps(batch(page_view(event_time=value))).encode())
    assert r.status_code == 400 and problem_codes(r) == {"out_of_range"}, r.text
    assert_still_serving(gateway)


def test_appsflyer_body_nested_10000_deep_is_400(gateway: Server) -> None:
    r = post_af(gateway, b"[" * 10_000 + b"]" * 10_000)
    assert r.status_code == 400 and problem_codes(r) == {"payload_too_large"}


def test_appsflyer_event_value_nested_deep_is_400_too_deep(gateway: Server) -> None:
    nested = '{"a":' * 80 + "1" + "}" * 80
    r = post_af(gateway, json.dumps({**AF_BASE, "eventValue": nested}).encode())
    assert r.status_code == 400 and problem_codes(r) == {"too_deep"}, r.text


def test_appsflyer_integers_past_range_are_400(gateway: Server) -> None:
    r = post_af(gateway, json.dumps({**AF_BASE, "att": 2**70}).encode())
    assert r.status_code == 400 and problem_codes(r) == {"out_of_range"}, r.text
    assert_still_serving(gateway)


@pytest.mark.parametrize("where", ["value", "price"])
def test_axon_money_past_a_floats_range_is_400_out_of_range(gateway: Server, where: str) -> None:
    """Rule: a number too large to read is a 400 out_of_range at its path, never a 5xx. An
    integer past ±1.8e308 in data.value or an item's price passed the typed decode (numbers
    kept as sent) and raised OverflowError summing the items: a 500 (a trial)."""
    event = purchase()
    if where == "value":
        event["data"]["value"] = 10**309
    else:
        event["data"]["items"][0]["price"] = -(10**309)
    r = post_axon(gateway, json.dumps(batch(event)).encode())
    assert r.status_code == 400, r.text
    (problem,) = r.json()["problems"]
    path = "events[0].data.value" if where == "value" else "events[0].data.items[0].price"
    assert (problem["path"], problem["code"]) == (path, "out_of_range"), problem
    assert_still_serving(gateway)


def test_an_integer_of_5000_digits_is_400_out_of_range_at_its_path(gateway: Server) -> None:
    """msgspec refuses an integer past 4,300 digits with its own message, which was answered
    as malformed JSON with no path (a trial). AppsFlyer's 1,024-byte limit comes first there."""
    event = purchase()
    event["data"]["value"] = 424242.5
    r = post_axon(gateway, json.dumps(batch(event)).replace("424242.5", "9" * 5000).encode())
    assert r.status_code == 400, r.text
    assert [(p["path"], p["code"]) for p in r.json()["problems"]] == [("events[0].data.value", "out_of_range")], r.text
    assert_still_serving(gateway)


@pytest.mark.parametrize("event_value", [{"af_revenue": 10**309}, {"af_price": [1, 10**309]}])
@pytest.mark.parametrize("stringified", [True, False])
def test_appsflyer_revenue_past_a_floats_range_is_400_out_of_range(
    gateway: Server, event_value: dict[str, object], stringified: bool
) -> None:
    value = json.dumps(event_value) if stringified else event_value
    r = post_af(gateway, json.dumps({**AF_BASE, "eventValue": value}).encode())
    assert r.status_code == 400 and problem_codes(r) == {"out_of_range"}, r.text
    assert_still_serving(gateway)


@pytest.mark.parametrize("api", ["axon", "appsflyer"])
def test_an_integer_past_a_floats_range_under_a_phones_name_is_dropped_as_one(gateway: Server, api: str) -> None:
    """A number of seven digits or more under a phone's name is dropped (personal._phone_digits).
    Compiled, one past a float's range raised instead (mypyc read ``int | float`` as a float):
    a 500 on both APIs; every unknown key's value is read so since 5afd7de."""
    if api == "axon":
        r = post_axon(gateway, json.dumps(batch(page_view(data={"mobile": 10**309, "k": 10**309}))).encode())
        where = "events[0].data.mobile"
    else:
        r = post_af(
            gateway, json.dumps({**AF_BASE, "eventValue": json.dumps({"mobile": 10**309, "k": 10**309})}).encode()
        )
        where = "eventValue.mobile"
    assert r.status_code == 200, r.text
    assert (where, "plain_pii_dropped") in [(w["path"], w["code"]) for w in r.json()["warnings"]], r.text
    assert_still_serving(gateway)


def test_appsflyer_stringified_event_value_with_a_number_past_range_is_out_of_range(gateway: Server) -> None:
    """It was `not_an_object`, though it is one (a trial): the number is said at its path."""
    r = post_af(gateway, json.dumps({**AF_BASE, "eventValue": '{"x": 1e309}'}).encode())
    assert r.status_code == 400, r.text
    assert [(p["path"], p["code"]) for p in r.json()["problems"]] == [("eventValue.x", "out_of_range")], r.text


def journaled(server: Server, response: httpx.Response) -> dict[str, object]:
    """The journal entry of ``response``'s request (written a few milliseconds after the answer)."""
    request_id = response.headers["x-capigate-request-id"]
    with server.admin() as c:
        wait_until(lambda: c.get(f"/api/requests/{request_id}").status_code == 200, what="the journal entry")
        entry: dict[str, object] = c.get(f"/api/requests/{request_id}").json()
    return entry


def unknown_keys(keys: int, events: int = 1) -> bytes:
    return json.dumps(batch(*(page_view(data={f"k{i}": 0 for i in range(keys)}) for _ in range(events)))).encode()


def test_70000_unknown_keys_are_answered_with_the_first_1000_and_one_entry_counting_the_rest(gateway: Server) -> None:
    """A trial: one page_view whose data held 70,000 unknown keys (0.9 MB) was answered 200 with
    70,000 unknown_field warnings, an 8.2 MB answer and an 8.9 MB journal entry. An answer lists
    the first 1,000 of each code, then one not_listed entry saying how many more, where."""
    r = post_axon(gateway, unknown_keys(70_000))
    assert r.status_code == 200, r.text[:300]
    warnings = r.json()["warnings"]
    assert [(w["path"], w["code"]) for w in warnings[:1000]] == [
        (f"events[0].data.k{i}", "unknown_field") for i in range(1000)
    ]
    (more,) = warnings[1000:]
    assert (more["path"], more["code"]) == ("events[0].data", "not_listed"), more
    assert more["message"].startswith("69,000 more unknown_field warnings under events[0].data are not listed")
    assert len(r.content) < 200_000
    entry = journaled(gateway, r)
    assert entry["warnings"] == warnings


def test_warnings_spread_over_100_events_are_counted_under_their_common_path(gateway: Server) -> None:
    """100 events of 600 unknown keys each (0.68 MB) had a 6.8 MB answer (a trial)."""
    r = post_axon(gateway, unknown_keys(600, events=100))
    assert r.status_code == 200, r.text[:300]
    warnings = r.json()["warnings"]
    assert [w["path"] for w in warnings[998:1000]] == ["events[1].data.k398", "events[1].data.k399"]
    (more,) = warnings[1000:]
    assert (more["path"], more["code"]) == ("events", "not_listed"), more
    assert more["message"].startswith("59,000 more unknown_field warnings under events are not listed")


@pytest.mark.parametrize("keys", [1000, 1001])
def test_1000_warnings_of_a_code_are_all_listed_and_the_1001st_is_counted(gateway: Server, keys: int) -> None:
    r = post_axon(gateway, unknown_keys(keys))
    warnings = r.json()["warnings"]
    assert [w["code"] for w in warnings] == ["unknown_field"] * 1000 + ["not_listed"] * (keys - 1000)
    if keys == 1001:
        assert warnings[-1]["message"].startswith("1 more unknown_field warning at events[0].data.k1000 is not listed")


def test_problems_of_a_refused_batch_are_listed_the_same_way(gateway: Server) -> None:
    """The restricted profile refuses an unknown key: 5,000 of them were 5,000 problems."""
    event = page_view(event_source_url="https://shop.example.com/", **{f"k{i}": 0 for i in range(5000)})
    with gateway.client() as c:
        r = c.post("/v1/event?pixel_id=px_restricted", json=batch(event), headers={"Authorization": "key-restricted"})
    assert r.status_code == 400, r.text[:300]
    problems = r.json()["problems"]
    assert [(p["path"], p["code"]) for p in problems[:1000]] == [
        (f"events[0].k{i}", "unknown_field") for i in range(1000)
    ]
    (more,) = problems[1000:]
    assert (more["path"], more["code"]) == ("events[0]", "not_listed"), more
    assert more["message"].startswith("4,000 more unknown_field problems under events[0] are not listed")
    assert journaled(gateway, r)["problems"] == problems


def test_item_warnings_past_1000_are_counted_on_the_typed_path_too(gateway: Server) -> None:
    """A purchase of 1,500 items, each without its recommended fields: the typed path's warnings
    are listed as the slow path's are."""
    event = purchase()
    event.pop("measurement_partner_data")  # its nulls would take the slow path
    event["data"]["items"] = [{"item_id": f"sku-{i}", "quantity": 1} for i in range(1500)]
    body = json.dumps(batch(event)).encode()
    assert check_body(body, PROFILES["standard"], source="px_std", now_ms=now_ms()).typed
    r = post_axon(gateway, body)
    assert r.status_code == 200, r.text[:300]
    warnings = r.json()["warnings"]
    assert [w["path"] for w in warnings[:1000]] == [f"events[0].data.items[{i}]" for i in range(1000)]
    (more,) = warnings[1000:]
    assert (more["path"], more["code"]) == ("events[0].data.items", "not_listed"), more
    assert more["message"].startswith("500 more missing_recommended warnings under events[0].data.items")


def _set(event: dict[str, object], path: str, value: str) -> None:
    *parents, last = path.replace("[0]", ".0").split(".")
    target: object = event
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]  # type: ignore[index]
    target[last] = value  # type: ignore[index]


URL = "https://shop.example.com/p?q="


@pytest.mark.parametrize(
    ("field", "limit", "fill"),
    [
        ("dedupe_id", 512, "d"),
        ("user_data.client_id", 512, "c"),
        ("user_data.aleid", 512, "a"),
        ("data.transaction_id", 512, "t"),
        ("data.items[0].item_id", 512, "i"),
        ("measurement_partner_data.campaign_id", 512, "m"),
        ("event_source_url", 8192, URL),
        ("data.items[0].image_url", 8192, URL),
    ],
)
def test_an_id_or_a_url_longer_than_its_bound_is_400_invalid_length_at_its_path(
    gateway: Server, field: str, limit: int, fill: str
) -> None:
    """A trial's 500,000-character dedupe_id and 900 KB event_source_url were accepted, stored
    (the id indexed) and relayed; on PostgreSQL an id past 2.7 KB failed the store's index, a
    503 the client retries for ever. An id is at most 512 characters, a URL 8,192."""
    for length in (limit, limit + 1):
        event = purchase()
        _set(event, field, (fill + "x" * length)[:length])
        r = post_axon(gateway, json.dumps(batch(event)).encode())
        if length == limit:
            assert r.status_code == 200, r.text[:500]
            continue
        assert r.status_code == 400, r.text[:500]
        (problem,) = r.json()["problems"]
        assert (problem["path"], problem["code"]) == (f"events[0].{field}", "invalid_length"), problem
        assert f"{limit + 1:,} characters; at most {limit:,}" in problem["message"], problem


@pytest.mark.parametrize(("field", "value"), [("dedupe_id", "d" * 500_000), ("event_source_url", URL + "a" * 900_000)])
def test_the_trials_500000_character_dedupe_id_and_900_kb_url_are_400(gateway: Server, field: str, value: str) -> None:
    r = post_axon(gateway, json.dumps(batch(page_view(**{field: value}))).encode())
    assert r.status_code == 400, r.text[:500]
    (problem,) = r.json()["problems"]
    assert (problem["path"], problem["code"]) == (f"events[0].{field}", "invalid_length"), problem
    assert len(r.content) < 1000  # the answer says its length, never the value
    assert_still_serving(gateway)


def test_a_key_given_twice_in_an_object_is_read_as_its_last_value(gateway: Server) -> None:
    """Rule (docs/api.md, "A key given twice"): as JSON.parse, Go's encoding/json and Python's
    json read it, on the typed path and the one that lists problems alike."""
    first, last = purchase(), purchase()
    event = json.dumps(page_view(dedupe_id=first["dedupe_id"]))[:-1]
    twice = f'{event}, "dedupe_id": "{last["dedupe_id"]}"}}'
    answer = post_axon(gateway, f'{{"events": [{twice}]}}'.encode())
    assert answer.status_code == 200, answer.text
    refused = f'{{"events": [{twice[:-1]}, "name": "purchase"}}]}}'  # now a purchase with no data
    assert post_axon(gateway, refused.encode()).status_code == 400
    ids = {e["dedupe_id"] for e in stored(gateway, "px_std")}
    assert last["dedupe_id"] in ids and first["dedupe_id"] not in ids
    # Said, at its path, without either value (a trial found it taken silently).
    (said,) = [w for w in answer.json()["warnings"] if w["code"] == "duplicate_key"]
    assert said["path"] == "events[0].dedupe_id" and "2 times" in said["message"], said
    assert first["dedupe_id"] not in said["message"] and last["dedupe_id"] not in said["message"]
    twice_af = json.dumps(AF_BASE)[:-1] + ', "os": "15"}'
    answer = post_af(gateway, twice_af.encode())
    assert answer.status_code == 200, answer.text
    assert [(w["path"], w["code"]) for w in answer.json()["warnings"]] == [("os", "duplicate_key")]


@pytest.mark.parametrize("distinct", [False, True], ids=["one-key-50000-times", "20000-keys-twice"])
def test_keys_given_twice_by_the_thousand_are_answered_at_once(gateway: Server, distinct: bool) -> None:
    """Each object's keys are counted once (duplicates.repeated_keys): a key given 50,000 times
    is one warning, 20,000 keys each given twice are listed as any warnings are; neither
    holds the gateway (a check per key against those before it would be quadratic)."""
    event = json.dumps(batch(page_view(data={"user_id": "u1"})))
    distinct_pairs = "".join(f'"k{i}": 0, "k{i}": 1, ' for i in range(20_000))
    pairs = distinct_pairs if distinct else '"user_id": "u0", ' * 50_000
    body = event.replace('"data": {', '"data": {' + pairs, 1)
    with httpx.Client(base_url=gateway.url, timeout=30.0) as c:
        started = time.monotonic()
        r = c.post("/v1/event?pixel_id=px_std", content=body.encode(), headers=AXON)
        took = time.monotonic() - started
    assert r.status_code == 200, r.text[:500]
    said = [
        (w["path"], w["code"])
        for w in r.json()["warnings"]
        if w["code"] == "duplicate_key" or (w["code"] == "not_listed" and " duplicate_key " in w["message"])
    ]
    if distinct:
        assert said[:2] == [("events[0].data.k0", "duplicate_key"), ("events[0].data.k1", "duplicate_key")]
        assert len(said) == 1001 and said[-1] == ("events[0].data", "not_listed")
    else:
        assert said == [("events[0].data.user_id", "duplicate_key")]
        assert "50001 times" in r.json()["warnings"][-1]["message"]
    assert took < 10, took
    assert_still_serving(gateway)


@pytest.mark.parametrize(
    ("value", "what"),
    [("x" * 400_000 + "@", "a long run before an at sign"), ("+" * 400_000, "a long run of plus signs")],
)
def test_a_long_free_text_value_is_answered_without_holding_the_gateway(gateway: Server, value: str, what: str) -> None:
    """The scans for an email or a phone number in free text were quadratic in a run of
    characters: a 160 KB value of "x…@" held the event loop 73 s, one of "+…" 20 KB 2.3 s (a
    hostile client stalls every request so). Each is now read once: a 400 KB one is answered,
    its neighbours too, well within the client's 30 s."""
    event = purchase()
    event["data"]["note"] = value
    with httpx.Client(base_url=gateway.url, timeout=30.0) as c:
        r = c.post("/v1/event?pixel_id=px_std", json=batch(event), headers=AXON)
    assert r.status_code in (200, 400), (what, r.text[:500])
    assert_still_serving(gateway)
