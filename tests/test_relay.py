"""The relay workers against a real local upstream (tests/upstream.py) that the test scripts:
delays, 5xx, 429 with Retry-After, 400 naming one event, resets, hangs. Each test runs a
``RelayRunner`` on a real SQLite store in tmp_path, bounded in time."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest

from capigate.config import RelaySettings
from capigate.relay import RelayRunner, Target
from capigate.relay import worker as worker_module
from capigate.store import DeadLetterQuery, EventQuery, NewEvent, SQLiteStore, Store
from tests.upstream import Reply, Seen, Upstream

T = TypeVar("T")
KEY = "upstream-key"


def target(url: str, *, api: str = "axon", source: str = "px1", **tuning: Any) -> Target:
    settings = {"backoff_base_s": 0.05, "backoff_max_s": 0.2, "poll_interval_s": 0.05, "timeout_s": 2.0, **tuning}
    relay = msgspec.convert({"url": url, **settings}, RelaySettings)
    return Target(name=f"{api}:{source}", api=api, source=source, url=url, api_key=KEY, settings=relay)


def axon_event(n: int, source: str = "px1") -> NewEvent:
    body = {
        "name": "page_view",
        "event_time": 1_700_000_000_000 + n,
        "event_source_url": "https://shop.example.com/",
        "dedupe_id": f"{source}-{n}",
        "user_data": {"client_ip_address": "203.0.113.7", "client_user_agent": "UA", "esi": "web", "client_id": "c"},
        "data": None,
    }
    return NewEvent(
        api="axon",
        source=source,
        name="page_view",
        event_time_ms=body["event_time"],  # type: ignore[arg-type]
        dedupe_id=body["dedupe_id"],  # type: ignore[arg-type]
        payload=msgspec.json.encode(body),
        destination=f"axon:{source}",
    )


def run(test: Callable[[Store], Awaitable[T]], path: Path, timeout_s: float = 30.0) -> T:
    async def main() -> T:
        store = SQLiteStore(path / "relay.db", synchronous="NORMAL")
        await store.open()
        try:
            return await asyncio.wait_for(test(store), timeout_s)
        finally:
            await store.close()

    return asyncio.run(main())


async def ingest(store: Store, events: list[NewEvent]) -> None:
    for start in range(0, len(events), 100):
        await store.ingest(events[start : start + 100], request_id=f"r{start}", received_at_ms=time.time_ns() // 10**6)


async def until(condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def states(store: Store) -> dict[str, int]:
    (depth,) = await store.outbox_depths()
    return {"pending": depth.pending, "delivered": depth.delivered, "dead": depth.dead}


async def delivered(store: Store, count: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await states(store))["delivered"] + (await states(store))["dead"] < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled in time: {await states(store)}")
        await asyncio.sleep(0.02)


def test_axon_events_go_up_in_batches_of_at_most_100_with_their_dedupe_ids_and_key(tmp_path: Path) -> None:
    with Upstream() as up:

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(250)])
            async with RelayRunner(store, destinations=[target(up.url)]):
                await delivered(store, 250)
            assert await states(store) == {"pending": 0, "delivered": 250, "dead": 0}

        run(test, tmp_path)
        requests = up.requests("/v1/event")
        assert all(len(r.events) <= 100 for r in requests)
        assert sorted(up.dedupe_ids()) == sorted(f"px1-{n}" for n in range(250))
        assert {(r.query["pixel_id"], r.headers["authorization"]) for r in requests} == {("px1", KEY)}
        assert requests[0].events[0]["user_data"]["client_id"] == "c"  # the stored payload, as it is


def test_5xx_and_resets_are_retried_with_backoff_until_delivered_and_every_attempt_is_kept(tmp_path: Path) -> None:
    with Upstream() as up:
        answers = iter([Reply(503, b"busy"), Reply(reset=True), Reply(502, b"bad gateway")])
        up.script = lambda seen: next(answers, None)

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(10)])
            async with RelayRunner(store, destinations=[target(up.url)]):
                await delivered(store, 10)
            attempts = await store.query_attempts(1)
            assert [(a.result, a.status) for a in attempts] == [
                ("retry", 503),
                ("retry", None),
                ("retry", 502),
                ("delivered", 200),
            ]
            assert attempts[0].response_body == "busy" and attempts[1].error
            assert all(a.destination == "axon:px1" and a.latency_ms >= 0 for a in attempts)

        run(test, tmp_path)
        assert len(up.requests()) == 4


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    with Upstream() as up:
        up.script = lambda seen: Reply(429, b"slow down", {"retry-after": "1"}) if len(up.seen) == 0 else None

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(1)])
            async with RelayRunner(store, destinations=[target(up.url, backoff_max_s=0.01)]):
                await delivered(store, 1)
            (first, second) = await store.query_attempts(1)
            assert (first.status, first.response_headers["retry-after"], second.status) == (429, "1", 200)

        run(test, tmp_path)
        first, second = up.requests()
        assert second.at - first.at >= 0.95


def refuse(bad: set[str], *, hint: bool) -> Callable[[Seen], Reply | None]:
    """Refuse any batch holding one of the ``bad`` dedupe ids, as capigate does (400, naming
    the event's position) if ``hint``, else with a bare 400."""

    def script(seen: Seen) -> Reply | None:
        positions = [i for i, e in enumerate(seen.events) if e["dedupe_id"] in bad]
        if not positions:
            return None
        if not hint:
            return Reply(400, b"Bad Request", {"content-type": "text/plain", "x-upstream": "yes"})
        problems = [{"path": f"events[{i}].user_data", "code": "invalid", "message": "no"} for i in positions]
        return Reply(400, json.dumps({"error": "invalid_batch", "problems": problems}).encode())

    return script


@pytest.mark.parametrize("hint", [True, False], ids=["named", "bisected"])
def test_a_400_parks_only_the_event_at_fault_with_the_verbatim_answer(tmp_path: Path, hint: bool) -> None:
    with Upstream() as up:
        up.script = refuse({"px1-37"}, hint=hint)

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(100)])
            async with RelayRunner(store, destinations=[target(up.url)]):
                await delivered(store, 100)
            assert await states(store) == {"pending": 0, "delivered": 99, "dead": 1}
            (dead,), _ = await store.query_events(EventQuery(status="dead"))
            assert dead.dedupe_id == "px1-37"
            attempts = await store.query_attempts(dead.id)
            assert attempts[0].result == "split" and attempts[-1].result == "dead"
            assert attempts[-1].status == 400
            if not hint:
                assert attempts[-1].response_body == "Bad Request"
                assert attempts[-1].response_headers["x-upstream"] == "yes"
            else:
                assert "events[0].user_data" in attempts[-1].response_body  # the single event's own answer
            good = await store.query_attempts(dead.id + 1)
            assert good[-1].result == "delivered"

        run(test, tmp_path)
        assert sorted(up.dedupe_ids()) == sorted(f"px1-{n}" for n in range(100) if n != 37)
        if hint:  # the batch, the 99 others, the one alone
            assert len(up.requests()) == 3
        else:
            assert len(up.requests()) <= 2 * 7 + 1


