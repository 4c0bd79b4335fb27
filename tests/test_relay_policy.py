"""The relay's pure parts: what an answer means, giving up, and the request bodies and
destinations built from the configuration (the retry timing is tests/test_retry.py)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from capigate.appsflyer import MAX_BODY_BYTES, parse_event_time
from capigate.appsflyer.upstream import upstream_body as appsflyer_body
from capigate.axon.upstream import upstream_request as axon_request
from capigate.config import load_config
from capigate.errors import ConfigError
from capigate.relay import (
    APPSFLYER_URL,
    AXON_URL,
    Verdict,
    classify,
    relay_destination,
    targets,
)
from capigate.relay.policy import give_up_reason


@pytest.mark.parametrize(
    ("status", "events", "splittable", "verdict"),
    [
        (200, 100, True, Verdict.DELIVERED),
        (204, 1, False, Verdict.DELIVERED),
        (None, 5, True, Verdict.RETRY),
        (429, 5, True, Verdict.RETRY),
        (408, 5, True, Verdict.RETRY),
        (500, 5, True, Verdict.RETRY),
        (503, 1, False, Verdict.RETRY),
        (400, 100, True, Verdict.SPLIT),
        (413, 2, True, Verdict.SPLIT),
        (400, 1, True, Verdict.REFUSED),
        (400, 1, False, Verdict.REFUSED),
        (422, 1, False, Verdict.REFUSED),
        (401, 100, True, Verdict.BLOCKED),
        (403, 1, False, Verdict.BLOCKED),
        (404, 3, True, Verdict.BLOCKED),
        (302, 3, True, Verdict.BLOCKED),
    ],
)
def test_each_answer_has_one_verdict(status: int | None, events: int, splittable: bool, verdict: Verdict) -> None:
    assert classify(status, events=events, splittable=splittable) is verdict


def test_retrying_stops_at_max_attempts_or_max_age() -> None:
    hour = 3_600_000
    assert give_up_reason(3, 0, now_ms=hour, max_attempts=5, max_age_hours=2) is None
    assert "max_attempts = 5" in (give_up_reason(5, 0, now_ms=hour, max_attempts=5, max_age_hours=2) or "")
    assert "max_age_hours = 2" in (give_up_reason(1, 0, now_ms=2 * hour, max_attempts=5, max_age_hours=2) or "")
    said = [give_up_reason(1, 0, now_ms=ms, max_attempts=5, max_age_hours=0.002) for ms in (7_200, 750_000, 2 * hour)]
    assert said == [
        "gave up: queued 7.2 s ago (max_age_hours = 0.002)",  # it was "queued 0.0 h ago" (a trial)
        "gave up: queued 12.5 min ago (max_age_hours = 0.002)",
        "gave up: queued 2.0 h ago (max_age_hours = 0.002)",
    ]


def test_axon_body_joins_the_stored_events_unchanged() -> None:
    events = [{"name": "page_view", "dedupe_id": f"d{n}", "data": None} for n in range(3)]
    path, headers, body = axon_request("px 1", "key", [msgspec.json.encode(e) for e in events])
    assert (path, headers["authorization"]) == ("/v1/event?pixel_id=px%201", "key")
    assert msgspec.json.decode(body) == {"events": events}


def test_appsflyer_body_is_the_upstream_shape_again() -> None:
    stored = {"eventName": "x", "eventValue": {}, "custom_data": {"a": 1}, "eventTime_restamped": "t", "ip": "1.2.3.4"}
    assert msgspec.json.decode(appsflyer_body(msgspec.json.encode(stored))) == {
        "eventName": "x",
        "eventValue": "",
        "custom_data": '{"a":1}',
        "ip": "1.2.3.4",
    }
    as_sent = {"eventName": "x", "eventValue": '{"af_revenue":"1"}'}  # already a string: kept
    assert msgspec.json.decode(appsflyer_body(msgspec.json.encode(as_sent))) == as_sent


def test_appsflyer_body_gets_the_receipt_time_as_event_time_only_if_it_still_fits_1_kb() -> None:
    """Without eventTime AppsFlyer dates an event at its arrival, the relay's delivery (hours late
    after retries): the body carries the time capigate received it, unless that would take it
    past AppsFlyer's 1 KB; an eventTime the client sent is kept."""
    received = parse_event_time("2026-11-20 10:00:00.123")
    undated = {"appsflyer_id": "1700000000000-1", "eventName": "x", "eventValue": ""}
    dated = msgspec.json.decode(appsflyer_body(msgspec.json.encode(undated), received))
    assert dated == {**undated, "eventTime": "2026-11-20 10:00:00.123"}
    assert msgspec.json.decode(appsflyer_body(msgspec.json.encode({**undated, "eventTime": None}), received)) == dated
    own = {**undated, "eventTime": "2026-11-19 08:00:00.000"}
    assert msgspec.json.decode(appsflyer_body(msgspec.json.encode(own), received)) == own
    base = len(appsflyer_body(msgspec.json.encode({**undated, "custom_dimension": ""})))
    added = len(b',"eventTime":"2026-11-20 10:00:00.123"')
    for over in (0, 1):  # a body that fits with the time to the byte, and one a byte too long for it
        big = {**undated, "custom_dimension": "x" * (MAX_BODY_BYTES - base - added + over)}
        body = appsflyer_body(msgspec.json.encode(big), received)
        assert len(body) == MAX_BODY_BYTES + over - (added if over else 0)
        assert ("eventTime" in msgspec.json.decode(body)) is (over == 0)


