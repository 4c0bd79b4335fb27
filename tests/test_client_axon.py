"""AxonClient and AsyncAxonClient against a real running capigate, and against a real local
server that fails on purpose (503, 429 + Retry-After, slow answers) where capigate cannot."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
import uuid
from typing import Any

import httpx
import msgspec
import pytest

from capigate import (
    AsyncAxonClient,
    AxonClient,
    InvalidEvents,
    Item,
    Problem,
    PurchaseData,
    RetryPolicy,
    ServerEvent,
    UserData,
    axon_event,
    hash_email,
    hash_phone,
)
from capigate.client._base import shifted
from tests.conftest import Server
from tests.fault_proxy import Reply, fault_proxy
from tests.helpers import now_ms, page_view, purchase, stored

FAST = RetryPolicy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05)


def tag() -> str:
    return f"sdk-{uuid.uuid4().hex[:12]}"


def user(**fields: Any) -> UserData:
    return UserData(client_ip_address="203.0.113.7", client_user_agent="Mozilla/5.0", esi="web", **fields)


def typed_purchase(order: str) -> ServerEvent:
    return axon_event(
        "purchase",
        user_data=user(email=" Jane.Doe@Example.COM ", phone="+1 (650) 555-1212"),
        event_source_url="https://shop.example.com/checkout",
        data=PurchaseData(
            currency="USD", value=30.0, transaction_id=order, items=[Item(item_id="sku-1", price=15.0, quantity=2)]
        ),
        dedupe_id=order,
    )


# --- building -------------------------------------------------------------------------


def test_building_an_event_with_a_wrong_type_fails_where_it_is_built() -> None:
    with pytest.raises(InvalidEvents) as caught:
        axon_event(
            "purchase",
            user_data=user(email="a@example.com"),
            event_source_url="https://shop.example.com/",
            data=PurchaseData(currency="USD", value="30", transaction_id="t", items=[]),  # type: ignore[arg-type]
            event_time_ms=str(now_ms()),  # type: ignore[arg-type]  # a string (a float is a number: accepted)
        )
    paths = {p.path: p.code for p in caught.value.problems}
    assert paths == {"event_time": "wrong_type", "data.value": "wrong_type"}


def test_building_refuses_an_infinite_or_nan_number_that_json_would_send_as_null() -> None:
    with pytest.raises(InvalidEvents) as caught:
        axon_event(
            "purchase",
            user_data=user(email="a@example.com"),
            event_source_url="https://shop.example.com/",
            data=PurchaseData(
                currency="USD",
                value=math.inf,
                transaction_id="t",
                items=[Item(item_id="a", price=math.nan, quantity=1)],
            ),
        )
    assert {p.path: p.code for p in caught.value.problems} == {
        "data.value": "not_finite",
        "data.items[0].price": "not_finite",
    }
    assert "sent as null" in str(caught.value)


def test_building_reports_every_problem_with_its_path_at_once() -> None:
    with pytest.raises(InvalidEvents) as caught:
        axon_event(
            "purchase",
            user_data=UserData(client_ip_address="not-an-ip", client_user_agent="UA", esi="web"),
            event_source_url="no-scheme",
            data=PurchaseData(currency="USD", value=1.0, transaction_id="t", items=[Item(item_id="a")]),
        )
    codes = {p.path: p.code for p in caught.value.problems}
    assert codes == {
        "user_data.client_ip_address": "invalid_ip",
        "user_data": "missing_identifier",
        "event_source_url": "invalid_url",
        "data.items[0].quantity": "missing_field",
    }
    assert "user_data.client_ip_address" in str(caught.value)


def test_building_checks_data_against_the_event_name() -> None:
    with pytest.raises(InvalidEvents) as caught:
        axon_event(
            "app_open",
            user_data=user(client_id="c"),
            event_source_url="https://a.example/",
            data=PurchaseData(currency="USD", value=1.0, transaction_id="t", items=[]),
        )
    assert [p.code for p in caught.value.problems] == ["data_must_be_null"]


def test_building_a_valid_event_returns_the_typed_event_untouched() -> None:
    event = typed_purchase("o-1")
    assert isinstance(event, ServerEvent) and isinstance(event.data, PurchaseData)
    assert event.user_data.email == " Jane.Doe@Example.COM "  # hashed when sent, not before
    assert abs(event.event_time - time.time() * 1000) < 5000


# --- validation before sending --------------------------------------------------------


def test_send_checks_every_event_before_anything_leaves_the_process() -> None:
    events = [
        page_view(),
        page_view(event_time="yesterday"),
        *[page_view() for _ in range(150)],
        page_view(name="pageview"),
    ]
    events[120]["user_data"]["email"] = "not-an-email"
    # Nothing listens on this port: reaching the network would be a transport error instead.
    with (
        AxonClient("px_std", "key-std", base_url="http://127.0.0.1:9", retry=FAST) as client,
        pytest.raises(InvalidEvents) as caught,
    ):
        client.send(events)
    assert {p.path: p.code for p in caught.value.problems} == {
        "events[1].event_time": "wrong_type",
        "events[120].user_data.email": "invalid_email",
        "events[152].name": "unknown_event",
    }


def test_one_event_given_to_send_instead_of_a_list_says_so_before_sending() -> None:
    """A ServerEvent alone was a bare TypeError (not iterable); a dict alone was read as its
    keys, six 'each event must be a JSON object'."""
    message = "send takes a list of events; got one {}: send([event])"
    with AxonClient("px_std", "key-std", base_url="http://127.0.0.1:9", retry=FAST) as client:
        for event, kind in ((typed_purchase("o-1"), "ServerEvent"), (page_view(), "dict")):
            with pytest.raises(InvalidEvents) as caught:
                client.send(event)  # type: ignore[arg-type]  # the mistake under test
            assert caught.value.problems == [Problem("events", "not_a_list", message.format(kind))]
            with pytest.raises(InvalidEvents, match="not_a_list"):
                client.prepare(event)  # type: ignore[arg-type]
        with pytest.raises(InvalidEvents, match="got an int"):
            client.send(3)  # type: ignore[arg-type]
        with pytest.raises(
            InvalidEvents, match=re.escape('got a request body ({"events": [...]}): send(body["events"])')
        ):
            client.send({"events": [page_view()]})  # a whole body: told send([event]) before

    async def main() -> None:
        async with AsyncAxonClient("px_std", "key-std", base_url="http://127.0.0.1:9", retry=FAST) as client:
            with pytest.raises(InvalidEvents, match=r"got one ServerEvent: send\(\[event\]\)"):
                await client.send(typed_purchase("o-2"))  # type: ignore[arg-type]

    asyncio.run(main())


def test_send_checks_with_the_pixel_profile() -> None:
    event = page_view(event_source_url="https://shop.example.com/landing?x=1")
    with (
        AxonClient("px_restricted", "key-restricted", profile="lead_gen_restricted") as client,
        pytest.raises(InvalidEvents) as caught,
    ):
        client.prepare([event])
    assert {p.code for p in caught.value.problems} == {"url_not_origin"}


def test_unknown_profile_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        AxonClient("px", "key", profile="gold")  # type: ignore[arg-type]


# --- against a real gateway -----------------------------------------------------------


def test_accepted_batch_reports_stored_and_duplicate_counts(server: Server) -> None:
    t = tag()
    first, again = purchase(), purchase()
    again["dedupe_id"] = first["dedupe_id"]
    with AxonClient("px_std", "key-std", base_url=server.url, test_tag=t) as client:
        result = client.send([first, page_view(), again])
    assert result.ok and len(result.requests) == 1
    (request,) = result.requests
    assert (request.status, request.events, request.stored, request.duplicates) == (200, 3, 2, 1)
    assert request.duplicate_events == [2]
    assert request.attempts == 1
    assert len(stored(server, test_tag=t)) == 2


def test_pii_is_hashed_with_the_server_normaliser_before_it_leaves(server: Server) -> None:
    t = tag()
    with (
        fault_proxy(upstream=server.url) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, test_tag=t) as client,
    ):
        assert client.send([typed_purchase(uuid.uuid4().hex)]).ok
    wire = proxy.seen[0].body
    # the phone's plain forms, not "650" alone: the wire's time, uuid and hashes hold digits too
    for plain in (b"Jane", b"Example", b"(650)", b"555-1212", b"6505551212"):
        assert plain not in wire
    sent = msgspec.json.decode(wire)["events"][0]["user_data"]
    assert sent["email"] == hash_email("jane.doe@example.com")
    assert sent["phone"] == hash_phone("16505551212")
    (event,) = stored(server, test_tag=t)
    assert event["payload"]["user_data"]["email"] == sent["email"]


def test_events_are_sent_in_batches_of_at_most_100(server: Server) -> None:
    t = tag()
    events = [page_view() for _ in range(250)]
    with (
        fault_proxy(upstream=server.url) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, test_tag=t) as client,
    ):
        result = client.send(events)
    assert result.ok and [r.events for r in result.requests] == [100, 100, 50]
    assert [r.first_event for r in result.requests] == [0, 100, 200]
    assert sorted(len(msgspec.json.decode(s.body)["events"]) for s in proxy.seen) == [50, 100, 100]
    assert result.stored == 250 and len(stored(server, test_tag=t)) == 250


def test_refused_batch_returns_the_server_problems_and_is_not_retried(server: Server) -> None:
    # Checked locally as standard, refused by the gateway whose pixel is lead_gen_restricted.
    event = page_view()
    event["user_data"]["email"] = "a@example.com"
    with AxonClient("px_restricted", "key-restricted", base_url=server.url, retry=FAST) as client:
        result = client.send([event])
    (request,) = result.requests
    assert not result.ok and request.status == 400 and request.attempts == 1
    assert {p.path: p.code for p in request.problems}["events[0].user_data.email"] == "unknown_field"
    assert result.failed_events == 1 and result.failed[0].result is request
    assert msgspec.json.decode(result.failed[0].payloads[0])["user_data"]["email"] == hash_email("a@example.com")
    with pytest.raises(Exception, match="HTTP 400"):
        result.raise_for_status()


def test_result_paths_are_those_of_the_request_body(server: Server) -> None:
    events = [page_view(event_source_url="https://shop.example.com/") for _ in range(150)]
    events[120]["user_data"]["email"] = "a@example.com"  # fine locally (standard), refused by the pixel
    with AxonClient("px_restricted", "key-restricted", base_url=server.url) as client:
        result = client.send(events)
    first, second = result.requests
    assert first.ok and not second.ok and second.first_event == 100
    assert [p.path for p in second.problems] == ["events[20].user_data.email"]
    assert result.failed_events == 50 and len(result.failed[0].payloads) == 50


def test_wrong_key_is_refused_with_401_and_not_retried(server: Server) -> None:
    with AxonClient("px_std", "wrong-key", base_url=server.url, retry=FAST) as client:
        result = client.send([page_view()])
    assert (result.requests[0].status, result.requests[0].attempts) == (401, 1)
    assert "wrong Authorization key" in (result.requests[0].error or "")


def test_forced_5xx_is_retried_with_backoff_until_accepted(server: Server) -> None:
    t = tag()
    faults = [Reply(503, b"busy"), Reply(502)]
    with (
        fault_proxy(upstream=server.url, faults=faults) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, retry=FAST, test_tag=t) as client,
    ):
        result = client.send([page_view()])
    assert result.ok and result.requests[0].attempts == 3
    assert proxy.statuses() == [503, 502, 200]
    assert len(stored(server, test_tag=t)) == 1


def test_rate_limited_429_waits_as_long_as_retry_after_asks(server: Server) -> None:
    faults = [Reply(429, headers={"Retry-After": "1"})]
    with (
        fault_proxy(upstream=server.url, faults=faults) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, retry=FAST) as client,
    ):
        started = time.monotonic()
        result = client.send([page_view()])
    assert result.ok and result.requests[0].attempts == 2
    assert time.monotonic() - started >= 0.95
    assert proxy.statuses() == [429, 200]


def test_retries_stop_after_max_attempts_and_report_the_last_answer() -> None:
    with (
        fault_proxy(then=Reply(500, b"Internal Server Error")) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, retry=FAST) as client,
    ):
        result = client.send([page_view()])
    (request,) = result.requests
    assert (request.ok, request.status, request.attempts) == (False, 500, 4)
    assert request.error == "HTTP 500 Internal Server Error"
    assert len(proxy.seen) == 4


def test_connection_refused_is_retried_then_reported() -> None:
    with AxonClient("px_std", "key-std", base_url="http://127.0.0.1:9", retry=FAST) as client:
        result = client.send([page_view()])
    (request,) = result.requests
    assert (request.ok, request.status, request.attempts) == (False, 0, 4)
    assert (request.error or "").startswith("ConnectError")


def big_cart(order: str, items: int = 30) -> dict[str, Any]:
    event = purchase(dedupe_id=order)
    item = {**event["data"]["items"][0], "item_name": "A long product name " * 20, "item_category": "Shoes " * 20}
    event["data"]["items"] = [{**item, "item_id": f"sku-{i}"} for i in range(items)]
    event["data"]["value"] = round(sum(i["price"] * i["quantity"] for i in event["data"]["items"]), 2)
    return event


def absolute(requests: list[Any]) -> set[tuple[str, str]]:
    """Each request's warnings as paths among all the events sent."""
    return {(shifted(w, r.first_event).path, w.code) for r in requests for w in r.warnings}