def test_a_split_batchs_parts_are_each_delivered_once_though_its_answers_are_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts of a refused batch go one after another; one waiting behind many slow answers
    outlived its lease, was claimed again and sent by the claim loop while the split sent it
    too: delivered twice (a trial: 15 of 20 events). A part whose lease could end before its
    answer waits for the lease to end instead, and is claimed again once."""
    monkeypatch.setattr(worker_module, "LEASE_MARGIN_MS", 200)  # a lease of 2 x 0.5 + 0.2 s
    with Upstream() as up:
        refused = refuse({"px1-3"}, hint=False)
        up.script = lambda seen: _slowly(refused(seen), 0.3)

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(20)])
            async with RelayRunner(store, destinations=[target(up.url, timeout_s=0.5)]):
                await delivered(store, 20, timeout_s=25)
            assert await states(store) == {"pending": 0, "delivered": 19, "dead": 1}

        run(test, tmp_path, timeout_s=40)
        sent = [
            e["dedupe_id"] for r in up.requests() if "px1-3" not in {e["dedupe_id"] for e in r.events} for e in r.events
        ]
        assert sorted(sent) == sorted(f"px1-{n}" for n in range(20) if n != 3), sent


def _slowly(reply: Reply | None, delay_s: float) -> Reply:
    """``reply`` (None: a 200) after ``delay_s``."""
    answer = reply or Reply()
    answer.delay_s = delay_s
    return answer


def test_a_split_batchs_parts_wait_out_a_pause_one_of_them_caused(tmp_path: Path) -> None:
    """A part answered 429 with Retry-After pauses the destination: the next part went out
    3 ms later all the same (a trial). It waits now, as every other request does."""
    with Upstream() as up:
        answers = iter([Reply(400, b"Bad Request"), Reply(429, b"slow down", {"retry-after": "1"})])
        up.script = lambda seen: next(answers, None)

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(20)])
            async with RelayRunner(store, destinations=[target(up.url, timeout_s=0.5)]):
                await delivered(store, 20, timeout_s=20)
            assert await states(store) == {"pending": 0, "delivered": 20, "dead": 0}

        run(test, tmp_path)
        first, limited, *rest = up.requests()
        assert (len(first.events), len(limited.events)) == (20, 10)
        assert rest and all(r.at - limited.at >= 0.95 for r in rest), [r.at - limited.at for r in rest]


def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff at its ceiling, so that a test can tell a pause from a lucky short draw."""

    def ceiling(failures: int, *, base_s: float, max_s: float) -> float:
        return float(min(max_s, base_s * 2**failures))

    monkeypatch.setattr(worker_module, "backoff_s", ceiling)


