"""Property: whatever body a client sends, a served gateway answers without a 5xx and never
stores a plain email address. Hypothesis throws generated JSON and mutated valid batches
(with a known plain address planted in keys and values, at any depth) at both APIs, on both
store backends; then the events, the journal and the SQLite files are searched for it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server, served_on
from tests.helpers import all_pages, page_view, purchase
from tests.storekit import BACKENDS

PLANT = "fuzz.person@example.org"
AXON = {"Authorization": "key-std", "content-type": "application/json"}
AF = {"authentication": "af-dev-key", "accept": "application/json", "content-type": "application/json"}
FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)

planted = st.sampled_from([PLANT, f" {PLANT.upper()} ", f"write to {PLANT} now", f"<{PLANT}>"])
text = st.one_of(st.text(max_size=12), planted, st.sampled_from(["web", "app", "+1 650 555 1212", "USD", ""]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**60, max_value=2**80),
    st.floats(allow_nan=False),
    text,
)
keys = st.one_of(
    st.text(max_size=8), planted, st.sampled_from(["email", "em", "phone_number", "user_id", "data", "name"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)


@pytest.fixture(params=BACKENDS, scope="module")
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with served_on(request.param, tmp_path_factory.mktemp(f"fuzz-{request.param}"), "capigate_fuzz") as (server, _):
        yield server


def places(doc: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside ``doc`` (not ``doc`` itself)."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield (*at, key)
        yield from places(value, (*at, key))


def mutated(data: st.DataObject, doc: Any) -> Any:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        spots = list(places(doc))
        if not spots:
            return doc
        *parent_path, key = data.draw(st.sampled_from(spots), label="at")
        parent = doc
        for part in parent_path:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "add", "plant"]), label="action")
        if action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(keys, label="key")] = data.draw(json_values, label="value")
        elif action == "plant":
            parent[key] = data.draw(planted, label="planted")
        else:
            parent[key] = data.draw(json_values, label="value")
    return doc


def valid_axon_batch() -> Any:
    first, second = purchase(), page_view()
    first["user_data"]["email"] = PLANT
    second["user_data"].update(phone="+1 650 555 1212", country_code="US")
    return {"events": [first, second]}


def valid_af_body() -> dict[str, Any]:
    return {
        "appsflyer_id": "1234567890123-1234567",
        "eventName": "af_purchase",
        "eventValue": {"af_revenue": "6", "af_currency": "USD", "af_content_id": "15854"},
        "email_hashed": PLANT,
        "ip": "203.0.113.7",
        "os": "14",
    }


def send_axon(server: Server, content: bytes) -> int:
    with server.client() as c:
        return c.post("/v1/event?pixel_id=px_std", content=content, headers=AXON).status_code


def send_af(server: Server, content: bytes) -> int:
    with server.client() as c:
        return c.post("/inappevent/com.example.shop", content=content, headers=AF).status_code


@pytest.mark.timeout(600)  # 150 served requests; a loaded 2-core runner needs more than the default
def test_fuzz_axon_no_5xx_and_no_stored_plain_email(gateway: Server) -> None:
    @FUZZ
    @given(data=st.data())
    def generated_and_mutated(data: st.DataObject) -> None:
        body = data.draw(st.one_of(json_values, st.builds(valid_axon_batch)), label="body")
        if data.draw(st.booleans(), label="mutate"):
            body = mutated(data, valid_axon_batch())
        if data.draw(st.booleans(), label="bare array") and isinstance(body, dict) and "events" in body:
            body = body["events"]
        status = send_axon(gateway, json.dumps(body).encode())
        assert status < 500, body

    generated_and_mutated()
    assert_no_plain_email(gateway)


@pytest.mark.timeout(600)  # 150 served requests; a loaded 2-core runner needs more than the default
def test_fuzz_appsflyer_no_5xx_and_no_stored_plain_email(gateway: Server) -> None:
    @FUZZ
    @given(data=st.data())
    def generated_and_mutated(data: st.DataObject) -> None:
        body: Any = data.draw(json_values)
        if data.draw(st.booleans(), label="mutate"):
            body = mutated(data, valid_af_body())
            if isinstance(body, dict) and isinstance(body.get("eventValue"), dict) and data.draw(st.booleans()):
                body["eventValue"] = json.dumps(body["eventValue"])
        status = send_af(gateway, json.dumps(body).encode())
        assert status < 500, body

    generated_and_mutated()
    assert_no_plain_email(gateway)


def assert_no_plain_email(gateway: Server) -> None:
    events = all_pages(gateway, "/api/events", "events")
    journal = all_pages(gateway, "/api/requests", "requests")
    assert events, "no body was accepted: the property was never tested on a stored event"
    for where, rows in (("events", events), ("journal", journal)):
        text = json.dumps(rows).lower()
        assert PLANT not in text, f"the plain address reached the {where}"
    if isinstance(gateway.db, Path):  # SQLite: its files too (PostgreSQL's are read through the API above)
        for db_file in gateway.db.parent.glob("capigate.db*"):
            assert PLANT.encode() not in db_file.read_bytes().lower(), db_file.name
