"""Will it match? The match keys noted at ingest (capigate/matchkeys.py), the rules of
docs/quality.md (each test names its rule), GET /api/quality and ``capigate quality``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from capigate.axon.schema import UserData
from capigate.inspector.quality import quality_report
from capigate.matchkeys import AXON_KEYS, DEDUPE_BIT, appsflyer_match_keys, arrival, axon_match_keys
from capigate.store import QualityRow
from tests.conftest import ADMIN, Server, make_server
from tests.helpers import batch, purchase

HEX = hashlib.sha256(b"x").hexdigest()


def axon_row(events: int, *keys: tuple[str, int], dedupe: bool = True, duplicates: int = 0) -> QualityRow:
    mask = DEDUPE_BIT if dedupe else 0
    for key, how in keys:
        mask |= how << (2 * AXON_KEYS.index(key))
    return QualityRow(api="axon", source="px", name="purchase", match_keys=mask, events=events, duplicates=duplicates)


def reasons(rows: list[QualityRow]) -> dict[str, str]:
    (group,) = quality_report(rows, 0, 1).groups
    return {r.rule: r.level for r in group.reasons}


def test_match_keys_tell_sent_hashed_here_already_hashed_and_missing() -> None:
    user = UserData(
        client_ip_address="203.0.113.1", client_user_agent="UA", esi="web", aleid="a", email="a@b.co", phone=HEX
    )
    mask = axon_match_keys(user, has_dedupe_id=True)
    assert [arrival(mask, AXON_KEYS.index(k)) for k in ("aleid", "axwrt", "email", "phone", "ip_ua")] == [
        "sent", "missing", "hashed_here", "already_hashed", "sent",
    ]  # fmt: skip
    assert mask & DEDUPE_BIT
    af = appsflyer_match_keys(
        {"appsflyer_id": "1-2", "email_hashed": HEX, "idfa": "0" * 8 + "-0000-0000-0000-" + "0" * 12},
        {"email_hashed"},
        False,
    )
    assert arrival(af, 0) == "sent" and arrival(af, 2) == "missing"  # a zeroed idfa is withheld, not sent
    assert arrival(af, 7) == "hashed_here" and not af & DEDUPE_BIT


def test_rule_axon_click_id_poor_when_half_carry_no_click_id() -> None:
    found = reasons([axon_row(4, ("aleid", 1), ("ip_ua", 1)), axon_row(6, ("ip_ua", 1))])
    assert found["axon.click_id"] == "poor"
    (group,) = quality_report([axon_row(4, ("aleid", 1), ("ip_ua", 1)), axon_row(6, ("ip_ua", 1))], 0, 1).groups
    assert group.verdict == "poor"
    assert (
        "60 % of purchase events carry no click id (aleid/axwrt): attribution will rely on IP+UA"
        in group.reasons[0].text
    )


def test_rule_axon_click_id_fair_from_ten_percent() -> None:
    assert reasons([axon_row(9, ("axwrt", 1), ("email", 2)), axon_row(1, ("email", 2))])["axon.click_id"] == "fair"
    assert "axon.click_id" not in reasons([axon_row(10, ("axwrt", 1), ("email", 2))])


def test_rule_axon_email_phone_when_most_carry_neither() -> None:
    assert reasons([axon_row(10, ("aleid", 1))])["axon.email_phone"] == "fair"
    assert "axon.email_phone" not in reasons([axon_row(5, ("aleid", 1), ("phone", 3)), axon_row(5, ("aleid", 1))])


def test_rule_dedupe_id_and_rule_duplicates() -> None:
    found = reasons(
        [axon_row(8, ("aleid", 1), ("email", 3), duplicates=2), axon_row(2, ("aleid", 1), ("email", 3), dedupe=False)]
    )
    assert found == {"dedupe_id": "fair", "duplicates": "fair"}


def test_rule_hashed_here_is_a_note_that_leaves_the_verdict_good() -> None:
    (group,) = quality_report([axon_row(10, ("aleid", 1), ("email", 2))], 0, 1).groups
    assert [(r.rule, r.level) for r in group.reasons] == [("hashed_here", "note")]
    assert group.verdict == "good"


def test_rules_appsflyer_advertising_id_and_customer_user_id() -> None:
    row = QualityRow(api="appsflyer", source="app", name="af_purchase", match_keys=1, events=3, duplicates=0)
    (group,) = quality_report([row], 0, 1).groups
    assert {r.rule for r in group.reasons} == {"appsflyer.advertising_id", "appsflyer.customer_user_id", "dedupe_id"}
    assert group.verdict == "fair"


def test_rule_dedupe_id_tells_an_appsflyer_app_where_its_dedupe_key_comes_from() -> None:
    """AppsFlyer events have no `dedupe_id` field: telling their sender that they "carry no
    dedupe_id" named nothing they could send; the key is the app's `dedupe_key` setting."""
    row = QualityRow(api="appsflyer", source="app", name="af_purchase", match_keys=1, events=3, duplicates=0)
    (group,) = quality_report([row], 0, 1).groups
    (reason,) = [r for r in group.reasons if r.rule == "dedupe_id"]
    assert "dedupe_key" in reason.text and "af_order_id" in reason.text and "capigate.toml" in reason.text
    assert "carry no dedupe_id" not in reason.text