def test_401_dead_letters_the_batch_backs_off_and_replay_delivers_after_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The log says how long the destination backs off (it said "backing off", a trial)."""
    no_jitter(monkeypatch)
    with Upstream() as up:
        fixed = threading.Event()
        up.script = lambda seen: None if fixed.is_set() else Reply(401, b"Unauthorized", {"content-type": "text/plain"})

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(30)])
            paused = target(up.url, batch_size=10, concurrency=1, backoff_base_s=5.0, backoff_max_s=5.0)
            async with RelayRunner(store, destinations=[paused]):
                await until(lambda: len(up.seen) >= 1)
                await asyncio.sleep(0.5)
                assert len(up.seen) == 1, "the destination should back off after a 401"
                assert (await states(store))["dead"] == 10
                said = [r.getMessage() for r in caplog.records if "dead-lettered, backing off" in r.getMessage()]
                assert len(said) == 1 and re.search(
                    r"HTTP 401: 10 event\(s\) dead-lettered, backing off [45]\.\d s$", said[0]
                ), said
                fixed.set()
            async with RelayRunner(store, destinations=[target(up.url, batch_size=10)]):
                await delivered(store, 30)
                assert await store.replay(DeadLetterQuery(status=401), now_ms=time.time_ns() // 10**6) == 10
                await until(lambda: len(up.dedupe_ids()) == 30, what="the replayed events")
            assert await states(store) == {"pending": 0, "delivered": 30, "dead": 0}

        run(test, tmp_path)


def test_events_past_max_attempts_go_to_the_dead_letters(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """And the log says so: it said "retrying 0 event(s)", later "dead-lettered (gave up after 4
    attempts (max_attempts = 4)), retrying 0 in 7.9 s" (trials)."""
    with Upstream() as up:
        up.script = lambda seen: Reply(500, b"boom")

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(1)])
            counted: list[str] = []
            hook = lambda destination, result, latency_ms: counted.append(result)  # noqa: E731  (the metrics' hook)
            relay = RelayRunner(
                store, destinations=[target(up.url, max_attempts=3, backoff_max_s=0.02)], on_attempt=hook
            )
            async with relay:
                await delivered(store, 1)
            attempts = await store.query_attempts(1)
            assert [a.result for a in attempts] == ["retry", "retry", "dead"]
            assert counted == ["retry", "retry", "dead"]  # it was "retry" thrice: no dead attempt to alert on
            assert "max_attempts" in (attempts[-1].error or "")

        with caplog.at_level("WARNING", logger="capigate.relay"):
            run(test, tmp_path)
        last = [r.getMessage() for r in caplog.records if "HTTP 500" in r.getMessage()][-1]
        # Nor "retrying 0 in 7.9 s", nor a reason in parentheses in parentheses (a trial).
        assert last.endswith("HTTP 500; 1 event(s) dead-lettered, gave up after 3 attempts (max_attempts = 3)"), last


