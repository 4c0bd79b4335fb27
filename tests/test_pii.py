"""Plain email and phone are hashed before anything is written; they never reach the
database, the journal or a log line."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from capigate import personal
from tests.conftest import Server
from tests.helpers import batch, now_ms, page_view, paths, purchase, stored, wait_until
from tests.storekit import store_as_text

PLAIN_EMAIL = "Jane.Doe+Ads@Example.COM"
PLAIN_PHONE = "+1 (415) 555-0123"
AF_LOGIN = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "eventValue": "", "os": "14"}
AF_HEADERS = {"authentication": "af-dev-key", "Accept": "application/json"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def post(server: Server, *events: dict[str, object]) -> dict[str, object]:
    with server.client() as c:
        r = c.post("/v1/event?pixel_id=px_std", json=batch(*events), headers={"Authorization": "key-std"})
    return {**r.json(), "status": r.status_code}


def stored_user_data(server: Server, dedupe_id: str) -> dict[str, str]:
    with server.admin() as c:
        rows = c.get("/api/events", params={"source": "px_std", "limit": 1000}).json()["events"]
    return next(e["payload"]["user_data"] for e in rows if e["dedupe_id"] == dedupe_id)


def with_user(**user: object) -> dict[str, object]:
    event = page_view()
    event["user_data"].update(user)
    return event


def test_plain_email_is_trimmed_lowercased_and_hashed(fresh_server: Server) -> None:
    event = with_user(email=f"  {PLAIN_EMAIL} ")
    assert post(fresh_server, event)["status"] == 200
    assert stored_user_data(fresh_server, str(event["dedupe_id"]))["email"] == sha("jane.doe+ads@example.com")


def test_plain_phone_is_reduced_to_digits_with_country_code_and_hashed(fresh_server: Server) -> None:
    event = with_user(phone=PLAIN_PHONE)
    assert post(fresh_server, event)["status"] == 200
    assert stored_user_data(fresh_server, str(event["dedupe_id"]))["phone"] == sha("14155550123")


def test_sha256_hex_passes_through_lowercased(fresh_server: Server) -> None:
    hashed = sha("someone@example.com").upper()
    event = with_user(email=hashed, phone=sha("14155550123"))
    assert post(fresh_server, event)["status"] == 200
    user = stored_user_data(fresh_server, str(event["dedupe_id"]))
    assert user["email"] == hashed.lower()
    assert user["phone"] == sha("14155550123")


def test_invalid_email_and_phone_are_problems_that_do_not_echo_the_value(fresh_server: Server) -> None:
    event = with_user(email="not-an-email-secret", phone="call me maybe")
    body = post(fresh_server, event)
    assert body["status"] == 400
    assert paths(body) == {"events[0].user_data.email": "invalid_email", "events[0].user_data.phone": "invalid_phone"}
    text = str(body)
    assert "not-an-email-secret" not in text and "call me maybe" not in text


def test_plain_pii_never_reaches_the_database_journal_or_log(fresh_server: Server) -> None:
    accepted = with_user(email=PLAIN_EMAIL, phone=PLAIN_PHONE)
    refused = with_user(email=PLAIN_EMAIL, phone=PLAIN_PHONE)
    refused["event_time"] = "soon"
    invalid = with_user(email="secret-not-email", phone="+1 415 555 0199 ext")
    assert post(fresh_server, accepted)["status"] == 200
    assert post(fresh_server, refused)["status"] == 400
    assert post(fresh_server, invalid)["status"] == 400
    with fresh_server.admin() as c:
        journal = c.get("/api/requests", params={"limit": 100}).text
        events = c.get("/api/events", params={"limit": 100}).text
    fresh_server.stop()  # flush and close the store before reading its files
    needles = [
        PLAIN_EMAIL,
        PLAIN_EMAIL.lower(),
        "jane.doe",
        "415) 555",
        "4155550123",
        "secret-not-email",
        "555 0199",
        "4155550199",
    ]
    haystacks = {"journal": journal, "events": events, "log": fresh_server.output()}
    for db_file in Path(fresh_server.db).parent.glob("capigate.db*"):
        haystacks[db_file.name] = db_file.read_bytes().decode("latin-1")
    con = sqlite3.connect(fresh_server.db)
    haystacks["dump"] = "\n".join(con.iterdump())
    con.close()
    for where, text in haystacks.items():
        for needle in needles:
            assert needle not in text, f"{needle!r} found in {where}"


def test_phone_rule_national_number_is_read_in_the_events_country(fresh_server: Server) -> None:
    event = with_user(phone="(650) 555-1212", country_code="US")
    body = post(fresh_server, event)
    assert body["status"] == 200 and body["warnings"] == []
    assert stored_user_data(fresh_server, str(event["dedupe_id"]))["phone"] == sha("16505551212")


def stored_event(server: Server, dedupe_id: str) -> dict[str, object]:
    with server.admin() as c:
        rows = c.get("/api/events", params={"source": "px_std", "limit": 1000}).json()["events"]
    return next(e["payload"] for e in rows if e["dedupe_id"] == dedupe_id)


def test_an_email_address_percent_encoded_is_one_in_a_defined_field_too(fresh_server: Server) -> None:
    """Rule: an email address written %40 (a URL's, a form's) is an email address wherever a
    literal one would be caught: refused in a required field, hashed in an identifier,
    dropped in any other defined field, never stored or relayed plain."""
    in_url = page_view(event_source_url="https://shop.example.com/welcome?email=hank%40gmail.com")
    body = post(fresh_server, in_url)
    assert body["status"] == 400
    assert paths(body) == {"events[0].event_source_url": "plain_pii"}
    event = page_view(name="search", data={"search_term": "eve.q%40gmail.com"})
    event["user_data"]["client_id"] = "Eve%40Gmail.com"
    body = post(fresh_server, event)
    assert body["status"] == 200
    warned = paths(body, "warnings")
    assert warned["events[0].user_data.client_id"] == "plain_pii_hashed"
    assert warned["events[0].data.search_term"] == "plain_pii_dropped"
    kept = stored_event(fresh_server, str(event["dedupe_id"]))
    assert kept["user_data"]["client_id"] == sha("eve@gmail.com")  # type: ignore[index]
    assert "search_term" not in kept["data"]  # type: ignore[operator]
    fresh_server.stop()
    for db_file in Path(fresh_server.db).parent.glob("capigate.db*"):
        text = db_file.read_bytes().decode("latin-1").lower()
        assert "gmail" not in text, f"the address found in {db_file.name}"


def test_metas_user_data_names_are_hashed_or_dropped_not_kept_as_unknown_fields(fresh_server: Server) -> None:
    """Rule: a client moving over from Meta's Conversions API sends em, ph, fn, ln, db, ge, ct
    and st plain in user_data; em and ph are hashed as email and phone are, the others
    dropped, each with one warning (not also unknown_field, "kept as sent")."""
    person = {"ph": "+1 415 555 0123", "fn": "Kim", "ln": "Jones", "db": "19800101", "ge": "f", "ct": "springfield"}
    event = with_user(em="Kim.Jones@Example.com", st="ca", **person)
    body = post(fresh_server, event)
    assert body["status"] == 200
    warnings = [(w["path"], w["code"]) for w in body["warnings"]]  # type: ignore[attr-defined]
    assert ("events[0].user_data.em", "plain_pii_hashed") in warnings
    assert ("events[0].user_data.ph", "plain_pii_hashed") in warnings
    for key in ("fn", "ln", "db", "ge", "ct", "st"):
        assert (f"events[0].user_data.{key}", "plain_pii_dropped") in warnings
    assert len(warnings) == len(set(warnings)) == 8, warnings  # one warning a key, no unknown_field beside it
    user = stored_user_data(fresh_server, str(event["dedupe_id"]))
    assert user["em"] == sha("kim.jones@example.com") and user["ph"] == sha("14155550123")
    assert not {"fn", "ln", "db", "ge", "ct", "st"} & set(user)


def test_metas_names_already_hashed_are_kept_and_elsewhere_two_letters_are_not_personal(
    fresh_server: Server,
) -> None:
    event = with_user(fn=sha("kim"))
    event["data"] = {"ct": 3}  # a count, outside user_data
    event["name"] = "page_view"
    body = post(fresh_server, event)
    assert body["status"] == 200
    assert paths(body, "warnings") == {"events[0].user_data.fn": "unknown_field", "events[0].data.ct": "unknown_field"}
    kept = stored_event(fresh_server, str(event["dedupe_id"]))
    assert kept["user_data"]["fn"] == sha("kim") and kept["data"] == {"ct": 3}  # type: ignore[index]


def test_an_email_address_encoded_twice_or_with_a_full_width_at_is_one_too(fresh_server: Server) -> None:
    """Rule: an address hidden by a second percent-encoding (%2540) or a full-width at sign
    (U+FF20, U+FE6B) is an email address as %40 and @ are."""
    event = page_view(event_source_url="https://shop.example.com/?u=zz%2540gmail.com")
    assert paths(post(fresh_server, event)) == {"events[0].event_source_url": "plain_pii"}
    event = page_view(name="search", data={"search_term": "yy\uff20gmail.com", "notes": "hank%2540gmail.com"})
    event["user_data"]["client_id"] = "Eve\ufe6bGmail.com"
    body = post(fresh_server, event)
    assert body["status"] == 200
    warned = paths(body, "warnings")
    assert warned["events[0].user_data.client_id"] == "plain_pii_hashed"
    assert warned["events[0].data.search_term"] == warned["events[0].data.notes"] == "plain_pii_dropped"
    kept = stored_event(fresh_server, str(event["dedupe_id"]))
    assert kept["user_data"]["client_id"] == sha("eve@gmail.com")  # type: ignore[index]
    fresh_server.stop()
    for db_file in Path(fresh_server.db).parent.glob("capigate.db*"):
        assert "gmail" not in db_file.read_bytes().decode("utf-8", "replace").lower(), db_file.name


def test_metas_lists_of_emails_and_phones_are_hashed_each(fresh_server: Server) -> None:
    """Rule: Meta takes em and ph as lists too; each item is hashed as the single value is."""
    event = with_user(em=["A@Gmail.com", "b@example.org"], ph=["+1 415 555 0123"])
    body = post(fresh_server, event)
    assert body["status"] == 200
    warnings = [(w["path"], w["code"]) for w in body["warnings"]]  # type: ignore[attr-defined]
    assert warnings == [("events[0].user_data.em", "plain_pii_hashed"), ("events[0].user_data.ph", "plain_pii_hashed")]
    user = stored_user_data(fresh_server, str(event["dedupe_id"]))
    assert user["em"] == [sha("a@gmail.com"), sha("b@example.org")]  # type: ignore[comparison-overlap]
    assert user["ph"] == [sha("14155550123")]  # type: ignore[comparison-overlap]


def test_an_email_address_in_a_required_field_is_said_beside_the_events_other_problems(
    fresh_server: Server,
) -> None:
    """Rule: every problem in one answer. An event refused for a missing esi was answered
    with that alone; its event_source_url holding an address came at the next try."""
    event = page_view(event_source_url="https://shop.example.com/?u=hank%40gmail.com")
    del event["user_data"]["esi"]
    event["user_data"]["client_user_agent"] = "Mozilla hank@gmail.com"
    body = post(fresh_server, event)
    assert body["status"] == 400
    assert paths(body) == {
        "events[0].user_data.esi": "missing_field",
        "events[0].event_source_url": "plain_pii",
        "events[0].user_data.client_user_agent": "plain_pii",
    }
    assert "gmail" not in str(body)


def test_a_value_dropped_as_an_email_address_is_not_also_said_kept(fresh_server: Server) -> None:
    """An os holding an email address was answered unknown_enum "kept as sent" and
    plain_pii_dropped "it was dropped" at the same path: it was dropped, and only that is said."""
    event = with_user(os="jane80@example.com")
    body = post(fresh_server, event)
    assert body["status"] == 200, body
    at_os = [w for w in body["warnings"] if w["path"] == "events[0].user_data.os"]  # type: ignore[attr-defined]
    assert [w["code"] for w in at_os] == ["plain_pii_dropped"], at_os
    assert "os" not in stored_user_data(fresh_server, event["dedupe_id"])  # type: ignore[arg-type]


def test_a_phone_number_in_an_identifier_is_hashed_as_phone_is_and_in_zip_dropped(fresh_server: Server) -> None:
    """Rule: a phone number in international form (identity.is_international_phone) is treated
    in an Axon identifier as an email address is there: hashed as phone is in user_id,
    client_id and data.user_id (``plain_pii_hashed``), dropped from zip (``plain_pii_dropped``).
    A trial's `+16505551390` in user_data.user_id was stored and relayed plain, unwarned, where
    an email address was hashed and AppsFlyer's customer_user_id drops one. Digits without `+`
    are ids, kept as sent, as AppsFlyer keeps them."""
    phones = page_view(data={"user_id": "+1 650 555 1381"})
    phones["user_data"] |= {
        "user_id": "+16505551390", "client_id": "+1 650 555 1380", "zip": "+16505551379", "country_code": "US",
    }  # fmt: skip
    digits = page_view(data={"user_id": "16505551383"})
    digits["user_data"] |= {"user_id": "16505551382", "zip": "94105"}
    body = post(fresh_server, phones, digits)
    assert body["status"] == 200, body
    warned = paths(body, "warnings")
    assert {p: c for p, c in warned.items() if p.startswith("events[0]")} == {
        "events[0].user_data.user_id": "plain_pii_hashed",
        "events[0].user_data.client_id": "plain_pii_hashed",
        "events[0].data.user_id": "plain_pii_hashed",
        "events[0].user_data.zip": "plain_pii_dropped",
    }
    assert not any(p.startswith("events[1]") for p in warned), warned
    stored: Any = stored_event(fresh_server, str(phones["dedupe_id"]))
    user = stored["user_data"]
    assert (user["user_id"], user["client_id"]) == (sha("16505551390"), sha("16505551380"))
    assert stored["data"] == {"user_id": sha("16505551381")} and "zip" not in user
    kept: Any = stored_event(fresh_server, str(digits["dedupe_id"]))
    assert (kept["user_data"]["user_id"], kept["user_data"]["zip"], kept["data"]["user_id"]) == (
        "16505551382", "94105", "16505551383",
    )  # fmt: skip
    with fresh_server.admin() as c:
        journal = c.get("/api/requests", params={"limit": 100}).text
    fresh_server.stop()
    haystacks = {"journal": journal, "log": fresh_server.output()}
    for db_file in Path(fresh_server.db).parent.glob("capigate.db*"):
        haystacks[db_file.name] = db_file.read_bytes().decode("latin-1")
    for where, text in haystacks.items():
        for needle in ("6505551390", "555 1380", "6505551379", "555 1381"):
            assert needle not in text, f"{needle!r} found in {where}"


def test_a_phone_number_too_short_to_be_one_is_refused_on_both_apis(fresh_server: Server) -> None:
    """Rule (identity.normalise_phone): digits sent without a country code, and without a
    country to read them in, are hashed as if they held one; fewer than three cannot (a country
    code and two digits: `+12` is refused as too short), so `12` is refused as `+12` is. A trial's
    `"phone": "12"` was stored, hashed, with only phone_without_country_code. Three digits are
    still hashed as sent, with that warning."""
    short = with_user(phone="12")
    body = post(fresh_server, short)
    assert body["status"] == 400 and paths(body) == {"events[0].user_data.phone": "invalid_phone"}, body
    assert "too short" in str(body["problems"])
    body = post(fresh_server, with_user(phone="123"))
    assert body["status"] == 200 and paths(body, "warnings") == {
        "events[0].user_data.phone": "phone_without_country_code"
    }
    af_event = dict(AF_LOGIN)
    headers = AF_HEADERS
    with fresh_server.client(headers=headers) as c:
        for key in ("phone_number_hashed", "phone_number_e164_hashed"):
            answer = c.post("/inappevent/com.example.shop", json={**af_event, key: "12"})
            assert answer.status_code == 400 and paths(answer.json()) == {key: "invalid_hash"}, answer.text
            assert "too short" in answer.text
        answer = c.post("/inappevent/com.example.shop", json={**af_event, "phone_number_hashed": "123"})
        assert answer.status_code == 200, answer.text
        codes = {(w["path"], w["code"]) for w in answer.json()["warnings"]}
        assert ("phone_number_hashed", "phone_without_country_code") in codes, codes


def test_a_refused_events_value_holding_an_email_address_is_said_dropped_not_kept(fresh_server: Server) -> None:
    """A trial: in a refused batch (an invalid esi), an os holding an email address was answered
    unknown_enum "kept as sent", with no plain_pii_dropped, while the kept body dropped it. The
    answer says what the kept body shows: dropped, and only that, at its path."""
    event = with_user(esi="tv", os="jane82@example.com")
    body = post(fresh_server, event)
    assert body["status"] == 400, body
    at_os = [w for w in body["warnings"] if w["path"] == "events[0].user_data.os"]  # type: ignore[attr-defined]
    assert [w["code"] for w in at_os] == ["plain_pii_dropped"], at_os
    assert "kept as sent" not in str(at_os) and "jane82" not in str(body)
    with fresh_server.admin() as c:
        wait_until(lambda: bool(c.get("/api/requests").json()["requests"]), what="the journal")
        request_id = c.get("/api/requests", params={"limit": 1}).json()["requests"][0]["request_id"]
        kept = c.get(f"/api/requests/{request_id}").json()["body"]
    assert kept["events"][0]["user_data"]["os"] == "<dropped: personal data>"


def test_an_email_address_under_a_user_data_key_not_named_like_one_is_dropped_not_hashed(
    fresh_server: Server,
) -> None:
    """A trial: user_data.note holding an email address was hashed and kept under its key
    ("looks like user_data.email"). README's rule: a look-alike of email or phone by its KEY
    (em, email_address) is hashed; an email-shaped value under any other key is dropped, in
    an accepted event's answer and store, and in a refused one's answer and kept body."""
    event = with_user(note="jane406@example.com", email_address="Jane406@Example.com")
    body = post(fresh_server, event)
    assert body["status"] == 200, body
    warned = paths(body, "warnings")
    assert warned["events[0].user_data.note"] == "plain_pii_dropped"
    assert warned["events[0].user_data.email_address"] == "plain_pii_hashed"
    user = stored_user_data(fresh_server, str(event["dedupe_id"]))
    assert "note" not in user and user["email_address"] == sha("jane406@example.com")
    refused = with_user(esi="tv", note="jane407@example.com")
    body = post(fresh_server, refused)
    assert body["status"] == 400
    assert paths(body, "warnings")["events[0].user_data.note"] == "plain_pii_dropped"
    with fresh_server.admin() as c:
        wait_until(lambda: len(c.get("/api/requests").json()["requests"]) == 2, what="the journal")
        request_id = c.get("/api/requests", params={"limit": 1}).json()["requests"][0]["request_id"]
        kept = c.get(f"/api/requests/{request_id}").json()["body"]
    assert kept["events"][0]["user_data"]["note"] == "<dropped: personal data>"


def _refused_by(how: str) -> dict[str, Any]:
    """A purchase with email and phone in their fields, refused for something else."""
    event = purchase()
    event["user_data"].update(email=PLAIN_EMAIL, phone=PLAIN_PHONE)
    if how == "value":
        event["data"]["value"] = "ten"
    elif how == "enum":
        event["user_data"]["esi"] = "tv"
    elif how == "missing":
        del event["user_data"]["client_user_agent"]
    elif how == "time":
        event["event_time"] = 10**20
    elif how == "deep":
        deep: dict[str, Any] = {}
        for _ in range(40):
            deep = {"a": deep}
        event["extra"] = deep
    elif how == "nul":
        event["dedupe_id"] = "order\u0000-1"
    elif how == "phone":
        event["user_data"]["phone"] = "call me maybe"
    return event


REFUSALS = ("value", "enum", "missing", "time", "deep", "nul", "phone")


def test_email_and_phone_in_their_fields_are_not_said_dropped_when_the_event_is_refused(fresh_server: Server) -> None:
    """A trial: a refused event's correct user_data.email was warned plain_pii_dropped, "it was
    dropped", whatever refused it (a data.value of "ten", an esi of "tv", ...), in a mixed batch
    on each refused event; an accepted one's was not. The address is in its field, hashed as
    ingest hashes it, and the kept body holds it so: nothing of it is dropped, so nothing is said."""
    for how in REFUSALS:
        body = post(fresh_server, _refused_by(how))
        assert body["status"] == 400, (how, body)
        assert paths(body)  # refused for what it was refused for, and only that warned of
        said = {w["path"]: w["code"] for w in body["warnings"]}  # type: ignore[attr-defined]
        assert "events[0].user_data.email" not in said and "events[0].user_data.phone" not in said, (how, said)
    body = post(fresh_server, with_user(email=PLAIN_EMAIL, phone=PLAIN_PHONE), *map(_refused_by, REFUSALS[:3]))
    assert body["status"] == 400, body
    warned = {w["path"] for w in body["warnings"]}  # type: ignore[attr-defined]
    assert not {p for p in warned if p.endswith(("user_data.email", "user_data.phone"))}, warned
    with fresh_server.admin() as c:
        wait_until(lambda: len(c.get("/api/requests").json()["requests"]) == len(REFUSALS) + 1, what="the journal")
        request_id = c.get("/api/requests", params={"limit": 1}).json()["requests"][0]["request_id"]
        kept = c.get(f"/api/requests/{request_id}").json()["body"]
    for event in kept["events"]:
        assert event["user_data"]["email"] == sha("jane.doe+ads@example.com"), event


def test_a_refused_events_email_address_outside_its_field_is_still_said_dropped(fresh_server: Server) -> None:
    """The other side of the rule above: an address under another key of a refused event is
    dropped from the kept body, and said so."""
    event = _refused_by("value")
    event["user_data"]["note"] = "jane408@example.com"
    body = post(fresh_server, event)
    assert body["status"] == 400, body
    assert paths(body, "warnings")["events[0].user_data.note"] == "plain_pii_dropped"
    assert "events[0].user_data.email" not in paths(body, "warnings")


PERSONAL_KEYS = {
    "full_name": "Jane Quimby",
    "fullName": "Jane Quimby",
    "date_of_birth": "1980-02-29",
    "birthdate": "1980-02-29",
    "birthday": "02-29",
    "dob": "19800229",
    "street_address": "12 Quimby Lane",
    "home_address": "12 Quimby Lane",
    "ssn": "078-05-1120",
    "national_id": "QZ123456C",
}
NOT_PERSONAL = {"gender": "f", "city": "springfield", "country": "US", "zip": "94110", "adobe_id": "a1"}


def test_names_birth_dates_addresses_and_national_ids_under_unknown_keys_are_dropped(fresh_server: Server) -> None:
    """A trial: full_name, date_of_birth, street_address, ssn and the like, under keys neither
    API defines, were stored and relayed as sent (only first_name, last_name, surname, email
    and phone were named like personal data). They are dropped with plain_pii_dropped, on Axon
    at any depth and on AppsFlyer at the top level and inside eventValue; gender, city,
    country and zip are fields, kept."""
    event = page_view()
    event.update(PERSONAL_KEYS)
    event["data"] = {**PERSONAL_KEYS, **NOT_PERSONAL}
    body = post(fresh_server, event)
    assert body["status"] == 200, body
    warned = paths(body, "warnings")
    for key in PERSONAL_KEYS:
        assert warned[f"events[0].{key}"] == warned[f"events[0].data.{key}"] == "plain_pii_dropped", key
    kept = stored_event(fresh_server, str(event["dedupe_id"]))
    assert not set(PERSONAL_KEYS) & set(kept) and kept["data"] == NOT_PERSONAL, kept
    af_event = {
        "appsflyer_id": "1415211453000-6513711",
        "eventName": "af_login",
        "eventValue": json.dumps({"af_revenue": "6", **PERSONAL_KEYS, **NOT_PERSONAL}),
        **PERSONAL_KEYS,
    }
    headers = AF_HEADERS
    with fresh_server.client(headers=headers) as c:
        answer = c.post("/inappevent/com.example.shop", json=af_event)
    assert answer.status_code == 200, answer.text
    warned = paths(answer.json(), "warnings")
    for key in PERSONAL_KEYS:
        assert warned[key] == warned[f"eventValue.{key}"] == "plain_pii_dropped", key
    with fresh_server.admin() as c:
        stored = c.get("/api/events", params={"source": "com.example.shop"}).json()["events"][0]["payload"]
    assert not set(PERSONAL_KEYS) & set(stored), stored
    value = stored["eventValue"] if isinstance(stored["eventValue"], dict) else json.loads(stored["eventValue"])
    assert value == {"af_revenue": "6", **NOT_PERSONAL}, value


# A phone number in international form as a trial sent it other ways than "+" and digits
# (number -> the form it was written in).
_OTHER_FORMS = {
    "442079460112": "tel:+442079460112",
    "442079460113": "TEL: +44 20 7946 0113",
    "442079460114": "\uff0b44 20 7946 0114",  # a full-width plus sign
    "442079460115": "%2B44%2020%207946%200115",
    "442079460116": "%252B442079460116",  # percent-encoded twice
    "442079460117": "\uff0b\uff14\uff14 \uff12\uff10 7946 0117",  # full-width digits too
}


def test_a_phone_number_in_an_identifier_written_other_ways_is_hashed_or_dropped_on_both_apis(
    fresh_server: Server,
) -> None:
    """Rule (identity.is_international_phone): a phone number in international form is one
    however a client hides it: written full-width, percent-encoded, or as a tel: URI. A trial's
    "\uff0b44 20 7946 0114", "%2B44 20 7946 0115" and "tel:+442079460112" in user_id, client_id,
    data.user_id, zip and AppsFlyer's customer_user_id were stored and relayed plain, unwarned.
    Each is hashed (the digest of its + form) or dropped, as the + form is. 00 and digits that
    are no valid number so read are an id (0012345678, 00000012345), kept as sent."""
    events = _identifier_events(_OTHER_FORMS)
    ids = page_view(data={"user_id": "0012345678"})
    ids["user_data"] |= {"user_id": "0012345678", "client_id": "00000012345", "zip": "00501"}
    body = post(fresh_server, *events, ids)
    assert body["status"] == 200, body
    warned = paths(body, "warnings")
    _each_warned_hashed_or_dropped(warned, len(_OTHER_FORMS))
    _ids_stored_as_digests(fresh_server, events, _OTHER_FORMS)
    kept: Any = stored_event(fresh_server, str(ids["dedupe_id"]))
    assert (kept["user_data"]["user_id"], kept["user_data"]["client_id"], kept["data"]["user_id"]) == (
        "0012345678", "00000012345", "0012345678",
    )  # fmt: skip
    _customer_user_ids_warned(fresh_server, _OTHER_FORMS)
    _found_nowhere(fresh_server, ("7946 01", "794601", "7946%20", "7946.01", "\uff0b44", "%2B44", "%252B", "tel:"))


def test_a_phone_number_with_a_00_prefix_in_an_identifier_is_hashed_or_dropped_on_both_apis(
    fresh_server: Server,
) -> None:
    """Rule (identity.international_phone): ``00`` and a number that phonenumbers finds valid
    once the ``00`` is read as ``+`` is a phone number in international form, as its ``+`` form
    is: hashed in user_id, client_id, data.user_id (the digest of its + form), dropped from zip
    and AppsFlyer's customer_user_id. A trial's "0044 20 7946 0121" in user_id was stored and
    relayed plain, unwarned, where "+44 20 7946 0121" was hashed. A 00 id that is no valid
    number (0012345678, 0012345, a zip 00501) is an id, kept as sent: such ids are common."""
    forms = {"442079460121": "0044 20 7946 0121", "442079460122": "00442079460122", "33612345678": "0033 6 12 34 56 78"}
    ids = page_view(data={"user_id": "0012345"})
    ids["user_data"] |= {"user_id": "0012345678", "client_id": "0012345", "zip": "00501"}
    _posted_one_by_one_hashed_or_dropped(fresh_server, forms, ids)
    kept: Any = stored_event(fresh_server, str(ids["dedupe_id"]))
    assert (kept["user_data"]["user_id"], kept["user_data"]["client_id"], kept["user_data"]["zip"]) == (
        "0012345678", "0012345", "00501",
    )  # fmt: skip
    _customer_user_ids_warned(fresh_server, forms)
    _found_nowhere(fresh_server, ("7946 012", "79460121", "79460122", "12 34 56", "612345678"))


def test_a_phone_number_as_an_axon_name_is_refused_and_as_a_dedupe_id_hashed(fresh_server: Server) -> None:
    """Rule: a phone number in international form as an Axon event's name is refused
    (``plain_pii`` at its path), as AppsFlyer's eventName refuses one: a name cannot be hashed.
    As its dedupe_id it is hashed as phone is (``plain_pii_hashed``), as an email address there
    is: the event still deduplicates against a resend, by the digest. A trial's
    "+44 20 7946 0131" as a name was refused as an unknown event but kept plain in the journal
    (its keys and its body); as a dedupe_id it was stored plain."""
    named = page_view(name="+44 20 7946 0131")
    body = post(fresh_server, named)
    assert body["status"] == 400 and paths(body) == {"events[0].name": "plain_pii"}, body
    named = page_view(name="0044 20 7946 0132")
    body = post(fresh_server, named)
    assert body["status"] == 400 and paths(body) == {"events[0].name": "plain_pii"}, body
    for form, digits in (("+44 20 7946 0133", "442079460133"), ("0044 20 7946 0134", "442079460134")):
        event = page_view(dedupe_id=form)
        body = post(fresh_server, event)
        assert body["status"] == 200 and paths(body, "warnings") == {"events[0].dedupe_id": "plain_pii_hashed"}, body
        assert stored_event(fresh_server, sha(digits))["dedupe_id"] == sha(digits)
        body = post(fresh_server, event)  # sent again: a duplicate of the first, by the digest
        assert body["status"] == 200, body
    with fresh_server.admin() as c:
        rows = c.get("/api/events", params={"source": "px_std", "limit": 1000}).json()["events"]
    assert len(rows) == 2, rows
    _found_nowhere(fresh_server, ("7946 013", "79460131", "79460132", "79460133", "79460134"))


def test_a_phone_number_in_event_source_url_refuses_the_batch_as_an_email_address_does(fresh_server: Server) -> None:
    """Rule: a phone number in international form in event_source_url (a query value, a `tel:`
    link, percent-encoded) is `plain_pii` there, as an email address is: a trial's
    `?phone=%2B14155551101` was stored and relayed silently while `?email=…` refused the batch.
    The refused body keeps the URL as `<dropped: personal data>`. A `+` between words or after
    a digit (a query's space) and digits without `+` are not phone numbers: accepted."""
    for url in (
        "https://shop.example.com/p?phone=%2B14155551101",
        "https://shop.example.com/p?tel=+1 415 555 1102",
        "https://shop.example.com/tel:+14155551103",
        "https://shop.example.com/c?to=%252B44%25207946%25200958",
    ):
        event = page_view(event_source_url=url, dedupe_id=f"url-phone-{url[-4:]}")
        body = post(fresh_server, event)
        assert body["status"] == 400, (url, body)
        (problem,) = cast(list[dict[str, str]], body["problems"])
        assert (problem["path"], problem["code"]) == ("events[0].event_source_url", "plain_pii"), problem
        assert "phone number" in problem["message"], problem
    for url in (
        "https://shop.example.com/search?q=red+shoes+size+10+1234567",
        "https://shop.example.com/p?order=4155551104&coupon=A+B",
        "https://shop.example.com/p/ids/+123",
    ):
        assert post(fresh_server, page_view(event_source_url=url))["status"] == 200, url
    assert _kept_source_urls(fresh_server, 7) == {"<dropped: personal data>"}
    fresh_server.stop()
    for where, text in store_as_text(str(fresh_server.db), None).items():
        # "7946" alone matched a minute's epoch (1796579460000) in the per-minute totals.
        for needle in ("4155551101", "555 1102", "4155551103", "25207946", "79460958", "7946 0958"):
            assert needle not in text, f"{needle!r} found in {where}"


def _journaled(server: Server) -> int:
    with server.admin() as c:
        return len(c.get("/api/requests", params={"limit": 100}).json()["requests"])


def _kept_source_urls(server: Server, requests: int) -> set[str]:
    """The event_source_url of the first event of each refused body the journal kept, once it
    holds ``requests`` entries."""
    wait_until(lambda: _journaled(server) >= requests, what=f"{requests} journal entries")
    with server.admin() as c:
        rows = c.get("/api/requests", params={"status": 400, "limit": 10}).json()["requests"]
        kept = [c.get(f"/api/requests/{r['request_id']}").json()["body"] for r in rows]
    return {k["events"][0]["event_source_url"] for k in kept}


def test_credentials_in_event_source_url_are_refused_as_credentials_not_as_an_email_address(
    fresh_server: Server,
) -> None:
    """`https://zed.userinfo:pw@shop.example.com/p` was refused as "this field holds an email
    address" (a trial): it holds a URL's credentials, user and password before the host, which
    are never stored either. They refuse the batch with a problem of their own, `url_credentials`,
    a host without a dot too (no email shape at all: `admin:hunter2@localhost` passed), and the
    refused body keeps the URL dropped."""
    for url in (
        "https://zed.userinfo:pw@shop.example.com/p",
        "https://admin:hunter2@localhost:8443/checkout",
        "https://tokenonly@shop.example.com/p",
    ):
        event = page_view(event_source_url=url)
        body = post(fresh_server, event)
        assert body["status"] == 400, (url, body)
        (problem,) = cast(list[dict[str, str]], body["problems"])
        assert (problem["path"], problem["code"]) == ("events[0].event_source_url", "url_credentials"), problem
        assert "email" not in problem["message"] and "credentials" in problem["message"], problem
    assert _kept_source_urls(fresh_server, 3) == {"<dropped: personal data>"}
    fresh_server.stop()
    for where, text in store_as_text(str(fresh_server.db), None).items():
        for needle in ("zed.userinfo", "hunter2", "tokenonly"):
            assert needle not in text, f"{needle!r} found in {where}"


def test_credentials_in_another_url_field_are_dropped_as_credentials_not_as_an_email_address(
    fresh_server: Server,
) -> None:
    """An item's `image_url` of `https://admin:hunter4@localhost/i.png` was dropped with "this
    field holds an email address" (a re-trial): it holds a URL's credentials, dropped with
    `url_credentials` as event_source_url's are refused, whatever the host's shape."""
    urls = (
        "https://admin:hunter4@localhost/i.png",
        "https://zed.userinfo:pw4@shop.example.com/i.png",
        "https://tokenonly4@shop.example.com/i.png",
        "https://tok5@localhost/i.png",
    )
    for url in urls:
        event = purchase()
        event["data"]["items"][0]["image_url"] = url
        body = post(fresh_server, event)
        assert body["status"] == 200, (url, body)
        at = [w for w in cast(list[dict[str, str]], body["warnings"]) if "image_url" in w["path"]]
        assert [(w["path"], w["code"]) for w in at] == [("events[0].data.items[0].image_url", "url_credentials")], at
        assert "email" not in at[0]["message"] and "credentials" in at[0]["message"], at
        (row,) = stored(fresh_server, "px_std", dedupe_id=event["dedupe_id"])
        assert "image_url" not in row["payload"]["data"]["items"][0], row
    fresh_server.stop()
    for where, text in store_as_text(str(fresh_server.db), None).items():
        for needle in ("hunter4", "zed.userinfo", "tokenonly4", "tok5"):
            assert needle not in text, f"{needle!r} found in {where}"


def test_a_phone_of_allowed_characters_is_refused_for_its_real_reason(server: Server) -> None:
    """`(+1) 415 5551403` and `+1 415 555 1407 / +1 415 555 1408` were refused with "only
    digits, spaces and +()-./ allowed", which they are made of (a trial): the reason is a +
    not at the start, and two numbers in one field. Neither value is echoed."""
    reasons = {
        "(+1) 415 5551403": "a + only at the start",
        "+1 415 555 1407 / +1 415 555 1408": "two phone numbers",
        "415+5551403": "a + only at the start",
        "+1 415 555 1407 call": "only digits, spaces and +()-./ allowed",
    }
    for phone, reason in reasons.items():
        body = post(server, with_user(phone=phone))
        assert body["status"] == 400 and paths(body) == {"events[0].user_data.phone": "invalid_phone"}, body
        problems = body["problems"]
        assert isinstance(problems, list) and len(problems) == 1, problems
        message = problems[0]["message"]
        assert reason in message, (phone, message)
        assert "415" not in message, message


def test_an_empty_phone_or_one_without_digits_is_told_so(server: Server) -> None:
    """`""`, `" "` and `"+"` were refused with "not a phone number (only digits, spaces and
    +()-./ allowed)", which they are made of (a trial): empty, and no digits. `"00"` was told
    "a + only at the start"."""
    reasons = {
        "": "it is empty",
        " ": "it is empty",
        "+": "it has no digits",
        "( )": "it has no digits",
        "00": "no digits after the international prefix 00",
    }
    for phone, reason in reasons.items():
        body = post(server, with_user(phone=phone, email="jane@example.com"))
        assert body["status"] == 400 and paths(body) == {"events[0].user_data.phone": "invalid_phone"}, body
        problems = body["problems"]
        assert isinstance(problems, list) and len(problems) == 1, problems
        message = problems[0]["message"]
        assert reason in message and "allowed" not in message, (phone, message)


def test_an_email_wrapped_is_read_and_one_with_stray_punctuation_refused_on_both_apis(server: Server) -> None:
    """Rule (identity.normalise_email), through a served gateway: `<jane@example.com>`, a
    display name's address, a list's `,` after it or a pair of quotes around it was stored
    and relayed under the digest of the whole, brackets and all, unwarned (AppsFlyer said "it
    was normalised and hashed"); `jane@example.com/` and `jane@example..com` likewise. The
    first are the address, hashed as it is, with no warning of their own (as a `mailto:`
    URI's); the others are refused, invalid_email and invalid_hash, never echoed."""
    digest = sha("jane@example.com")
    for email in ("<jane@example.com>", "Jane Doe <Jane@Example.com>", "jane@example.com,", "'jane@example.com'"):
        event = with_user(email=email)
        body = post(server, event)
        assert body["status"] == 200 and body["warnings"] == [], body
        assert stored_user_data(server, str(event["dedupe_id"]))["email"] == digest
    for email in ("jane@example.com/", "jane@example..com", "<jane@example.com"):
        body = post(server, with_user(email=email))
        assert body["status"] == 400 and paths(body) == {"events[0].user_data.email": "invalid_email"}, body
        assert "jane" not in str(body["problems"]), body
    af_event = dict(AF_LOGIN)
    headers = AF_HEADERS
    with server.client(headers=headers) as c:
        sent = {**af_event, "email_hashed": "<jane@example.com>", "customer_user_id": f"cu-angle-{now_ms()}"}
        answer = c.post("/inappevent/com.example.shop", json=sent)
        assert answer.status_code == 200, answer.text
        assert paths(answer.json(), "warnings") == {"email_hashed": "plain_pii_hashed"}, answer.text
        [row] = stored(server, "com.example.shop", payload={"customer_user_id": sent["customer_user_id"]})
        assert row["payload"]["email_hashed"] == digest
        answer = c.post("/inappevent/com.example.shop", json={**af_event, "email_hashed": "jane@example..com"})
        assert answer.status_code == 400 and paths(answer.json()) == {"email_hashed": "invalid_hash"}, answer.text
        assert "jane" not in answer.text


def test_a_phone_with_its_trunk_prefix_after_the_country_code_is_hashed_without_it_on_both_apis(
    server: Server,
) -> None:
    """Rule (identity._without_trunk_prefix), through a served gateway: `+44 07700 900123` was
    stored and relayed as the digest of 4407700900123, with only phone_not_possible. It is
    hashed without the 0, and phone_trunk_prefix_removed says so, never echoing the value."""
    event = with_user(phone="+44 07700 900123")
    body = post(server, event)
    assert body["status"] == 200 and paths(body, "warnings") == {
        "events[0].user_data.phone": "phone_trunk_prefix_removed"
    }, body
    assert "7700" not in str(body["warnings"])
    assert stored_user_data(server, str(event["dedupe_id"]))["phone"] == sha("447700900123")
    af_event = dict(AF_LOGIN)
    headers = AF_HEADERS
    digests = {"phone_number_hashed": sha("447700900123"), "phone_number_e164_hashed": sha("+447700900123")}
    with server.client(headers=headers) as c:
        for key, digest in digests.items():
            sent = {**af_event, key: "+44 07700 900123", "customer_user_id": f"cu-trunk-{key}-{now_ms()}"}
            answer = c.post("/inappevent/com.example.shop", json=sent)
            assert answer.status_code == 200, answer.text
            warned = {(w["path"], w["code"]) for w in answer.json()["warnings"]}
            assert warned == {(key, "plain_pii_hashed"), (key, "phone_trunk_prefix_removed")}, answer.text
            assert "7700" not in answer.text
            [row] = stored(server, "com.example.shop", payload={"customer_user_id": sent["customer_user_id"]})
            assert row["payload"][key] == digest


def test_a_tel_uri_is_read_as_its_number_in_every_phone_field(server: Server) -> None:
    """Rule (identity.normalise_phone): a `tel:` URI (RFC 3966) is its number, as user_id's
    `tel:+1…` already was. `user_data.phone: "tel:+1-415-555-0188"` was refused invalid_phone,
    and AppsFlyer's `phone_number_e164_hashed: "tel:+442079461303"` invalid_hash (a trial):
    they are hashed as the plain number is there. An extension (`;ext=`) is no part of the
    number: left out, as the id fields' scanner leaves it (identity.international_phone); any
    other parameter (`;phone-context=`) refuses it."""
    for phone in ("tel:+1-415-555-0188", "TEL: +1 (415) 555-0188 "):
        event = with_user(phone=phone)
        body = post(server, event)
        assert body["status"] == 200 and body["warnings"] == [], body
        assert stored_user_data(server, str(event["dedupe_id"]))["phone"] == sha("14155550188")
    event = with_user(phone="tel:+1-415-555-0188;ext=12")
    body = post(server, event)
    assert body["status"] == 200 and body["warnings"] == [], body
    assert stored_user_data(server, str(event["dedupe_id"]))["phone"] == sha("14155550188")
    body = post(server, with_user(phone="tel:+1-415-555-0188;phone-context=example.com"))
    assert body["status"] == 400 and paths(body) == {"events[0].user_data.phone": "invalid_phone"}, body
    assert "tel:" in str(body["problems"]) and "0188" not in str(body), body
    af_event = dict(AF_LOGIN)
    headers = AF_HEADERS
    digests = {"phone_number_e164_hashed": sha("+442079461303"), "phone_number_hashed": sha("442079461303")}
    with server.client(headers=headers) as c:
        for key, digest in digests.items():
            sent = {**af_event, key: "tel:+442079461303", "customer_user_id": f"cu-tel-{key}-{now_ms()}"}
            plain = c.post(
                "/inappevent/com.example.shop", json={**sent, key: "+442079461303", "customer_user_id": "cu-plain"}
            )
            answer = c.post("/inappevent/com.example.shop", json=sent)
            assert answer.status_code == 200, answer.text
            assert answer.json()["warnings"] == plain.json()["warnings"], answer.text
            assert paths(answer.json(), "warnings")[key] == "plain_pii_hashed"
            [row] = stored(server, "com.example.shop", payload={"customer_user_id": sent["customer_user_id"]})
            assert row["payload"][key] == digest


def _posted_one_by_one_hashed_or_dropped(
    server: Server, forms: dict[str, str], ids: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Each of ``forms`` in user_id, client_id, data.user_id and zip, one event a request (the
    typed path): warned hashed (dropped from zip); ``ids``, an event of ids, kept unwarned."""
    events = _identifier_events(forms)
    for event in [*events, *([ids] if ids is not None else [])]:
        body = post(server, event)
        assert body["status"] == 200, body
        warned = paths(body, "warnings")
        if event is ids:
            assert warned == {}, warned
        else:
            assert warned == {
                "events[0].user_data.user_id": "plain_pii_hashed",
                "events[0].user_data.client_id": "plain_pii_hashed",
                "events[0].data.user_id": "plain_pii_hashed",
                "events[0].user_data.zip": "plain_pii_dropped",
            }, (event["user_data"], warned)
    _ids_stored_as_digests(server, events, forms)
    return events


# A phone number after "+" as a re-trial sent it in identifiers, stored plain, unwarned
# (its digits -> the form it was written in).
_PLUS_FORMS = {
    "14155551448": "+1/415/555/1448",
    "14155551451": "+(1) 415 555 1451",
    "14155551441": "+1\u2010415\u2011555\u20131441",
    "14155551445": "+1\u2014415\u2212555 1445",
    "14155551432": "+14155551432;ext=5",
    "14155551442": "+1 415 555 1442 x5",
    "14155551446": "+1 415 555 1446 ext. 5",
    "14155551443": "sms:+14155551443",
    "14155551444": "tel://+14155551444",
}


def test_a_phone_number_after_plus_with_other_separators_or_an_extension_in_an_identifier_is_hashed(
    fresh_server: Server,
) -> None:
    """Rule (identity.international_phone): a re-trial's "+1/415/555/1448", "+(1) 415 555 1451",
    "+1\u2010415\u2011555\u20131441" (Unicode dashes), "+14155551432;ext=5", "+1 415 555 1442 x5",
    "sms:+1…" and "tel://+1…" in user_id, client_id, data.user_id, zip and AppsFlyer's
    customer_user_id were stored plain, unwarned. Each is the number it holds: hashed (the
    digest of its + form, the extension no part of it) or dropped."""
    _posted_one_by_one_hashed_or_dropped(fresh_server, _PLUS_FORMS)
    _customer_user_ids_warned(fresh_server, _PLUS_FORMS)
    _found_nowhere(fresh_server, ("555/14", "555 14", "55514", "555\u201314", "415\u2212555", "sms:", "tel:"))


def test_a_phone_number_with_00_after_spaces_or_tel_in_an_identifier_is_hashed(fresh_server: Server) -> None:
    """Rule (identity.international_phone): "tel:0014155551419" and " 0044 20 7946 1320" (a
    leading space) in identifiers were stored plain, unwarned (a re-trial), though phone reads
    them as numbers. In a body that takes the slow path (one with a + form too) each is hashed or dropped when the number
    so read is valid; an id that is none (" 0012345678", "tel:0012345") is kept as sent."""
    forms = {"14155551419": "tel:0014155551419", "442079461320": " 0044 20 7946 1320"}
    ids = page_view(data={"user_id": " 0012345678"})
    ids["user_data"] |= {"user_id": "tel:0012345", "client_id": " 0012345678", "zip": " 00501"}
    events = _identifier_events(forms)
    # With a "+" form (the slow path): typed.py tells a "00" form by an id's first two
    # characters only, as looking for a space or "t" before one cost 1.7 % of the rules.
    plus = page_view()
    plus["user_data"] |= {"user_id": "+442079461399"}
    body = post(fresh_server, *events, ids, plus)
    assert body["status"] == 200, body
    warned = paths(body, "warnings")
    _each_warned_hashed_or_dropped(warned, len(forms))
    assert not any(p.startswith(f"events[{len(forms)}]") for p in warned), warned
    assert warned[f"events[{len(forms) + 1}].user_data.user_id"] == "plain_pii_hashed", warned
    _ids_stored_as_digests(fresh_server, events, forms)
    kept: Any = stored_event(fresh_server, str(ids["dedupe_id"]))
    assert (kept["user_data"]["user_id"], kept["data"]["user_id"]) == ("tel:0012345", " 0012345678")
    _customer_user_ids_warned(fresh_server, forms)
    _found_nowhere(fresh_server, ("14155551419", "7946 1320"))


def _ids_stored_as_digests(server: Server, events: list[dict[str, Any]], forms: dict[str, str]) -> None:
    """Each event's user_id, client_id and data.user_id stored as the digest of its number
    (``forms``' key, in ``events``' order), its zip dropped."""
    for event, digits in zip(events, forms, strict=True):
        stored: Any = stored_event(server, str(event["dedupe_id"]))
        user = stored["user_data"]
        assert (user["user_id"], user["client_id"], stored["data"]["user_id"]) == (sha(digits),) * 3, digits
        assert "zip" not in user


def _customer_user_ids_warned(server: Server, forms: dict[str, str]) -> None:
    """AppsFlyer warns of each of ``forms`` as a customer_user_id, not of an id starting 00."""
    af_event = dict(AF_LOGIN)
    headers = AF_HEADERS
    with server.client(headers=headers) as c:
        for form in forms.values():
            answer = c.post("/inappevent/com.example.shop", json={**af_event, "customer_user_id": form})
            assert answer.status_code == 200, answer.text
            codes = {(w["path"], w["code"]) for w in answer.json()["warnings"]}
            assert ("customer_user_id", "pii_in_customer_user_id") in codes, (form, codes)
        answer = c.post("/inappevent/com.example.shop", json={**af_event, "customer_user_id": "0012345678"})
        assert answer.status_code == 200 and "pii_in_customer_user_id" not in answer.text, answer.text


def _identifier_events(forms: dict[str, str]) -> list[dict[str, Any]]:
    """An event for each of ``forms``, in user_id, client_id, data.user_id and zip."""
    events = []
    for form in forms.values():
        event = page_view(data={"user_id": form})
        event["user_data"] |= {"user_id": form, "client_id": form, "zip": form}
        events.append(event)
    return events


def _each_warned_hashed_or_dropped(warned: dict[str, str], count: int) -> None:
    """The first ``count`` events of a batch each warned hashed in its ids, dropped from zip."""
    for i in range(count):
        assert {p: c for p, c in warned.items() if p.startswith(f"events[{i}]")} == {
            f"events[{i}].user_data.user_id": "plain_pii_hashed",
            f"events[{i}].user_data.client_id": "plain_pii_hashed",
            f"events[{i}].data.user_id": "plain_pii_hashed",
            f"events[{i}].user_data.zip": "plain_pii_dropped",
        }, i


# An epoch-ms timestamp of this day (13 digits): the dump writes each as text, where one such
# as 1796612555141 holds a needle like "55514" for a second in every hundred.
_EPOCH_MS = re.compile(r"(?<!\d)1\d{12}(?!\d)")


def _without_todays_timestamps(text: str) -> str:
    now, day = now_ms(), 86_400_000
    return _EPOCH_MS.sub(lambda m: "<ms>" if abs(int(m[0]) - now) < day else m[0], text)


def _found_nowhere(server: Server, needles: tuple[str, ...]) -> None:
    """None of ``needles`` in the store's files nor the log, once ``server`` has stopped (the
    day's timestamps left out, as no needle is one)."""
    server.stop()
    for where, found in {**store_as_text(str(server.db), None), "log": server.output()}.items():
        text = _without_todays_timestamps(found)
        for needle in needles:
            assert needle not in text, f"{needle!r} found in {where}"


# A trial's phone numbers in international form, written each way a client may, in Axon fields
# outside the identifiers (the form -> the field it is sent in); each was stored and relayed
# plain, unwarned, where an email address there is dropped.
_FIELD_PHONES = {
    "user_data.sid": "+44 20 7946 0711",
    "user_data.aleid": "0044 20 7946 0712",
    "user_data.axwrt": "%2B44%2020%207946%200713",
    "user_data.alart": "tel:+442079460714",
    "user_data.ifa": "\uff0b44 20 7946 0715",
    "user_data.idfv": "+44 (0)20 7946 0716",
    "user_data.os": "+442079460717",
    "data.items[0].item_name": "call me on +44 20 7946 0719",
    "data.items[0].item_brand": "+44 20 7946 0720",
    "measurement_partner_data.campaign_id": "+44-20-7946-0721",
}
_PHONE_NEEDLES = ("7946 07", "7946%20", "79460714", "\uff0b44", "79460717", "7946-07", "7946 08")


def _shop_event(values: dict[str, str]) -> dict[str, Any]:
    """A purchase with no plain email or phone (the typed path's), ``values`` set at their paths."""
    item = {"item_id": "sku-1", "item_name": "Shoe", "price": 10, "quantity": 1}
    event = page_view(
        name="purchase",
        data={"currency": "USD", "value": 10, "transaction_id": f"t-{now_ms()}", "items": [item]},
        measurement_partner_data={
            "is_claimable": True, "attribution_model": "LAST_CLICK", "attribution_share": 1,
            "accounting_mode": "CASH", "campaign_id": "c-1",
        },
    )  # fmt: skip
    for path, value in values.items():
        parent: Any = event
        *parents, key = path.replace("[0]", ".0").split(".")
        for part in parents:
            parent = parent[int(part)] if part.isdigit() else parent[part]
        parent[key] = value
    return event


def test_a_phone_number_in_any_other_axon_field_is_dropped_as_an_email_address_is(fresh_server: Server) -> None:
    """Rule (identity.holds_international_phone): a phone number in international form, `+`
    and 7 to 15 digits (hidden, a tel: URI, `00` and a valid number too), the whole value or
    inside free text, is treated in every Axon field as an email address there is: dropped with
    `plain_pii_dropped` at its path from an id (sid, aleid, axwrt, ifa; an item's item_id is
    required: refused there, test_pii_required.py),
    a code or free text (os, an item's name or brand, search_term, a campaign id); in an
    identifier that is hashed, one inside its text cannot be hashed: dropped. A trial found
    each of these stored and relayed plain. One field a request: the typed path's bodies."""
    for path, phone in _FIELD_PHONES.items():
        event = _shop_event({path: phone})
        body = post(fresh_server, event)
        assert body["status"] == 200, (path, body)
        treated = {p: c for p, c in paths(body, "warnings").items() if c.startswith("plain_pii")}
        assert treated == {f"events[0].{path}": "plain_pii_dropped"}, (path, body)
        kept: Any = stored_event(fresh_server, str(event["dedupe_id"]))
        parent, key = path.replace("[0]", "").rsplit(".", 1)
        holder = kept
        for part in parent.split("."):
            holder = holder[part][0] if part == "items" else holder[part]
        assert key not in holder, (path, kept)
    search = page_view(name="search", data={"search_term": "jane +44 20 7946 0722"})
    ids = page_view(data={"user_id": "order-+44 20 7946 0723"})
    ids["user_data"]["user_id"] = "u-0044 20 8123 4567 x"  # "00" inside: an id, kept as sent
    body = post(fresh_server, search, ids)
    assert body["status"] == 200, body
    assert {p: c for p, c in paths(body, "warnings").items() if c.startswith("plain_pii")} == {
        "events[0].data.search_term": "plain_pii_dropped",
        "events[1].data.user_id": "plain_pii_dropped",
    }, body
    assert stored_event(fresh_server, str(search["dedupe_id"]))["data"] == {}
    kept = stored_event(fresh_server, str(ids["dedupe_id"]))
    assert kept["data"] == {} and kept["user_data"]["user_id"] == "u-0044 20 8123 4567 x"
    _found_nowhere(fresh_server, (*_PHONE_NEEDLES, "7946 0722", "7946 0723"))


def test_a_phone_number_in_transaction_id_refuses_the_event_as_an_email_address_does(fresh_server: Server) -> None:
    """Rule: a purchase's transaction_id is required, so a phone number in international form
    there cannot be dropped: the event is refused (`plain_pii` at its path), as it is for an
    email address there, and the journal keeps the refused body with the value dropped."""
    for phone in ("+44 20 7946 0731", "0044 20 7946 0732"):
        event = _shop_event({"data.transaction_id": phone})
        body = post(fresh_server, event)
        assert body["status"] == 400 and paths(body) == {"events[0].data.transaction_id": "plain_pii"}, body
        assert "phone number" in str(body["problems"]) and "7946" not in str(body)
    _found_nowhere(fresh_server, ("7946 073",))


def test_values_that_only_look_like_a_phone_number_stay_as_sent_in_any_axon_field(fresh_server: Server) -> None:
    """Rule (identity.holds_international_phone), its false matches: a `+` after a letter or
    digit (a query's space, `size+10+1234567`; a time zone, `+01:00`), `00` inside a value
    (`SKU-0012345678`) or before digits that are no valid number (`0012345678`, an order's id),
    digits without `+` (`4155550123`), a signed decimal (a price `+12499.00`, a coordinate
    `+51.507351`) are no phone number: stored as sent, unwarned. Nor, in descriptive text (an
    item's name, brand or categories: rules.DESCRIPTIVE_TEXT), is `00` and a valid number: a
    product's or a model's code there; only a `+` marks one."""
    values = {
        "user_data.sid": "size+10+1234567",
        "user_data.aleid": "2024-01-15T10:00:00+01:00",
        "user_data.ifa": "4155550123",
        "data.transaction_id": "0012345678",
        "data.items[0].item_id": "SKU-0012345678",
        "data.items[0].item_variant_id": "+12499.00",
        "data.items[0].item_name": "+51.507351",
        "data.items[0].item_brand": "0044 20 8123 4567",
        "measurement_partner_data.campaign_id": "0012345",
    }
    event = _shop_event(values)
    search = page_view(name="search", data={"search_term": "red shoes size+10+1234567"})
    body = post(fresh_server, event, search)
    assert body["status"] == 200, body
    assert not [w for w in body["warnings"] if w["code"].startswith("plain_pii")], body  # type: ignore[attr-defined]
    kept: Any = stored_event(fresh_server, str(event["dedupe_id"]))
    item = kept["data"]["items"][0]
    assert (kept["user_data"]["sid"], kept["user_data"]["aleid"], kept["user_data"]["ifa"]) == (
        "size+10+1234567", "2024-01-15T10:00:00+01:00", "4155550123",
    )  # fmt: skip
    assert (item["item_id"], item["item_variant_id"], item["item_name"]) == (
        "SKU-0012345678",
        "+12499.00",
        "+51.507351",
    )
    assert item["item_brand"] == "0044 20 8123 4567"
    assert (kept["data"]["transaction_id"], kept["measurement_partner_data"]["campaign_id"]) == (
        "0012345678",
        "0012345",
    )
    assert stored_event(fresh_server, str(search["dedupe_id"]))["data"] == {"search_term": "red shoes size+10+1234567"}


# Words of personal data in their cases, separators, and the letters a case-blind search reads
# as others (the long s, the Kelvin sign, the dotted I, the sharp s), beside any short text.
_KEY_PARTS = st.one_of(
    st.sampled_from([
        "Email", "e-mail", "PHONE", "first_name", "LastName", "surName", "Birth", "DoB", "dob", "SSN", "ssn", "Street",
        "street_address", "HomeAddress", "address_line", "national-id", "passportNo", "mobile", "adobe", "classname",
        "_", "-", " ", "2", "\u017f", "\u212a", "\u0130", "\u00df",
    ]),
    st.text(max_size=3),
)  # fmt: skip


@settings(max_examples=3000, deadline=None, database=None, derandomize=True)
@given(key=st.lists(_KEY_PARTS, max_size=5).map("".join))
def test_a_key_is_named_like_personal_data_as_the_case_blind_rule_reads_it(key: str) -> None:
    """personal._named_like_personal searches a key in ASCII lower-cased, and reads its words
    only when it holds one of _PII_WORDS as text: 70,000 distinct unknown keys cost 4 µs each.
    Its answer is the case-blind rule's, for every key."""
    case_blind = re.compile(personal._PII_KEY.pattern, re.IGNORECASE)
    words = personal._WORDS.findall(key)
    expected = case_blind.search(key) is not None or any(w.lower() in personal._PII_WORDS for w in words)
    assert personal._named_like_personal.__wrapped__(key) is expected
