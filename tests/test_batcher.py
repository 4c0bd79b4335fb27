"""The background batchers: batching, flushing, back-pressure, concurrency, and never
dropping an event silently. Against a real capigate, through a real local fault proxy."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from capigate import (
    AppsFlyerClient,
    AsyncAxonClient,
    AxonClient,
    Batcher,
    BatcherFull,
    CapigateError,
    FailedDelivery,
    InvalidEvents,
    RetryPolicy,
)
from tests.conftest import Server
from tests.fault_proxy import FaultProxy, Reply, fault_proxy
from tests.helpers import page_view, purchase, stored
from tests.test_client_axon import big_cart

FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02)


def tag() -> str:
    return f"sdk-b-{uuid.uuid4().hex[:12]}"


def sizes(bodies: list[bytes]) -> list[int]:
    return [len(msgspec.json.decode(b)["events"]) for b in bodies]


def test_exit_flushes_everything_added(server: Server) -> None:
    t = tag()
    with AxonClient("px_std", "key-std", base_url=server.url, test_tag=t) as client:
        with client.batcher(max_batch=100, flush_interval=30) as b:
            for _ in range(250):
                b.add(page_view())
        assert (b.stats.added, b.stats.delivered, b.stats.failed, b.stats.pending) == (250, 250, 0, 0)
    assert len(stored(server, test_tag=t)) == 250


def test_batches_hold_at_most_max_batch_events(server: Server) -> None:
    with fault_proxy(upstream=server.url) as proxy, AxonClient("px_std", "key-std", base_url=proxy.url) as client:
        with client.batcher(max_batch=30, flush_interval=30) as b:
            for _ in range(100):
                b.add(page_view())
        assert b.stats.requests == 4
    assert sorted(sizes([s.body for s in proxy.seen])) == [10, 30, 30, 30]


def test_a_batch_over_the_body_limit_leaves_as_several_requests(server: Server) -> None:
    """As send's: 100 large carts were one 1.3 MB request, a 413 at every try."""
    t = tag()
    with (
        fault_proxy(upstream=server.url) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, test_tag=t) as client,
        client.batcher(max_batch=100, flush_interval=30) as b,
    ):
        for _ in range(100):
            b.add(big_cart(uuid.uuid4().hex))
    assert (b.stats.delivered, b.stats.failed) == (100, 0) and b.stats.requests >= 2
    assert all(len(s.body) <= 1_048_576 for s in proxy.seen)
    assert len(stored(server, test_tag=t)) == 100


def test_flush_interval_sends_a_partial_batch_without_waiting_for_more(server: Server) -> None:
    with (
        fault_proxy(upstream=server.url) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url) as client,
        client.batcher(max_batch=100, flush_interval=0.1) as b,
    ):
        for _ in range(3):
            b.add(page_view())
        deadline = time.monotonic() + 2
        while b.stats.delivered < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert b.stats.delivered == 3  # before leaving the block
    assert sizes([s.body for s in proxy.seen]) == [3]


def test_flush_sends_what_was_added_and_waits_for_it(server: Server) -> None:
    with AxonClient("px_std", "key-std", base_url=server.url) as client, client.batcher(flush_interval=30) as b:
        for _ in range(5):
            b.add(page_view())
        assert b.flush(timeout_s=5)
        assert b.stats.delivered == 5