def test_an_event_past_a_small_max_age_is_said_in_seconds(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """max_age_hours = 0.0003 (about a second) said "gave up: queued 0.0 h ago" (a trial): the
    age is said in the unit that shows it."""
    with Upstream() as up:
        up.script = lambda seen: Reply(500, b"boom")

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(1)])
            aged = target(up.url, max_attempts=1000, max_age_hours=0.0003, backoff_max_s=0.1)
            async with RelayRunner(store, destinations=[aged]):
                await until(lambda: bool(_dead_said(caplog)), what="the dead letter's log line")

        with caplog.at_level("WARNING", logger="capigate.relay"):
            run(test, tmp_path)
        (said,) = _dead_said(caplog)
        assert re.search(r"gave up: queued \d\.\d s ago \(max_age_hours = 0\.0003\)$", said), said


def _dead_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "dead-lettered, gave up: queued" in r.getMessage()]


def test_a_hanging_destination_does_not_delay_another(tmp_path: Path) -> None:
    with Upstream() as hanging, Upstream() as healthy:
        hang = threading.Event()
        hanging.script = lambda seen: Reply(hold=hang)

        async def test(store: Store) -> None:
            slow = target(hanging.url, source="px_slow", timeout_s=20.0)
            fast = target(healthy.url, source="px_fast")
            async with RelayRunner(store, destinations=[slow, fast]) as runner:
                await ingest(store, [axon_event(n, "px_slow") for n in range(400)])  # fills every slow slot
                await until(lambda: len(hanging.seen) == 4, what="the hanging destination's slots to fill")
                started = time.monotonic()
                await ingest(store, [axon_event(n, "px_fast") for n in range(300)])
                runner.wake("axon:px_fast")
                await until(lambda: len(healthy.dedupe_ids()) == 300, what="the healthy destination")
                took = time.monotonic() - started
                assert took < 2.0, f"the healthy destination took {took:.2f} s"
                assert runner.stats["axon:px_slow"].in_flight == 4
                hang.set()  # let the hanging requests end so the runner stops promptly

        run(test, tmp_path)


def test_stop_finishes_the_attempts_in_flight_and_leaves_no_lease(tmp_path: Path) -> None:
    with Upstream() as up:
        up.script = lambda seen: Reply(delay_s=0.5)

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(50)])
            runner = RelayRunner(store, destinations=[target(up.url)])
            await runner.start()
            await until(lambda: len(up.seen) == 1, what="a request in flight")
            await runner.stop()
            assert await states(store) == {"pending": 0, "delivered": 50, "dead": 0}

        run(test, tmp_path)