def test_a_batch_over_the_body_limit_is_sent_as_several_requests(server: Server) -> None:
    """100 large carts were one 1.3 MB request, a 413 at every try (a trial): requests stay
    within max_body_bytes, each warning at its path in the request carrying it."""
    t = tag()
    events = [big_cart(uuid.uuid4().hex) for _ in range(100)]
    events[99]["user_data"]["os"] = "macos"
    with (
        fault_proxy(upstream=server.url) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, test_tag=t) as client,
    ):
        result = client.send(events)
        one = AxonClient("px_std", "key-std", base_url=proxy.url, max_body_bytes=10**9).prepare(events)
    assert result.ok, [r.error for r in result.requests]
    assert len(result.requests) >= 2 and all(len(s.body) <= 1_048_576 for s in proxy.seen)
    assert sum(r.events for r in result.requests) == 100 and result.stored == 100
    assert len(one.requests) == 1 and absolute(result.requests) == absolute(one.requests)
    assert ("events[99].user_data.os", "unknown_enum") in absolute(result.requests)
    assert len(stored(server, test_tag=t)) == 100


def test_an_event_no_request_can_carry_is_refused_before_sending() -> None:
    client = AxonClient("px_std", "key-std", base_url="http://127.0.0.1:9", max_body_bytes=4096)
    with client, pytest.raises(InvalidEvents) as caught:
        client.send([page_view(), big_cart("o-1", items=5)])
    assert [(p.path, p.code) for p in caught.value.problems] == [("events[1]", "payload_too_large")]


