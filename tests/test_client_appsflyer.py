"""AppsFlyerClient and AsyncAppsFlyerClient against a real running capigate, and against a
real local server answering as AppsFlyer does (plain text) or failing on purpose."""

from __future__ import annotations

import asyncio
import math
import threading
import uuid
from typing import Any

import msgspec
import pytest

from capigate import (
    AppsFlyerClient,
    AsyncAppsFlyerClient,
    InAppEvent,
    InvalidEvents,
    Problem,
    RetryPolicy,
    hash_email,
    hash_phone,
    hash_phone_e164,
    in_app_event,
)
from capigate.identity import sha256_hex
from tests.conftest import Server
from tests.fault_proxy import Reply, fault_proxy
from tests.helpers import stored

FAST = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
APP, KEY = "com.example.shop", "af-dev-key"


def tag() -> str:
    return f"sdk-af-{uuid.uuid4().hex[:12]}"


def purchase(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "appsflyer_id": "1415211453000-6513711",
        "eventName": "af_purchase",
        "eventValue": {"af_revenue": "6", "af_content_id": "15854", "af_order_id": uuid.uuid4().hex},
        "eventCurrency": "USD",
        "ip": "8.8.8.8",
        "os": "14",
    }
    event.update(fields)
    return event


# --- building -------------------------------------------------------------------------


def test_building_an_event_with_a_wrong_value_fails_where_it_is_built() -> None:
    with pytest.raises(InvalidEvents) as caught:
        in_app_event("not-an-id", "af_purchase", {"af_revenue": "$6"}, event_currency="dollars", idfa=42)
    assert {p.path: p.code for p in caught.value.problems} == {
        "appsflyer_id": "invalid_format",
        "eventCurrency": "invalid_format",
        "idfa": "wrong_type",
        "eventValue.af_revenue": "not_numeric",
    }


def test_building_refuses_an_infinite_revenue_that_json_would_send_as_null() -> None:
    with pytest.raises(InvalidEvents) as caught:
        in_app_event("1415211453000-6513711", "af_purchase", {"af_revenue": -math.inf}, event_currency="USD")
    assert [(p.path, p.code) for p in caught.value.problems] == [("eventValue.af_revenue", "not_finite")]


def test_building_refuses_unknown_fields_as_typos() -> None:
    with pytest.raises(InvalidEvents) as caught:
        in_app_event("1415211453000-6513711", "af_login", customer_userid="u1")
    assert [(p.path, p.code) for p in caught.value.problems] == [("customer_userid", "unknown_field")]


def test_building_stringifies_event_value_and_formats_event_time() -> None:
    event = in_app_event(
        "1415211453000-6513711", "af_purchase", {"af_revenue": 6}, event_currency="USD", event_time_ms=1_700_000_000_123
    )
    assert isinstance(event, InAppEvent)
    assert event.eventValue == '{"af_revenue":6}'
    assert event.eventTime == "2023-11-14 22:13:20.123"


def test_building_keeps_an_event_whose_personal_data_send_drops_as_the_gateway_does(server: Server) -> None:
    """A trial: the builder raised InvalidEvents for an email address in a custom eventValue
    parameter, with the rules' message "it was dropped, and eventValue is stored and relayed
    without it", while the gateway and send(dict) drop it with that warning and send the rest.
    The builder now agrees with them: the event is built, and send drops the value and warns."""
    event = in_app_event("1415211453000-6513711", "af_purchase", {"af_revenue": 6.5, "buyer": "x@y.com"})
    t = tag()
    with fault_proxy(upstream=server.url) as proxy, AppsFlyerClient(APP, KEY, base_url=proxy.url, test_tag=t) as c:
        result = c.send([event])
    assert result.ok and [r.stored for r in result.requests] == [1]
    dropped = [w for w in result.warnings if w.code == "plain_pii_dropped"]
    assert [w.path for w in dropped] == ["eventValue.buyer"], result.warnings
    assert "eventValue is stored and relayed without it" in dropped[0].message
    assert b"x@y.com" not in proxy.seen[0].body
    assert stored(server, test_tag=t)[0]["payload"]["eventValue"] == {"af_revenue": 6.5}