def test_a_stops_line_counts_the_axon_events_cut_short_without_a_dedupe_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The stop's line said "their dedupe_id covers a copy the upstream received" of every
    Axon request cut short, though an event may be accepted without one (a second trial): it
    counts those, whose copy AppLovin counts twice."""
    with Upstream() as up:
        hang = threading.Event()
        up.script = lambda seen: Reply(hold=hang)

        async def test(store: Store) -> None:
            events = [axon_event(0), msgspec.structs.replace(axon_event(1), dedupe_id=None)]
            await ingest(store, events)
            runner = RelayRunner(store, destinations=[target(up.url, timeout_s=10.0)])
            await runner.start()
            await until(lambda: len(up.seen) == 1, what="a request in flight")
            await runner.stop()
            hang.set()

        with caplog.at_level("INFO", logger="capigate.relay"):
            run(test, tmp_path)
        said = " ".join(r.getMessage() for r in caplog.records)
        assert "their 2 event(s) are pending again" in said, said
        assert "1 of them have no dedupe_id: one the upstream had received counts twice there" in said, said
        assert "covers a copy" not in said, said


def test_stop_cuts_a_hanging_request_short_after_its_grace_without_spending_an_attempt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop waited for a hanging upstream's whole timeout_s (10 s: as long as Docker waits
    before its kill), then counted a TimeoutError as a failed attempt. It waits STOP_GRACE_S,
    records the attempt as ``interrupted``, and the event is due again at once: pending, its
    lease given back, its retry budget whole (max_attempts = 2 takes a 500 after it)."""
    with Upstream() as up:
        hang = threading.Event()
        answers = iter([Reply(hold=hang), Reply(500, b"boom")])
        up.script = lambda seen: next(answers, None)
        slow = target(up.url, timeout_s=10.0, max_attempts=2)

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(3)])
            runner = RelayRunner(store, destinations=[slow])
            await runner.start()
            await until(lambda: len(up.seen) == 1, what="a request in flight")
            started = time.monotonic()
            await runner.stop()
            took = time.monotonic() - started
            assert worker_module.STOP_GRACE_S <= took < worker_module.STOP_GRACE_S + 1.0, took
            assert await states(store) == {"pending": 3, "delivered": 0, "dead": 0}
            (cut,) = await store.query_attempts(1)
            assert (cut.result, cut.status) == ("interrupted", None)
            grace = f"{worker_module.STOP_GRACE_S:.1f}"
            assert (cut.error or "").startswith(f"interrupted: the relay stopped {grace} s into the request")
            hang.set()
            async with RelayRunner(store, destinations=[slow]):  # the next start: a 500, then a 200
                await delivered(store, 3)
            assert await states(store) == {"pending": 0, "delivered": 3, "dead": 0}
            assert [a.result for a in await store.query_attempts(1)] == ["interrupted", "retry", "delivered"]

        with caplog.at_level("INFO", logger="capigate.relay"):
            run(test, tmp_path)
        said = [r.getMessage() for r in caplog.records]
        assert not [line for line in said if "TimeoutError" in line], said
        assert (
            f"relay axon:px1: stopping: 1 request(s) had no answer within the stop's {worker_module.STOP_GRACE_S:g} s "
            "and were cut short; their "
            "3 event(s) are pending again, sent at the next start (their dedupe_id covers a copy the upstream "
            "received)"
        ) in said, said


def test_appsflyer_gets_one_event_per_request_in_its_own_body_shape(tmp_path: Path) -> None:
    stored = {
        "appsflyer_id": "1700000000000-1234567",
        "eventName": "af_purchase",
        "eventValue": {"af_revenue": "9.99", "af_currency": "USD"},
        "custom_data": {"tier": "gold"},
        "eventTime": "2026-11-20 10:00:00.000",
        "eventTime_restamped": "2026-11-23 10:00:00.000",
        "os": "14",
    }
    events = [
        NewEvent(
            api="appsflyer",
            source="com.example.shop",
            name="af_purchase",
            event_time_ms=1,
            dedupe_id=None,
            payload=msgspec.json.encode(stored),
            destination="appsflyer:com.example.shop",
        )
        for _ in range(3)
    ]
    with Upstream() as up:
        up.script = lambda seen: Reply(200, b"OK", {"content-type": "text/plain"})

        async def test(store: Store) -> None:
            await ingest(store, events)
            af = target(up.url, api="appsflyer", source="com.example.shop")
            async with RelayRunner(store, destinations=[af]):
                await delivered(store, 3)

        run(test, tmp_path)
        requests = up.requests()
        assert len(requests) == 3
        for r in requests:
            assert r.path == "/inappevent/com.example.shop"
            assert r.headers["authentication"] == KEY
            body = r.json()
            assert body == {
                "appsflyer_id": "1700000000000-1234567",
                "eventName": "af_purchase",
                "eventValue": '{"af_revenue":"9.99","af_currency":"USD"}',
                "custom_data": '{"tier":"gold"}',
                "eventTime": "2026-11-20 10:00:00.000",
                "os": "14",
            }
            assert isinstance(body["eventValue"], str)


