"""The typed ingest path (capigate/axon/typed.py) and the slow path (rules.check_batch) give
the same answers: problems, warnings, events received, events stored and their payloads."""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bench.bodies import TOKEN, write_body_sets, write_lead_gen_sets
from capigate.axon.profiles import PROFILES
from capigate.axon.rules import DESCRIPTIVE_TEXT
from capigate.axon.schema import MAX_ID_CHARS, MAX_URL_CHARS
from capigate.axon.typed import check_body, path_differences
from tests.helpers import now_ms, page_view, purchase

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "capigate" / "examples"
CLIENTS = REPO / "tests" / "clients"
NOW = now_ms()
# What a field may become: each is applied to every field of every seed event.
REPLACEMENTS: list[Any] = [None, "", "x", "usd", "EUR", "12ab", -1, -0.5, 0, 1.5, 1_700_000_000, 10**20, True, [], {}]
# Values the rules correct or warn about in a field of their own (os, ifa, country_code).
REPLACEMENTS += ["Android", "00000000-0000-0000-0000-000000000000", "UK"]
# Past the bound of an id, and of a URL (schema.py), and at it: refused or taken alike by both paths.
REPLACEMENTS += ["i" * MAX_ID_CHARS, "i" * (MAX_ID_CHARS + 1), "https://u.example/" + "u" * MAX_URL_CHARS]