# --- against a real gateway -----------------------------------------------------------


def test_accepted_event_reports_stored_count(server: Server) -> None:
    t = tag()
    with AppsFlyerClient(APP, KEY, base_url=server.url, test_tag=t) as client:
        result = client.send([purchase(), in_app_event("1415211453000-6513711", "af_login", os="14")])
    assert result.ok and [r.stored for r in result.requests] == [1, 1]
    assert [r.first_event for r in result.requests] == [0, 1]
    assert len(stored(server, test_tag=t)) == 2


def test_plain_pii_is_hashed_and_event_value_stringified_before_it_leaves(server: Server) -> None:
    t = tag()
    event = purchase(email_hashed=" Jane@Example.com ", phone_number_hashed="+1 650 555 1212")
    event["phone_number_e164_hashed"] = "+16505551212"
    with fault_proxy(upstream=server.url) as proxy, AppsFlyerClient(APP, KEY, base_url=proxy.url, test_tag=t) as c:
        result = c.send([event])
    assert result.ok and result.warnings == []  # nothing left for the server to warn about
    wire = msgspec.json.decode(proxy.seen[0].body)
    assert wire["email_hashed"] == hash_email("jane@example.com")
    assert wire["phone_number_hashed"] == hash_phone("16505551212") == sha256_hex("16505551212")
    assert wire["phone_number_e164_hashed"] == hash_phone_e164("16505551212") == sha256_hex("+16505551212")
    assert isinstance(wire["eventValue"], str) and msgspec.json.decode(wire["eventValue"])["af_revenue"] == "6"
    assert b"Jane" not in proxy.seen[0].body
    assert proxy.seen[0].headers["authentication"] == KEY
    assert stored(server, test_tag=t)[0]["payload"]["email_hashed"] == wire["email_hashed"]


def test_invalid_events_raise_one_error_with_every_path_before_sending() -> None:
    events = [purchase(), purchase(appsflyer_id="123"), purchase(eventValue="{not json"), purchase(ip="::1")]
    with AppsFlyerClient(APP, KEY, base_url="http://127.0.0.1:9") as client, pytest.raises(InvalidEvents) as caught:
        client.send(events)
    assert {p.path: p.code for p in caught.value.problems} == {
        "events[1].appsflyer_id": "invalid_format",
        "events[2].eventValue": "malformed_json",
        "events[3].ip": "invalid_ip",
    }


def test_one_event_given_to_send_instead_of_a_list_says_so_before_sending() -> None:
    """AppsFlyer takes one event a request, but send takes a list as AxonClient's does: a dict
    alone was read as its keys, a problem for each."""
    message = "send takes a list of events; got one dict: send([event])"
    with AppsFlyerClient(APP, KEY, base_url="http://127.0.0.1:9") as client, pytest.raises(InvalidEvents) as caught:
        client.send(purchase())
    assert caught.value.problems == [Problem("events", "not_a_list", message)]

    async def main() -> None:
        async with AsyncAppsFlyerClient(APP, KEY, base_url="http://127.0.0.1:9") as client:
            with pytest.raises(InvalidEvents, match="got one dict"):
                await client.send(purchase())

    asyncio.run(main())


def test_wrong_key_is_refused_with_401_and_not_retried(server: Server) -> None:
    with AppsFlyerClient(APP, "wrong", base_url=server.url, retry=FAST) as client:
        result = client.send([purchase()])
    (request,) = result.requests
    assert (request.ok, request.status, request.attempts) == (False, 401, 1)
    assert request.problems[0].code == "unauthorized"


def test_ios_app_id_without_id_prefix_is_refused_before_appsflyer_drops_it() -> None:
    with pytest.raises(ValueError, match="id123456789"):
        AppsFlyerClient("123456789", "key")