def test_many_threads_add_at_once_and_nothing_is_lost_or_doubled(server: Server) -> None:
    t = tag()
    ids: list[str] = []
    lock = threading.Lock()
    with (
        AxonClient("px_std", "key-std", base_url=server.url, test_tag=t, max_concurrency=4) as client,
        client.batcher(max_batch=50, flush_interval=0.05, max_queue=100) as b,
    ):

        def produce() -> None:
            for _ in range(150):
                event = page_view()
                b.add(event)
                with lock:
                    ids.append(event["dedupe_id"])

        threads = [threading.Thread(target=produce) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert b.stats.delivered == 1200 and b.failed == []
    assert sorted(e["dedupe_id"] for e in stored(server, test_tag=t)) == sorted(ids)


def test_add_checks_the_event_at_once_and_queues_nothing_wrong() -> None:
    with AxonClient("px_std", "key-std", base_url="http://127.0.0.1:9", retry=FAST) as client, client.batcher() as b:
        with pytest.raises(InvalidEvents) as caught:
            b.add(page_view(event_source_url="nowhere"))
        assert [p.path for p in caught.value.problems] == ["event_source_url"]
        assert b.add(page_view(dedupe_id=None))[0].code == "missing_dedupe_id"  # warnings come back
        assert b.stats.added == 1


def test_add_given_a_list_says_it_takes_one_event() -> None:
    """A list was read as one event that is not an object: '<body>: each event must be a JSON object'."""
    with AxonClient("px_std", "key-std", base_url="http://127.0.0.1:9", retry=FAST) as client, client.batcher() as b:
        with pytest.raises(InvalidEvents) as caught:
            b.add([page_view(), page_view()])
        assert [(p.code, p.message) for p in caught.value.problems] == [
            ("not_an_event", "add takes one event; got a list of 2 events: add each one (or send the list with send)")
        ]
        assert b.stats.added == 0


def _wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _stall(b: Batcher, proxy: FaultProxy) -> None:
    """One request held at the proxy (the only one in flight) and one event taken by the
    sender, which now waits for the request to end: the queue fills from here on."""
    b.add(page_view())
    _wait_for(lambda: len(proxy.seen) == 1)
    b.add(page_view())
    _wait_for(lambda: b.queued == 0)


def test_full_queue_raises_batcher_full_when_add_may_not_wait(server: Server) -> None:
    hold = threading.Event()
    with (
        fault_proxy(upstream=server.url, faults=[Reply(hold=hold)]) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, max_concurrency=1) as client,
        client.batcher(max_batch=1, flush_interval=0.05, max_queue=5) as b,
    ):
        _stall(b, proxy)
        for _ in range(5):
            b.add(page_view(), timeout_s=0)
        with pytest.raises(BatcherFull):
            b.add(page_view(), timeout_s=0)
        started = time.monotonic()
        with pytest.raises(BatcherFull, match=r"none left in 0\.1 s"):
            b.add(page_view(), timeout_s=0.1)
        assert time.monotonic() - started >= 0.09
        hold.set()
    assert (b.stats.added, b.stats.delivered, b.failed) == (7, 7, [])


def test_full_queue_blocks_add_until_there_is_room(server: Server) -> None:
    hold = threading.Event()
    with (
        fault_proxy(upstream=server.url, faults=[Reply(hold=hold)]) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, max_concurrency=1) as client,
        client.batcher(max_batch=1, flush_interval=0.05, max_queue=2) as b,
    ):
        _stall(b, proxy)
        b.add(page_view())
        b.add(page_view())
        blocked = threading.Thread(target=b.add, args=(page_view(),))
        blocked.start()
        blocked.join(0.2)
        assert blocked.is_alive()  # waiting for room
        hold.set()
        blocked.join(5)
        assert not blocked.is_alive()
    assert (b.stats.added, b.stats.delivered) == (5, 5)