def test_the_local_checks_warnings_stay_beside_the_gateways(server: Server) -> None:
    """The gateway sees the phone after this SDK hashed it: only the local check can say it had
    no country code, and its warning was replaced by the gateway's (none) (a trial)."""
    event = page_view()
    event["user_data"]["phone"] = "(650) 555-1212"
    with AxonClient("px_std", "key-std", base_url=server.url, test_tag=tag()) as client:
        result = client.send([event])
    assert result.ok and "phone_without_country_code" in {w.code for w in result.warnings}


@pytest.mark.parametrize("key", ["key-std\n", " key-std", "kéy"])
def test_a_key_no_header_can_carry_is_refused_at_construction(key: str) -> None:
    """It was sent, refused by httpx at each try, and reported as timeouts that may be stored."""
    with pytest.raises(ValueError, match="api_key"):
        AxonClient("px_std", key, base_url="http://127.0.0.1:9")


def test_a_503_that_may_have_stored_the_events_is_repeated_only_with_dedupe_ids(server: Server) -> None:
    """capigate's 503 store_unconfirmed (X-Capigate-Maybe-Stored) is a lost answer: repeated,
    the events without a dedupe_id were stored twice (a trial)."""
    unconfirmed = Reply(503, b'{"status":"error","error":"store_unconfirmed"}', {"x-capigate-maybe-stored": "true"})
    with (
        fault_proxy(upstream=server.url, faults=[unconfirmed, unconfirmed]) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, retry=FAST, test_tag=tag()) as client,
    ):
        without = client.send([page_view(dedupe_id=None)])
        with_ids = client.send([page_view()])
    assert not without.ok and without.requests[0].attempts == 1 and without.requests[0].maybe_stored
    assert with_ids.ok and with_ids.requests[0].attempts == 2