# --- through the gateway ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("quality"))
    srv.start()
    yield srv
    srv.stop()


def axon_event(user: dict[str, Any], dedupe_id: str | None) -> dict[str, Any]:
    event = purchase(dedupe_id=dedupe_id)
    event["user_data"] = {"client_ip_address": "203.0.113.7", "client_user_agent": "UA/1", "esi": "web", **user}
    if dedupe_id is None:
        del event["dedupe_id"]
    return event


def send(gateway: Server, *events: dict[str, Any], pixel: str = "px_lead", key: str = "key-lead") -> None:
    with gateway.client(headers={"Authorization": key}) as c:
        answer = c.post(f"/v1/event?pixel_id={pixel}", json=batch(*events))
    assert answer.status_code == 200, answer.text


def test_the_api_and_the_cli_give_the_figures_of_the_events_sent(gateway: Server) -> None:
    first = f"q-{uuid.uuid4().hex}"
    events = [
        axon_event({"aleid": "click-1", "email": "a@example.com"}, first),
        axon_event({"axwrt": "cookie", "email": HEX, "phone": "+16505551212"}, f"q-{uuid.uuid4().hex}"),
        axon_event({"user_id": "u1"}, None),
        axon_event({"client_id": "c1"}, f"q-{uuid.uuid4().hex}"),
    ]
    for e in events:
        e["name"] = "generate_lead"
        e["data"] = {"currency": "USD", "value": 1}
    send(gateway, *events)
    send(gateway, events[0])  # a duplicate, caught
    with gateway.admin() as c:
        answer = c.get("/api/quality", params={"source": "px_lead", "since": int(time.time() * 1000) - 60_000})
    assert answer.status_code == 200
    (group,) = answer.json()["groups"]
    cover = {c["key"]: c for c in group["coverage"]}
    assert group["events"] == 4 and group["duplicates"] == 1 and group["with_dedupe_id"] == 0.75
    assert (cover["email"]["hashed_here"], cover["email"]["already_hashed"], cover["email"]["missing"]) == (1, 1, 2)
    assert cover["phone"]["hashed_here"] == 1 and cover["aleid"]["sent"] == 1 and cover["ip_ua"]["share"] == 1.0
    assert group["verdict"] == "poor"  # half carry no click id
    assert any("50 % of generate_lead events carry no click id" in r["text"] for r in group["reasons"])

    cli = subprocess.run(
        [sys.executable, "-m", "capigate", "quality", "--url", gateway.url, "--token", ADMIN, "--source", "px_lead", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["groups"] == answer.json()["groups"]
    table = subprocess.run(
        [sys.executable, "-m", "capigate", "quality", "--url", gateway.url, "--token", ADMIN, "--source", "px_lead"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (
        table.returncode == 0 and "px_lead · generate_lead: POOR" in table.stdout and "[axon.click_id]" in table.stdout
    )


def test_an_identifier_the_gateway_hashed_is_counted_hashed_here_not_as_sent(fresh_server: Server) -> None:
    """A user_id holding a phone number (or a client_id an email address) is stored hashed
    (plain_pii_hashed); the report counted it "as sent", as if the plain value were kept."""
    events = [
        axon_event({"user_id": "+1 415 555 0123"}, f"q-{uuid.uuid4().hex}"),
        axon_event({"client_id": "jane@example.com"}, f"q-{uuid.uuid4().hex}"),
        axon_event({"user_id": "u1", "client_id": "c1"}, f"q-{uuid.uuid4().hex}"),
    ]
    with fresh_server.client(headers={"Authorization": "key-std"}) as c:
        answer = c.post("/v1/event?pixel_id=px_std", json=batch(*events))
    assert answer.status_code == 200, answer.text
    warned = {(w["path"], w["code"]) for w in answer.json()["warnings"]}
    assert {
        ("events[0].user_data.user_id", "plain_pii_hashed"),
        ("events[1].user_data.client_id", "plain_pii_hashed"),
    } <= warned
    cli = subprocess.run(
        [sys.executable, "-m", "capigate", "quality", "--url", fresh_server.url, "--token", ADMIN, "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    (group,) = json.loads(cli.stdout)["groups"]
    cover = {c["key"]: c for c in group["coverage"]}
    assert (cover["user_id"]["sent"], cover["user_id"]["hashed_here"], cover["user_id"]["missing"]) == (1, 1, 1)
    assert (cover["client_id"]["sent"], cover["client_id"]["hashed_here"], cover["client_id"]["missing"]) == (1, 1, 1)


def test_a_bad_window_is_a_400_naming_the_parameter(gateway: Server) -> None:
    with gateway.admin() as c:
        bad = c.get("/api/quality", params={"since": "yesterday"})
        backwards = c.get("/api/quality", params={"since": 2_000_000_000_000, "until": 1_000_000_000_000})
    assert bad.status_code == 400 and [p["path"] for p in bad.json()["problems"]] == ["query.since"]
    assert backwards.status_code == 400


def test_an_app_with_a_dedupe_key_is_told_its_events_lacked_the_value_not_to_set_the_key(gateway: Server) -> None:
    """com.example.orders has dedupe_key = "af_order_id"; its events sent without one, or a
    blank one, were told to "set the app's dedupe_key, e.g. af_order_id" (a trial): it is set."""
    values: list[dict[str, str]] = [{"af_order_id": "o-1"}, {"af_order_id": ""}, {"af_order_id": "  "}, {}, {}]
    for value in values:
        event = {
            "appsflyer_id": "1415211453000-6513711",
            "eventName": "af_purchase",
            "eventValue": json.dumps({"af_revenue": "5", "af_currency": "USD", **value}),
            "os": "14",
        }
        with gateway.client(headers={"authentication": "af-orders-key"}) as c:
            assert c.post("/inappevent/com.example.orders", json=event).status_code == 200
    table = subprocess.run(
        [sys.executable, "-m", "capigate", "quality", "--url", gateway.url, "--token", ADMIN, "--source", "com.example.orders"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    expected = "80 % of af_purchase events had a missing or blank af_order_id (the app's dedupe_key): "
    assert expected in table.stdout, table.stdout
    assert "set the app's dedupe_key" not in table.stdout


def test_test_events_are_not_counted(gateway: Server) -> None:
    event = axon_event({"aleid": "x"}, f"t-{uuid.uuid4().hex}")
    with gateway.client(headers={"Authorization": "key-std", "X-Capigate-Test": "quality"}) as c:
        assert c.post("/v1/event?pixel_id=px_std", json=batch(event)).status_code == 200
    with gateway.admin() as c:
        assert c.get("/api/quality", params={"source": "px_std"}).json()["groups"] == []