def test_a_store_that_refuses_claims_is_logged_once_not_at_every_poll(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """During a store outage each relay worker logged "cannot claim events" at every poll (twice
    a second a destination, a trial): once now, and once more when claims pass again."""
    data = tmp_path / "data"
    data.mkdir()
    with Upstream() as up:

        async def test(store: Store) -> None:
            async with RelayRunner(store, destinations=[target(up.url, poll_interval_s=0.05)]):
                await asyncio.sleep(0.2)
                shutil.rmtree(data)  # the writer's files are gone: every write, claims too, fails
                await asyncio.sleep(1.0)

        with caplog.at_level("WARNING", logger="capigate.relay"):
            run(test, data)
    said = [r.getMessage() for r in caplog.records if "cannot claim events" in r.getMessage()]
    assert len(said) == 1, said


def test_a_long_retry_after_is_capped_by_max_retry_after_s_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 with Retry-After: 100000 paused the destination for the default cap, a day, and the
    log said only "retrying 2 event(s) in 86400.0 s" (a trial). The default is 10 minutes now
    (backoff_max_s's), and the line says the upstream asked for longer."""
    assert msgspec.convert({}, RelaySettings).max_retry_after_s == 600.0
    with Upstream() as up:
        up.script = lambda seen: Reply(429, b"slow down", {"retry-after": "100000"}) if len(up.seen) == 0 else None

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(2)])
            async with RelayRunner(store, destinations=[target(up.url, max_retry_after_s=0.5)]):
                await delivered(store, 2)

        with caplog.at_level("WARNING", logger="capigate.relay"):
            run(test, tmp_path)
        first, second = up.requests()
        assert 0.45 <= second.at - first.at < 10
    (line,) = [r.getMessage() for r in caplog.records if "HTTP 429" in r.getMessage()]
    assert "HTTP 429 (Retry-After 100000 s capped at 0.5 s, max_retry_after_s); retrying 2 event(s) in" in line, line


def test_a_replay_lifts_the_destinations_pause_but_new_events_do_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 paused the destination for a day (in the worker's memory); `capigate replay`
    re-queued its dead letters, "due again at once", and nothing was sent until a restart (a
    trial). The replay (here straight on the store, as the CLI does from its own process)
    lifts the pause; events that merely arrive meanwhile do not."""
    with Upstream() as up:
        answers = iter([Reply(401, b"Unauthorized"), Reply(429, b"slow down", {"retry-after": "100000"})])
        up.script = lambda seen: next(answers, None)

        async def test(store: Store) -> None:
            paused = target(up.url, max_retry_after_s=86400.0)
            async with RelayRunner(store, destinations=[paused]) as relay:
                await ingest(store, [axon_event(n) for n in range(2)])
                await until(lambda: relay.stats["axon:px1"].dead == 2, what="the 401's dead letters")
                await ingest(store, [axon_event(n) for n in range(2, 4)])
                await until(lambda: relay.stats["axon:px1"].retried == 2, what="the 429")
                await ingest(store, [axon_event(4)])  # arrives during the pause: waits
                await asyncio.sleep(0.5)
                assert len(up.seen) == 2, "new events must not lift the pause"
                assert await store.replay(DeadLetterQuery(destination="axon:px1"), now_ms=time.time_ns() // 10**6) == 2
                await until(lambda: len(up.dedupe_ids()) == 3, timeout_s=10, what="the replayed events")
                assert sorted(up.dedupe_ids()) == ["px1-0", "px1-1", "px1-4"]
            # The 429's own two keep their retry time (Retry-After, capped): replay takes dead ones.
            assert await states(store) == {"pending": 2, "delivered": 3, "dead": 0}

        with caplog.at_level("WARNING", logger="capigate.relay"):
            run(test, tmp_path)
    assert any("events were replayed: the pause" in r.getMessage() for r in caplog.records)


def test_every_dead_letter_of_a_split_batch_is_logged_and_the_split_sums_itself_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An upstream refusing everything with a bare 400: 7 events cost 13 requests (halving down
    to single events), and the log must account for all 7 dead letters, with one line that
    says what the halving cost."""
    with Upstream() as up:
        up.script = lambda seen: Reply(400, b"Bad Request")

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(n) for n in range(7)])
            async with RelayRunner(store, destinations=[target(up.url)]):
                await delivered(store, 7)
            assert await states(store) == {"pending": 0, "delivered": 0, "dead": 7}

        with caplog.at_level("WARNING", logger="capigate.relay"):
            run(test, tmp_path)
        assert len(up.requests()) == 13
    messages = [r.getMessage() for r in caplog.records]
    refused = [m for m in messages if "upstream refused" in m]
    assert sum(int(m.split("refused ")[1].split(" ")[0]) for m in refused) == 7, refused
    (summary,) = [m for m in messages if "retried in parts" in m]
    assert summary.endswith(
        "a batch of 7 event(s) refused (HTTP 400), retried in parts: 13 request(s) in all, 0 delivered, 7 dead-lettered"
    ), summary