def test_read_timeout_is_retried_only_when_every_event_has_a_dedupe_id(server: Server) -> None:
    slow = [Reply(delay_s=0.6), Reply(delay_s=0.6)]
    with (
        fault_proxy(upstream=server.url, faults=list(slow)) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, retry=FAST, timeout=0.3) as client,
    ):
        without = client.send([page_view(dedupe_id=None)])  # the first slow answer
        with_ids = client.send([page_view()])  # the second, then through
    assert with_ids.ok and with_ids.requests[0].attempts == 2
    assert not without.ok and without.requests[0].attempts == 1
    assert (without.requests[0].error or "").startswith("ReadTimeout")


def test_one_connection_pool_is_reused_across_sends(server: Server) -> None:
    with (
        fault_proxy(upstream=server.url) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, max_concurrency=1) as client,
    ):
        for _ in range(5):
            assert client.send([page_view()]).ok
    assert len({s.client_port for s in proxy.seen}) == 1


def test_client_rate_limit_paces_events() -> None:
    with (
        fault_proxy(then=Reply(200, b"{}")) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, max_batch=10, rate_limit_eps=50) as client,
    ):
        started = time.monotonic()
        assert client.send([page_view() for _ in range(40)]).ok
        elapsed = time.monotonic() - started
    # 4 requests of 10 events at 50 events/s: the last leaves 0.6 s after the first.
    assert 0.55 <= elapsed < 1.5
    assert len(proxy.seen) == 4