def test_failed_delivery_is_kept_with_its_reason_and_reported(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    with (
        AxonClient("px_std", "wrong-key", base_url=server.url, retry=FAST) as client,
        caplog.at_level(logging.WARNING, logger="capigate.client"),
        client.batcher(flush_interval=0.05) as b,
    ):
        events = [page_view() for _ in range(3)]
        for event in events:
            b.add(event)
    (failure,) = b.failed
    assert isinstance(failure, FailedDelivery) and failure.result.status == 401
    assert [e["dedupe_id"] for e in failure.events()] == [e["dedupe_id"] for e in events]
    assert (b.stats.failed, b.stats.delivered) == (3, 0)
    assert "3 event(s) not delivered" in caplog.text and "HTTP 401" in caplog.text


def test_on_failure_takes_failures_instead_of_keeping_them() -> None:
    taken: list[FailedDelivery] = []
    with (
        fault_proxy(then=Reply(503)) as proxy,
        AxonClient("px_std", "key-std", base_url=proxy.url, retry=FAST) as client,
        client.batcher(max_batch=2, flush_interval=0.05, on_failure=taken.append) as b,
    ):
        for _ in range(4):
            b.add(page_view())
    assert b.failed == [] and sum(len(f.payloads) for f in taken) == 4
    assert all(f.result.status == 503 and f.result.attempts == 2 for f in taken)


def test_closed_batcher_refuses_new_events() -> None:
    with AxonClient("px_std", "key-std", base_url="http://127.0.0.1:9") as client:
        b = client.batcher()
        b.close()
        with pytest.raises(CapigateError, match="closed"):
            b.add(page_view())


def test_appsflyer_batcher_sends_one_request_an_event(server: Server) -> None:
    t = tag()
    event = {"appsflyer_id": "1415211453000-6513711", "eventName": "af_login", "eventValue": "", "os": "14"}
    with (
        AppsFlyerClient("com.example.shop", "af-dev-key", base_url=server.url, test_tag=t) as client,
        client.batcher() as b,
    ):
        for _ in range(12):
            b.add(event)
    assert (b.stats.requests, b.stats.delivered) == (12, 12)
    assert len(stored(server, test_tag=t)) == 12


def test_async_batcher_delivers_everything_from_many_tasks(server: Server) -> None:
    t = tag()

    async def main() -> Any:
        async with AsyncAxonClient("px_std", "key-std", base_url=server.url, test_tag=t) as client:
            async with client.batcher(max_batch=40, flush_interval=0.05, max_queue=50) as b:

                async def produce() -> None:
                    for _ in range(60):
                        await b.add(page_view())

                await asyncio.gather(*(produce() for _ in range(5)))
                await b.flush()
                assert b.stats.delivered == 300
            return b

    b = asyncio.run(main())
    assert b.stats.requests >= 8 and b.failed == []
    assert len(stored(server, test_tag=t)) == 300


def test_async_batcher_keeps_failures(server: Server) -> None:
    async def main() -> Any:
        async with AsyncAxonClient("px_std", "wrong", base_url=server.url, retry=FAST) as client:
            async with client.batcher(flush_interval=0.05) as b:
                await b.add(page_view())
            return b

    b = asyncio.run(main())
    assert b.failed[0].result.status == 401 and b.stats.failed == 1


def test_a_batcher_left_open_is_flushed_when_the_interpreter_exits(server: Server) -> None:
    t = tag()
    script = (
        "import sys\n"
        "from capigate import AxonClient\n"
        "from tests.helpers import page_view\n"
        "b = AxonClient('px_std', 'key-std', base_url=sys.argv[1], test_tag=sys.argv[2]).batcher(flush_interval=60)\n"
        "for _ in range(7):\n"
        "    b.add(page_view())\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script, server.url, t], cwd=root, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr
    assert len(stored(server, test_tag=t)) == 7


def test_a_batch_refused_as_too_large_is_delivered_in_halves(small_bodies: Server) -> None:
    """A gateway's max_body_bytes below the client's: the batcher's 100-event requests were
    refused (413) and kept as failures, every event of them (a trial). Sent again in halves."""
    t = tag()
    with AxonClient("px_std", "key-std", base_url=small_bodies.url, test_tag=t) as client:
        with client.batcher(max_batch=100, flush_interval=60) as b:
            for _ in range(100):
                b.add(purchase())
        stats, failed = b.stats, b.failed
    assert (stats.added, stats.delivered, stats.failed, failed) == (100, 100, 0, []), (stats, failed)
    assert stats.requests > 1
    assert len(stored(small_bodies, test_tag=t)) == 100

    async def main() -> Any:
        async with (
            AsyncAxonClient("px_std", "key-std", base_url=small_bodies.url, test_tag=t) as aclient,
            aclient.batcher(max_batch=50, flush_interval=60) as ab,
        ):
            for _ in range(50):
                await ab.add(purchase())
        return ab.stats

    astats = asyncio.run(main())
    assert (astats.delivered, astats.failed) == (50, 0), astats
    assert len(stored(small_bodies, test_tag=t)) == 150