CONFIG = """
[server]
admin_token = "admin-token"

[[axon.pixels]]
pixel_id = "px_a"
api_key = "inbound-a"
[axon.pixels.relay]

[[axon.pixels]]
pixel_id = "px_b"
api_key = "inbound-b"
[axon.pixels.relay]
url = "http://127.0.0.1:9/base/"
api_key_env = "PX_B_KEY"
batch_size = 10

[[axon.pixels]]
pixel_id = "px_off"
api_key = "k"
[axon.pixels.relay]
enabled = false

[[axon.pixels]]
pixel_id = "px_none"
api_key = "k"

[[appsflyer.apps]]
app_id = "com.example.shop"
keys = ["af-dev-key", "other"]
[appsflyer.apps.relay]
api_key = "s2s-token"
"""


def test_destinations_come_from_the_relay_tables(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    config = load_config(tmp_path / "c.toml")
    found = {t.name: t for t in targets(config, {"PX_B_KEY": "from-env"})}
    assert sorted(found) == ["appsflyer:com.example.shop", "axon:px_a", "axon:px_b"]
    assert (found["axon:px_a"].url, found["axon:px_a"].api_key) == (AXON_URL, "inbound-a")
    assert (found["axon:px_b"].url, found["axon:px_b"].api_key) == ("http://127.0.0.1:9/base", "from-env")
    assert found["axon:px_b"].events_per_request == 10
    af = found["appsflyer:com.example.shop"]
    assert (af.url, af.api_key, af.events_per_request) == (APPSFLYER_URL, "s2s-token", 1)
    assert relay_destination("axon", "px_a", config.pixel("px_a").relay) == "axon:px_a"  # type: ignore[union-attr]
    assert relay_destination("axon", "px_off", config.pixel("px_off").relay) is None  # type: ignore[union-attr]
    assert relay_destination("axon", "px_none", None) is None
    with pytest.raises(ConfigError, match="PX_B_KEY is not set"):
        targets(config, {})


@pytest.mark.parametrize(
    ("relay", "message"),
    [
        ('url = "ftp://x"', "url"),
        ('api_key = "a"\napi_key_env = "B"', "not both"),
        ("batch_size = 101", "batch_size"),
        ("concurrency = 0", "concurrency"),
        ("retries = 3", "unknown key"),
    ],
)
def test_a_wrong_relay_table_stops_start_up_with_its_key(tmp_path: Path, relay: str, message: str) -> None:
    text = f'[server]\nadmin_token = "admin-token"\n[[axon.pixels]]\npixel_id = "p"\napi_key = "k"\n[axon.pixels.relay]\n{relay}\n'
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(tmp_path / "c.toml")
    assert "axon.pixels[0].relay" in str(caught.value)