def test_forced_5xx_is_retried_until_accepted(server: Server) -> None:
    t = tag()
    with (
        fault_proxy(upstream=server.url, faults=[Reply(500, b"Internal Server Error")]) as proxy,
        AppsFlyerClient(APP, KEY, base_url=proxy.url, retry=FAST, test_tag=t) as client,
    ):
        result = client.send([purchase()])
    assert result.ok and result.requests[0].attempts == 2
    assert proxy.statuses() == [500, 200]
    assert len(stored(server, test_tag=t)) == 1


def test_rate_limited_429_is_retried(server: Server) -> None:
    faults = [Reply(429, headers={"Retry-After": "0"}), Reply(429)]
    with (
        fault_proxy(upstream=server.url, faults=faults) as proxy,
        AppsFlyerClient(APP, KEY, base_url=proxy.url, retry=FAST) as client,
    ):
        result = client.send([purchase()])
    assert result.ok and result.requests[0].attempts == 3


def test_read_timeout_is_not_retried_because_appsflyer_does_not_deduplicate() -> None:
    with (
        fault_proxy(faults=[Reply(delay_s=0.5)], then=Reply(200, b"OK")) as proxy,
        AppsFlyerClient(APP, KEY, base_url=proxy.url, retry=FAST, timeout=0.2) as client,
    ):
        result = client.send([purchase()])
    assert not result.ok and result.requests[0].attempts == 1 and len(proxy.seen) == 1


def test_plain_text_ok_of_real_appsflyer_is_success_with_unknown_counts() -> None:
    answer = Reply(200, b"OK", {"Content-Type": "text/plain"})
    with fault_proxy(then=answer) as proxy, AppsFlyerClient(APP, KEY, base_url=proxy.url) as client:
        result = client.send([purchase()])
    assert result.ok and result.requests[0].stored is None
    assert proxy.seen[0].path == f"/inappevent/{APP}"
    assert proxy.seen[0].headers["accept"] == "application/json"


def test_plain_text_refusal_keeps_appsflyer_text() -> None:
    answer = Reply(400, b"Bad request", {"Content-Type": "text/plain"})
    with fault_proxy(then=answer) as proxy, AppsFlyerClient(APP, KEY, base_url=proxy.url, retry=FAST) as client:
        result = client.send([purchase()])
    assert result.requests[0].error == "HTTP 400 Bad request" and len(proxy.seen) == 1


def test_events_go_out_concurrently_one_request_each(server: Server) -> None:
    t = tag()
    with (
        fault_proxy(upstream=server.url) as proxy,
        AppsFlyerClient(APP, KEY, base_url=proxy.url, test_tag=t, max_concurrency=8) as client,
    ):
        result = client.send([purchase() for _ in range(40)])
    assert result.ok and len(result.requests) == 40
    assert len(proxy.seen) == 40 and len({s.client_port for s in proxy.seen}) > 1
    assert len(stored(server, test_tag=t)) == 40


def test_threads_share_one_client_under_concurrency(server: Server) -> None:
    t = tag()
    oks: list[bool] = []
    with AppsFlyerClient(APP, KEY, base_url=server.url, test_tag=t) as client:

        def produce() -> None:
            oks.append(client.send([purchase() for _ in range(10)]).ok)

        threads = [threading.Thread(target=produce) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert oks == [True] * 6 and len(stored(server, test_tag=t)) == 60


def test_async_client_sends_concurrently(server: Server) -> None:
    t = tag()

    async def main() -> list[Any]:
        async with AsyncAppsFlyerClient(APP, KEY, base_url=server.url, test_tag=t) as client:
            return await asyncio.gather(*(client.send([purchase(), purchase()]) for _ in range(15)))

    results = asyncio.run(main())
    assert all(r.ok for r in results) and len(stored(server, test_tag=t)) == 30


def test_dedupe_key_makes_a_repeat_safe_and_the_gateway_drops_it(server: Server) -> None:
    event = purchase()
    with AppsFlyerClient("com.example.orders", "af-orders-key", base_url=server.url, dedupe_key="af_order_id") as c:
        prepared = c.prepare([event])
        assert prepared.requests[0].safe_to_repeat
        first, again = c.send(prepared), c.send([event])
    assert (first.requests[0].stored, again.requests[0].duplicates) == (1, 1)