def _seed_events() -> list[dict[str, Any]]:
    seeds = [purchase(), page_view(), page_view(data={"user_id": "u1"})]
    for path in sorted(EXAMPLES.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(body, dict) and isinstance(body.get("events"), list):
            seeds += body["events"]
    seeds.append(purchase(measurement_partner_data=_mpd()))
    seeds.append(purchase(data={"currency": "usd", "value": 20, "transaction_id": "t", "items": [_item()]}))
    return seeds


def _item() -> dict[str, Any]:
    return {"item_id": "sku-1", "price": 10, "quantity": 2, "item_category_id": "187", "item_name": "Shoe"}


def _mpd() -> dict[str, Any]:
    return {
        "is_claimable": True,
        "attribution_model": "LAST_CLICK",
        "attribution_share": 1,
        "accounting_mode": "CASH",
        "first_visit_ts": 1_700_000_000,
    }


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside ``obj``, containers included."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (*path, key)
            yield from _leaves(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield (*path, i)
            yield from _leaves(value, (*path, i))


def _mutants(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield event
    for path in list(_leaves(event)):
        parent = event
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        if isinstance(parent, dict):
            dropped = copy.deepcopy(event)
            _at(dropped, path[:-1]).pop(last)
            yield dropped
            extra = copy.deepcopy(event)
            _at(extra, path[:-1])["unknown_" + str(last)] = 1
            yield extra
        for replacement in REPLACEMENTS:
            changed = copy.deepcopy(event)
            _at(changed, path[:-1])[last] = copy.deepcopy(replacement)
            yield changed


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _bodies() -> Iterator[bytes]:
    for seed in _seed_events():
        for mutant in _mutants(seed):
            yield msgspec.json.encode({"events": [mutant, seed]})
    for path in sorted(CLIENTS.glob("*.json")):  # the corpus of real clients' bodies
        case = json.loads(path.read_text(encoding="utf-8"))
        if case.get("api") == "axon":
            yield msgspec.json.encode(case["body"])


def test_typed_and_slow_paths_agree_on_every_mutant_of_every_field() -> None:
    compared = 0
    for body in _bodies():
        for profile in PROFILES.values():
            differences = path_differences(body, profile, now_ms=NOW)
            assert not differences, (profile.name, json.loads(body), differences)
            compared += check_body(body, profile, source="px", now_ms=NOW).typed
    assert compared > 400  # the typed path did take the clean mutants (490 of 3,000-odd checks)


@pytest.fixture(scope="module")
def bench_bodies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    root = tmp_path_factory.mktemp("bodies")
    sets = write_body_sets(root, batches=20, singles=50, population=500) | {
        "lead-" + k: v for k, v in write_lead_gen_sets(root, batches=20, singles=50, population=500).items()
    }
    # The load generators replace TOKEN with a request's own string; so does this.
    return {
        k: [s.path(i).read_bytes().replace(TOKEN.encode(), b"r%d" % i) for i in range(s.count)]
        for k, s in sets.items()
        if k != "w2-af"
    }


def test_the_bench_bodies_take_the_typed_path_with_the_same_answers(bench_bodies: dict[str, list[bytes]]) -> None:
    for key, bodies in bench_bodies.items():
        profile = PROFILES["lead_gen" if key.startswith("lead-") else "standard"]
        for body in bodies:
            check = check_body(body, profile, source="px", now_ms=NOW)
            assert check.typed and check.report.ok and check.events, key
            assert path_differences(body, profile, now_ms=NOW) == []


def test_the_typed_path_hands_unknown_keys_and_nulls_to_the_slow_path() -> None:
    unknown = purchase()
    unknown["user_data"]["favourite_colour"] = "blue"
    nulled = purchase(dedupe_id=None)
    for event in (unknown, nulled):
        check = check_body(msgspec.json.encode({"events": [event]}), PROFILES["standard"], source="px", now_ms=NOW)
        assert not check.typed and check.report.ok and len(check.events) == 1
    codes = {
        w.code
        for w in check_body(
            msgspec.json.encode({"events": [unknown]}), PROFILES["standard"], source="px", now_ms=NOW
        ).report.warnings
    }
    assert "unknown_field" in codes


def test_malformed_json_raises_the_decoder_error_of_the_untyped_decoder() -> None:
    body = b'{"events": [{"name": "purchase",'
    with pytest.raises(msgspec.DecodeError) as typed:
        check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
    with pytest.raises(msgspec.DecodeError) as plain:
        msgspec.json.decode(body)
    assert str(typed.value) == str(plain.value)


@pytest.mark.timeout(900)  # the Axon test modules in a child: over 120 s on a loaded runner
def test_every_body_of_the_axon_tests_gets_the_same_answer_from_both_paths(tmp_path: Path) -> None:
    """The Axon test modules and the clients corpus, run with CAPIGATE_AXON_CROSSCHECK: each
    server checks every body its typed path accepts with the slow path too, and writes a line
    per body."""
    modules = [
        m
        for m in (
            "tests/test_axon_rules.py",
            "tests/test_axon_protocol.py",
            "tests/test_pii.py",
            "tests/test_clients.py",
        )
        if (REPO / m).exists()
    ]
    modules += [
        str(p.relative_to(REPO))
        for p in sorted(REPO.glob("tests/test_axon_*.py"))
        if p.name != Path(__file__).name and str(p.relative_to(REPO)) not in modules
    ]
    env = {**os.environ, "CAPIGATE_AXON_CROSSCHECK": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *modules],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    lines = [line for log in tmp_path.glob("*.log") for line in log.read_text().splitlines()]
    assert [line for line in lines if not line.endswith(": same")] == []
    assert len(lines) > 10  # the accepted bodies (most bodies of the rule tests are refused or warned about)


def _codes_event(currency: str, country: str, zip_code: str) -> dict[str, Any]:
    event = page_view(
        name="purchase", data={"currency": currency, "value": 20, "transaction_id": "t", "items": [_item()]}
    )
    event["user_data"] |= {"email": "a@b.co", "country_code": country, "zip": zip_code}
    return event


@pytest.mark.parametrize(
    ("currency", "country", "zip_code"),
    [("USD", "US", "94105"), ("usd", "us", "94105-1234"), ("Eur", "de", " 10115 "), ("EUR", "US", " 94105")],
)
def test_rule_codes_read_upper_cased_on_the_typed_path_as_on_the_slow_one(
    currency: str, country: str, zip_code: str
) -> None:
    """A known currency or country code is taken as sent (it is upper-case already); any other
    is upper-cased, and a US zip cut to 5 digits, in the stored payload of both paths."""
    body = msgspec.json.encode({"events": [_codes_event(currency, country, zip_code)]})
    check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
    assert check.typed and check.report.ok
    assert path_differences(body, PROFILES["standard"], now_ms=NOW) == []
    stored = json.loads(check.events[0].payload)
    assert stored["data"]["currency"] == currency.upper()
    assert stored["user_data"]["country_code"] == country.upper()
    assert stored["user_data"]["zip"] == (zip_code.strip()[:5] if country.upper() == "US" else zip_code)
    cased = [w.path for w in check.report.warnings if w.code == "currency_not_upper_case"]
    assert cased == ([] if currency == currency.upper() else ["events[0].data.currency"])


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_rule_name_to_data_is_decided_by_the_event_types_tag_as_by_the_slow_path(profile: Any) -> None:
    """Each event name is its own Struct type, tagged by the name, whose data has that name's
    schema or is null as the name requires: every name (and one no profile has) with data
    null, empty or an object gets the slow path's answer, and a clean one the typed path."""
    from capigate.axon.schema import DATA_SCHEMAS

    datas = [None, {}, purchase()["data"], {"currency": "USD", "value": 1}, {"user_id": "u1"}, []]
    typed = set()
    for name in [*DATA_SCHEMAS, "refund"]:
        for data in datas:
            event = page_view(name=name, data=copy.deepcopy(data), event_source_url="https://shop.example.com/")
            event["user_data"]["user_id"] = "42"  # an identifier of every profile
            body = msgspec.json.encode({"events": [event]})
            assert path_differences(body, profile, now_ms=NOW) == [], (name, data)
            check = check_body(body, profile, source="px", now_ms=NOW)
            if check.typed:
                typed.add((name, json.dumps(data)))
    assert ("page_view", "null") in typed and ("generate_lead", '{"currency": "USD", "value": 1}') in typed
    assert (("purchase", json.dumps(purchase()["data"])) in typed) == ("purchase" in profile.events)


def test_an_empty_items_list_gets_the_slow_paths_empty_items_on_the_typed_path() -> None:
    event = page_view(name="purchase", data={**purchase()["data"], "items": []})
    body = msgspec.json.encode({"events": [event]})
    check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
    assert check.typed and check.report.ok
    assert [w.path for w in check.report.warnings if w.code == "empty_items"] == ["events[0].data.items"]
    assert path_differences(body, PROFILES["standard"], now_ms=NOW, typed=check) == []


def test_item_warnings_made_once_per_place_still_say_each_items_own_missing_fields() -> None:
    """The typed path reuses an item's missing_recommended warning for the same place and
    fields (typed._item_warning); batch after batch, and past the bound of what it keeps, each
    answer is still the slow path's: the fields that item lacks, at its own path."""
    from capigate.axon import typed

    def item(**drop: bool) -> dict[str, Any]:
        full = {**_item(), "item_variant_id": "v1", "image_url": "https://shop.example.com/i.png"}
        return {k: v for k, v in full.items() if not drop.get(k)}

    shapes = [{}, {"image_url": True}, {"item_name": True, "price": True}, {"item_variant_id": True}]
    for n in range(typed._MAX_ITEM_WARNINGS // 10):  # enough batches to fill and clear the kept warnings
        items = [item(**shapes[(n + k) % len(shapes)]) for k in range(1 + n % 3)]
        events = [page_view(name="purchase", data={**purchase()["data"], "items": items}) for _ in range(1 + n % 5)]
        body = msgspec.json.encode({"events": events})
        check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
        assert check.typed and check.report.ok
        assert path_differences(body, PROFILES["standard"], now_ms=NOW, typed=check) == []
    assert 0 < len(typed._ITEM_WARNINGS) <= typed._MAX_ITEM_WARNINGS


@pytest.mark.parametrize("field", ["user_data.user_id", "user_data.client_id", "user_data.zip", "data.user_id"])
def test_a_phone_number_in_an_identifier_goes_to_the_slow_path_which_hashes_or_drops_it(field: str) -> None:
    """An identifier holding a phone number in international form is the slow path's to treat,
    as one holding an email address is: the typed path encoded it as sent (a trial), and then
    let the hidden forms (full-width, percent-encoded) through: its payload gate looked for "+"
    alone, and then "00" and a valid number ("0016505551390"), which it kept as sent. Digits
    without ``+`` are an id, which the typed path keeps, 00 and digits that are no valid number
    too. In a US event's zip, which the typed path cuts to five characters, too."""
    parent, key = field.split(".")
    phones = ["+1 650 555 1390", " +16505551390", "tel:+16505551390", "\uff0b1 650 555 1390", "\ufe621 650 555 1390"]
    phones += ["%2B1%20650%20555%201390", "%252B16505551390", "\uff0b\uff11 \uff16\uff15\uff10 555 1390"]
    phones += ["0016505551390", "001 650 555 1390", "\uff10\uff101 650 555 1390"]
    ids = [("16505551390", True), ("0012345678", True), ("00501", True)]
    values = [(value, False) for value in phones] + ids
    for (value, typed), country in itertools.product(values, (None, "US")):
        event = page_view(data={"user_id": "u1"})
        event[parent][key] = value
        if country:
            event["user_data"]["country_code"] = country
        body = msgspec.json.encode({"events": [event]})
        check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
        assert (check.typed, check.report.ok) == (typed, True), (field, value, check.report.problems)
        assert path_differences(body, PROFILES["standard"], now_ms=NOW, typed=check) == []
        stored = json.loads(check.events[0].payload)[parent]
        if value in phones:
            assert "555 1390" not in json.dumps(stored) and "5551390" not in json.dumps(stored)
        elif key != "zip" or value == "00501":
            assert stored[key] == value


# Every string of an Axon event outside the identifiers (rules.PHONE_FIELDS) and the fields
# whose own rule refuses a phone number (name, event_source_url, a code): where it sits.
_TEXT_FIELDS = [
    *(f"user_data.{k}" for k in ("client_user_agent", "aleid", "axwrt", "alart", "sid", "ifa", "idfv", "os")),
    "data.transaction_id",
    *(f"data.items.0.{k}" for k in ("item_id", "item_name", "item_variant_id", "image_url", "affiliation")),
    *(f"data.items.0.{k}" for k in ("item_brand", "item_category", "item_category2", "item_category5")),
    "data.items.0.item_category_id",
    "measurement_partner_data.campaign_id",
    "measurement_partner_data.creative_set_id",
    "search.search_term",
]
_TEXT_PHONES = ["+44 20 7946 0751", "0044 20 7946 0752", "%2B442079460753", "\uff0b44 20 7946 0754"]
_TEXT_PHONES += [
    "tel:+442079460755",
    "call +44 20 7946 0756",
    "\uff10\uff1044 20 7946 0757",
    "+44\u201020\u20107946 0758",
]
_TEXT_IDS = ["size+10+1234567", "SKU-0012345678", "0012345678", "4155550123", "+51.507351", "+12499.00"]
_TEXT_IDS += ["2024-01-15T10:00:00+01:00", "00501", "red+shoes"]
_TEXT_PHONE = re.compile(r"7946\D{0,6}075")  # any of _TEXT_PHONES, however written
_TEXT_00_PHONES = ("0044 20 7946 0752", "\uff10\uff1044 20 7946 0757")


def _text_event(field: str, value: str) -> dict[str, Any]:
    if field.startswith("search."):
        return page_view(name="search", data={"search_term": value})
    event = page_view(name="purchase", data={**purchase()["data"], "items": [_item()]})
    event["measurement_partner_data"] = {**_mpd(), "campaign_id": "c1"}
    *parents, key = field.split(".")
    _at(event, tuple(int(p) if p.isdigit() else p for p in parents))[key] = value
    return event


@pytest.mark.parametrize("field", _TEXT_FIELDS)
def test_a_phone_number_in_any_other_field_goes_to_the_slow_path_which_drops_it(field: str) -> None:
    """Rule (identity.holds_international_phone): a phone number in international form in any
    string of an event is the slow path's to treat, as an email address there is: the typed
    path encoded sid, aleid, ifa, transaction_id, an item's id, search_term as sent (a trial).
    Its gates: a "+" before a digit, the bytes of a hidden form, a string starting with "00"
    that is a valid number so read. What only looks like one (a "+" after a letter or digit, a
    signed decimal, 00 and no valid number, digits) stays on the typed path where it was, kept
    as sent. Both paths answer alike."""
    at = field.replace("search.", "data.").replace(".0.", "[].")
    descriptive = at in DESCRIPTIVE_TEXT  # only a "+" marks a number there: 00 forms are a code
    for value in [*_TEXT_PHONES, *_TEXT_IDS]:
        body = msgspec.json.encode({"events": [_text_event(field, value)]})
        check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
        assert path_differences(body, PROFILES["standard"], now_ms=NOW, typed=check) == [], (field, value)
        if descriptive and value in _TEXT_00_PHONES:
            if check.report.ok:
                assert value in json.loads(check.events[0].payload).__repr__(), (field, value)
        elif value in _TEXT_PHONES:
            assert not check.typed, (field, value)
            assert _TEXT_PHONE.search(json.dumps(check.report.problems + check.report.warnings, default=str)) is None
            if field in ("data.transaction_id", "user_data.client_user_agent", "data.items.0.item_id"):
                # required: refused, as for an email
                where = f"events[0].{field.replace('.0.', '[0].')}"
                assert [(p.path, p.code) for p in check.report.problems] == [(where, "plain_pii")]
            elif field != "data.items.0.item_category_id":  # else refused as not numeric
                assert check.report.ok and _TEXT_PHONE.search(check.events[0].payload.decode()) is None, (field, value)
                where = f"events[0].{field.replace('search.', 'data.').replace('.0.', '[0].')}"
                assert (where, "plain_pii_dropped") in [(w.path, w.code) for w in check.report.warnings], (field, value)
        elif check.report.ok and field != "data.items.0.item_category_id":
            assert value in json.loads(check.events[0].payload).__repr__(), (field, value)
            assert check.typed, (field, value)


@pytest.mark.parametrize("phone", ["", " ", "+", "00"])
def test_an_empty_phone_or_one_without_digits_is_told_so_alike_by_both_paths(phone: str) -> None:
    event = purchase()
    event["user_data"] |= {"phone": phone}
    body = msgspec.json.encode({"events": [event]})
    assert path_differences(body, PROFILES["standard"], now_ms=NOW) == []
    check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
    [problem] = check.report.problems
    assert (problem.path, problem.code) == ("events[0].user_data.phone", "invalid_phone")
    assert "allowed" not in problem.message and ("empty" in problem.message or "no digits" in problem.message)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client_user_agent", " "),
        ("client_user_agent", ""),
        ("client_ip_address", " 203.0.113.7 "),
        ("client_ip_address", " 10.0.0.1"),
        ("client_ip_address", "203.0.113.7:80"),
    ],
)
def test_a_blank_user_agent_and_a_spaced_or_ported_address_get_one_answer_from_both_paths(
    field: str, value: str
) -> None:
    event = page_view()
    event["user_data"][field] = value
    body = msgspec.json.encode({"events": [event]})
    assert path_differences(body, PROFILES["standard"], now_ms=NOW) == []
    check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
    if value.strip() and field == "client_ip_address" and ":" not in value:
        assert check.typed and check.report.ok
        assert json.loads(check.events[0].payload)["user_data"][field] == value.strip()
    else:
        assert [p.path for p in check.report.problems] == [f"events[0].user_data.{field}"]


_ZONE_SAID = (
    "not an IPv4 or IPv6 address: an IPv6 zone index (a % and an interface) follows it, which names a network "
    "interface of the machine that saw the address and is not part of an address to send; send the address alone"
)


@pytest.mark.parametrize("address", ["fe80::1%eth0", "2001:db8::1%1", " fe80::1%eth0 "])
def test_an_ipv6_zone_index_is_told_so_alike_by_both_paths_and_appsflyer_says_ipv6(address: str) -> None:
    """A trial: client_ip_address "fe80::1%eth0" was told "not an IPv4 or IPv6 address", when
    what is wrong is the %eth0, a zone index, which no address sent to AppLovin holds. Never
    quoted (the reason names no value). AppsFlyer takes no IPv6 at all: it says that."""
    from capigate.appsflyer.rules import check_in_app_event

    event = page_view()
    event["user_data"]["client_ip_address"] = address
    body = msgspec.json.encode({"events": [event]})
    assert path_differences(body, PROFILES["standard"], now_ms=NOW) == []
    check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
    said = [(p.path, p.code, p.message) for p in check.report.problems]
    assert said == [("events[0].user_data.client_ip_address", "invalid_ip", _ZONE_SAID)]
    af_body = {"appsflyer_id": "1700000000000-1234567", "eventName": "af_login", "eventValue": "", "ip": address}
    af = check_in_app_event(msgspec.json.encode(af_body), app_id="com.example.app", received_at_ms=NOW)
    assert [(p.path, p.message) for p in af.problems] == [
        ("ip", "ip must be an IPv4 address; AppsFlyer does not take IPv6")
    ]


def _twice(body: bytes, key: bytes, first: bytes, *, sep: bytes = b"") -> bytes:
    """``body`` with ``key`` given first as ``first`` just before where it is given now."""
    at = body.index(b'"' + key + b'":')
    return body[:at] + b'"' + key + b'"' + sep + b":" + first + b"," + body[at:]


@pytest.mark.parametrize(
    ("key", "first", "sep", "path"),
    [
        (b"event_time", b"5", b"", "events[0].event_time"),
        (b"client_ip_address", b'"1.1.1.1"', b"", "events[0].user_data.client_ip_address"),
        (b"client_ip_address", b'"1.1.1.1"', b" ", "events[0].user_data.client_ip_address"),  # "k" :
        (b"os", b'"a"', b"", "events[0].user_data.os"),  # the shortest key: the fewest bytes added
        (b"events", b"[]", b"", "events"),
        (b"data", b"null", b"", "events[0].data"),
    ],
)
def test_a_key_given_twice_is_read_as_its_last_value_and_said_alike_by_both_paths(
    bench_bodies: dict[str, list[bytes]], key: bytes, first: bytes, sep: bytes, path: str
) -> None:
    """A trial stored event_time 5 from an event giving it twice, silently: the last value is
    read, as the real API's parser reads it, and a warning says so at the key's path."""
    clean = bench_bodies["w2-axon"][0].strip()
    body = _twice(clean, key, first, sep=sep)
    profile = PROFILES["standard"]
    check = check_body(body, profile, source="px", now_ms=NOW)
    assert check.report.ok, check.report.problems
    assert check.typed == (key not in (b"events", b"data"))  # msgspec checks the value dropped too
    said = [(w.path, w.code) for w in check.report.warnings if w.code == "duplicate_key"]
    assert said == [(path, "duplicate_key")]
    assert path_differences(body, profile, now_ms=NOW) == []
    kept = check_body(clean, profile, source="px", now_ms=NOW).events[0].payload
    assert json.loads(kept) == json.loads(check.events[0].payload)  # the last value, as if given once


def test_a_key_given_twice_is_said_where_a_float_or_an_escaped_colon_hides_its_bytes(
    bench_bodies: dict[str, list[bytes]],
) -> None:
    """The typed path reads a body again only when it is longer than the events encoded again
    (a repeated pair adds 7 bytes at least) or its count of colons differs: a float written in
    fewer bytes than msgspec writes it (1e2, encoded 100.0), or a colon written \\u003a, must
    not hide one. Each body here is as long as its events encoded, or has as many colons."""
    clean = json.loads(bench_bodies["w2-axon"][0])
    event = clean["events"][0]
    event["data"]["value"] = 1000000.0
    floated = msgspec.json.encode(clean).replace(b'"value":1000000.0', b'"value":1e6')
    floated = _twice(floated, b"os", b'"a"')  # 9 bytes added, 6 saved by 1e6, whose value has 6 zeros
    event["data"]["value"] = 1000000.0
    # One colon fewer as sent, one more given twice: as many colons as the events encoded.
    escaped = msgspec.json.encode({"events": [dict(event, dedupe_id="a:b")]}).replace(b"a:b", b"a\\u003ab")
    escaped = _twice(escaped.replace(b'"dedupe_id":', b'"dedupe_id"  :'), b"os", b'"a"')
    for body in (floated, escaped):
        check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
        assert check.typed, check.report.problems
        assert [(w.path, w.code) for w in check.report.warnings if w.code == "duplicate_key"] == [
            ("events[0].user_data.os", "duplicate_key")
        ]
        assert path_differences(body, PROFILES["standard"], now_ms=NOW) == []


def test_a_bare_array_gives_paths_under_events_and_a_clean_body_says_nothing(
    bench_bodies: dict[str, list[bytes]],
) -> None:
    events = json.loads(bench_bodies["w2-axon"][0])["events"]
    body = _twice(msgspec.json.encode(events), b"event_time", b"5")
    check = check_body(body, PROFILES["standard"], source="px", now_ms=NOW)
    assert not check.typed and check.report.ok
    assert [w.path for w in check.report.warnings if w.code == "duplicate_key"] == ["events[0].event_time"]
    for bodies in bench_bodies.values():
        for clean in bodies[:5]:
            for spaced in (clean, json.dumps(json.loads(clean)).encode()):
                check = check_body(spaced, PROFILES["standard"], source="px", now_ms=NOW)
                assert "duplicate_key" not in {w.code for w in check.report.warnings}
