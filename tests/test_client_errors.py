"""The SDK's errors as a Python developer expects them: one message said once, the status,
the response body and the problems on the exception, the URL of a request that got no answer,
the same InvalidEvents for a Struct as for a dict, httpx's ``timeout=``, an async admin
client, and a retry budget that is stated and configurable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from capigate import (
    AppsFlyerClient,
    AsyncGatewayAdmin,
    AxonClient,
    GatewayAdmin,
    HTTPStatusError,
    InvalidEvents,
    Item,
    PurchaseData,
    RetryPolicy,
    ServerEvent,
    TransportError,
    UserData,
    in_app_event,
)
from tests.conftest import ADMIN, Server, free_port
from tests.fault_proxy import Reply, fault_proxy
from tests.helpers import page_view

QUICK = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.02)


def test_http_status_error_carries_status_body_problems_and_says_its_message_once(server: Server) -> None:
    with AxonClient("px_unknown", "key-std", base_url=server.url, retry=QUICK) as client:
        result = client.send([page_view()])
    with pytest.raises(HTTPStatusError) as caught:
        result.raise_for_status()
    error = caught.value
    assert error.status_code == error.status == 401
    body = msgspec.json.decode(error.body)
    assert body["error"] == "unauthorized" and error.message == body["message"]
    assert str(error).count("HTTP 401") == 1 and str(error).count(body["message"]) == 1
    assert f"{server.url}/v1/event?pixel_id=px_unknown" in str(error) and error.url.endswith("pixel_id=px_unknown")
    assert error.problems == [msgspec.convert(p, type=type(error.problems[0])) for p in body["problems"]]


def test_http_status_error_lists_the_servers_problems_with_their_paths(server: Server) -> None:
    event = page_view()  # standard accepts it; the restricted pixel refuses its email
    event["user_data"]["email"] = "jane@example.com"
    with AxonClient("px_restricted", "key-restricted", base_url=server.url, retry=QUICK) as client:
        result = client.send([event])
    with pytest.raises(HTTPStatusError) as caught:
        result.raise_for_status()
    error = caught.value
    assert error.status_code == 400
    assert "events[0].user_data.email" in [p.path for p in error.problems]
    assert "events[0].user_data.email" in str(error)
    assert msgspec.json.decode(error.body)["problems"]


def test_a_transport_error_names_the_url_it_could_not_reach() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with AxonClient("px_std", "key-std", base_url=url, retry=QUICK) as client:
        result = client.send([page_view()])
    (request,) = result.requests
    assert request.status == 0 and request.attempts == 3 and request.url == f"{url}/v1/event?pixel_id=px_std"
    with pytest.raises(TransportError) as caught:
        result.raise_for_status()
    assert not isinstance(caught.value, HTTPStatusError)
    assert f"POST {url}/v1/event?pixel_id=px_std: ConnectError" in str(caught.value)
    assert caught.value.url == request.url


def test_send_to_a_dead_url_reports_nothing_delivered(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    file = tmp_path / "events.jsonl"
    file.write_text("".join(msgspec.json.encode(page_view()).decode() + "\n" for _ in range(2)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPIGATE_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "capigate",
            "send",
            str(file),
            "--to",
            url,
            "--pixel",
            "px_std",
            "--key",
            "k",
            "--retries",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"delivered 0 of 2 event(s) in 1 request(s) to {url}" in done.stdout
    assert "events/s" not in done.stdout and "sent " not in done.stdout
    assert "failed: 2 event(s) in 1 request(s)" in done.stdout
    assert "1 request(s), 2 attempt(s) each: ConnectError" in done.stdout
    assert (tmp_path / "events.failed.jsonl").exists()


def test_a_struct_missing_a_field_raises_invalid_events_with_the_path_a_dict_gets(server: Server) -> None:
    with pytest.raises(InvalidEvents) as from_struct:
        UserData(client_ip_address="203.0.113.7", esi="web", email="jane@example.com")  # type: ignore[call-arg]
    as_dict = page_view()
    del as_dict["user_data"]["client_user_agent"]
    with AxonClient("px_std", "key-std", base_url=server.url) as client, pytest.raises(InvalidEvents) as from_dict:
        client.send([as_dict])
    (problem,) = from_struct.value.problems
    (expected,) = from_dict.value.problems
    assert (problem.path, problem.code) == ("user_data.client_user_agent", "missing_field")
    assert expected.path == f"events[0].{problem.path}" and expected.code == problem.code


def test_struct_mistakes_name_the_field_and_the_type() -> None:
    with pytest.raises(InvalidEvents) as unknown:
        UserData(client_ip_address="1", client_user_agent="x", esi="web", emial="a@b.c")  # type: ignore[call-arg]
    assert [(p.path, p.code) for p in unknown.value.problems] == [("user_data.emial", "unknown_field")]
    with pytest.raises(InvalidEvents) as data:
        PurchaseData(currency="USD", value=1.0, transaction_id="t")  # type: ignore[call-arg]
    assert [(p.path, p.code) for p in data.value.problems] == [("data.items", "missing_field")]
    with pytest.raises(InvalidEvents) as item:
        Item(price=1.0)  # type: ignore[call-arg]
    assert "Item" in item.value.problems[0].message and item.value.problems[0].path == "item_id"


def test_an_event_of_the_other_api_is_named_as_such() -> None:
    """An InAppEvent given to AxonClient was refused as an Axon event missing name, event_time,
    event_source_url, user_data and data: five problems, none saying what was wrong."""
    af = in_app_event("1415211453000-6513711", "af_purchase", {"af_revenue": "6.5"}, os="17.5")
    axon = msgspec.convert(page_view(), ServerEvent)
    url = f"http://127.0.0.1:{free_port()}"
    with AxonClient("px_std", "k", base_url=url) as client, pytest.raises(InvalidEvents) as to_axon:
        client.send([axon, af])
    assert [(p.path, p.code) for p in to_axon.value.problems] == [("events[1]", "wrong_api")]
    assert "AppsFlyerClient" in to_axon.value.problems[0].message
    with AppsFlyerClient("com.example.shop", "k", base_url=url) as client, pytest.raises(InvalidEvents) as to_af:
        client.send([axon])
    assert [(p.code, "AxonClient" in p.message) for p in to_af.value.problems] == [("wrong_api", True)]


def test_decoding_a_struct_is_unchanged() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"client_ip_address": "1", "esi": "web"}', type=UserData)


def test_timeout_takes_httpx_naming_seconds_or_a_timeout_object() -> None:
    with fault_proxy(then=Reply(200, b"{}", delay_s=3)) as proxy:
        for timeout in (0.3, httpx.Timeout(0.3)):
            with AxonClient("px_std", "k", base_url=proxy.url, retry=RetryPolicy(max_attempts=1), timeout=timeout) as c:
                (request,) = c.send([page_view()]).requests
            assert request.status == 0 and "ReadTimeout" in (request.error or "")
    with pytest.raises(TypeError):
        AxonClient("px_std", "k", timeout_s=1)  # type: ignore[call-arg]


def test_the_retry_budget_is_stated_and_configurable() -> None:
    assert RetryPolicy().max_attempts == 5 and RetryPolicy().max_backoff_total_s == 7.5
    assert RetryPolicy(max_attempts=1).max_backoff_total_s == 0
    url = f"http://127.0.0.1:{free_port()}"
    fast: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.01}
    for policy, attempts in [(RetryPolicy(**fast), 5), (RetryPolicy(max_attempts=2, **fast), 2)]:
        with AxonClient("px_std", "k", base_url=url, retry=policy) as client:
            assert client.send([page_view()]).requests[0].attempts == attempts
    with AxonClient("px_std", "k", base_url=url, retry=RetryPolicy(max_elapsed_s=0)) as client:
        (request,) = client.send([page_view()]).requests
    assert request.attempts == 1 and "max_elapsed_s" in (request.error or "")
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_async_gateway_admin_reads_pages_walks_them_and_follows(server: Server) -> None:
    tag = f"async-{uuid.uuid4().hex[:8]}"

    def post(n: int) -> None:
        with server.client(headers={"Authorization": "key-std", "X-Capigate-Test": tag}) as http:
            events = [page_view() for _ in range(n)]
            assert http.post("/v1/event", params={"pixel_id": "px_std"}, json={"events": events}).status_code == 200

    async def scenario() -> None:
        post(3)
        async with AsyncGatewayAdmin(server.url, ADMIN, timeout=10) as admin:
            page = await admin.events(test_tag=tag, limit=2)
            assert len(page.events) == 2 and page.next is not None
            assert len([e async for e in admin.iter_events(test_tag=tag, limit=2)]) == 3
            follow = admin.follow_events(test_tag=tag, interval_s=0.1, backlog=1)
            first = await anext(follow)
            await asyncio.to_thread(post, 1)
            arrived = await asyncio.wait_for(anext(follow), 10)
            assert arrived.id > first.id and arrived.test_tag == tag
            burst = admin.follow_events(test_tag=tag, interval_s=2, backlog=1)
            last = await anext(burst)
            for _ in range(25):  # more than a poll's first page
                await asyncio.to_thread(post, 100)
            ids = [(await asyncio.wait_for(anext(burst), 20)).id for _ in range(2_500)]
            assert ids == sorted(set(ids)) and ids[0] > last.id, (ids[:3], ids[-3:])
            with GatewayAdmin(server.url, ADMIN) as sync_admin:
                assert [e.id for e in sync_admin.iter_events(test_tag=tag)] == [
                    e.id async for e in admin.iter_events(test_tag=tag)
                ]
        async with AsyncGatewayAdmin(server.url, "wrong-token") as admin:
            with pytest.raises(HTTPStatusError) as caught:
                await admin.events()
        assert caught.value.status_code == 401 and caught.value.url.startswith(f"{server.url}/api/events")

    asyncio.run(scenario())