def test_real_applovin_answer_without_a_body_is_success_with_unknown_counts() -> None:
    with fault_proxy(then=Reply(200)) as proxy, AxonClient("px", "key", base_url=proxy.url) as client:
        result = client.send([page_view()])
    assert result.ok and result.requests[0].stored is None and result.stored is None
    assert proxy.seen[0].headers["authorization"] == "key"
    assert proxy.seen[0].path.startswith("/v1/event?pixel_id=px")


# --- concurrency ----------------------------------------------------------------------


def test_threads_share_one_client_under_concurrency(server: Server) -> None:
    t = tag()
    results = []
    lock = threading.Lock()
    with AxonClient("px_std", "key-std", base_url=server.url, test_tag=t, max_batch=25) as client:

        def produce() -> None:
            result = client.send([page_view() for _ in range(60)])
            with lock:
                results.append(result)

        threads = [threading.Thread(target=produce) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert len(results) == 8 and all(r.ok for r in results)
    assert sum(r.stored or 0 for r in results) == 480
    assert len(stored(server, test_tag=t)) == 480


def test_async_client_sends_concurrently_from_many_tasks(server: Server) -> None:
    t = tag()

    async def main() -> list[Any]:
        async with AsyncAxonClient("px_std", "key-std", base_url=server.url, test_tag=t, max_batch=20) as client:
            return await asyncio.gather(*(client.send([page_view() for _ in range(50)]) for _ in range(10)))

    results = asyncio.run(main())
    assert all(r.ok for r in results) and [len(r.requests) for r in results] == [3] * 10
    assert len(stored(server, test_tag=t)) == 500


def test_async_client_retries_a_forced_5xx(server: Server) -> None:
    async def main(url: str) -> Any:
        async with AsyncAxonClient("px_std", "key-std", base_url=url, retry=FAST) as client:
            return await client.send([page_view()])

    with fault_proxy(upstream=server.url, faults=[Reply(503)]) as proxy:
        result = asyncio.run(main(proxy.url))
    assert result.ok and result.requests[0].attempts == 2


def test_transport_can_be_injected() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"received": 1, "stored": 1, "duplicates": 0})

    with AxonClient("px", "key", base_url="http://gateway", transport=httpx.MockTransport(answer)) as client:
        assert client.send([page_view()]).stored == 1
    assert seen[0].url.params["pixel_id"] == "px"


# --- a gateway that takes smaller bodies than the client's 1 MiB --------------------------------


def test_a_batch_refused_as_too_large_is_sent_again_in_halves_down_to_single_events(small_bodies: Server) -> None:
    """A gateway's max_body_bytes of 20,000 refused every 100-event request of a send (413),
    for good, though each event was fine (a trial). A 413 splits the request in halves, and
    each half again, as the relay does (capigate.splitting): every event is delivered, each
    warning still at its path among the events given; an event alone too large fails alone,
    its 413 at its own index."""
    t = tag()
    events = [purchase() for _ in range(100)]
    events[57] = big_cart(uuid.uuid4().hex, items=60)  # alone more than 20,000 bytes
    events[99]["user_data"]["os"] = "macos"
    with AxonClient("px_std", "key-std", base_url=small_bodies.url, test_tag=t) as client:
        result = client.send(events)
        whole = client.prepare(events)
    assert len(whole.requests) == 1  # within the client's own 1 MiB
    assert result.split and all(r.status == 413 and not r.ok for r in result.split), result.split
    assert "the limit is 20000" in (result.split[0].error or ""), result.split[0]
    assert sum(r.events for r in result.requests) == 100
    assert [r.first_event for r in result.requests] == sorted(r.first_event for r in result.requests)
    (failed,) = [r for r in result.requests if not r.ok]
    assert (failed.status, failed.first_event, failed.events) == (413, 57, 1), failed
    assert [(p.path, p.code) for p in failed.problems] == [("", "body_too_large")], failed.problems
    assert [len(f.payloads) for f in result.failed] == [1] and result.failed[0].result is failed
    assert result.stored == 99 and len(stored(small_bodies, test_tag=t)) == 99
    assert ("events[99].user_data.os", "unknown_enum") in absolute(result.requests)
    assert absolute(result.requests) >= absolute(whole.requests)  # and the gateway's, merged


def test_the_async_client_splits_a_batch_refused_as_too_large_as_well(small_bodies: Server) -> None:
    t = tag()
    events = [purchase() for _ in range(40)]

    async def main() -> Any:
        async with AsyncAxonClient("px_std", "key-std", base_url=small_bodies.url, test_tag=t) as client:
            return await client.send(events)

    result = asyncio.run(main())
    assert result.ok and result.split and result.stored == 40, [r.error for r in result.requests]
    assert len(stored(small_bodies, test_tag=t)) == 40
