"""The one retry timing (capigate/retry.py) of the relay and the SDK: backoff with full jitter,
Retry-After in seconds (fractional too) or as an HTTP date, and the cap on a long Retry-After.
Each caller is then checked once against a real local upstream."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest

from capigate.client import AxonClient, RetryPolicy
from capigate.relay import RelayRunner
from capigate.retry import backoff_s, retry_after_s, retry_delay_s
from capigate.store import Store
from tests.fault_proxy import Reply, fault_proxy
from tests.helpers import page_view
from tests.test_relay import axon_event, delivered, ingest, run, target
from tests.upstream import Reply as UpstreamReply
from tests.upstream import Upstream

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC).timestamp()


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    rng = random.Random(7)
    for failures in range(12):
        ceiling = min(60.0, 0.5 * 2**failures)
        draws = [backoff_s(failures, base_s=0.5, max_s=60.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8 and min(draws) < ceiling * 0.2  # spread, not a fixed delay
    assert backoff_s(10_000, base_s=1.0, max_s=5.0, rng=rng) <= 5.0


def test_retry_after_reads_seconds_fractional_seconds_and_http_dates() -> None:
    later = format_datetime(datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_s("7", now_s=NOW) == 7.0
    assert retry_after_s(" 120 ", now_s=NOW) == 120.0
    assert retry_after_s("1.5", now_s=NOW) == 1.5
    assert retry_after_s(later, now_s=NOW) == pytest.approx(30.0)
    assert retry_after_s("Mon, 23 Nov 2026 11:00:00 GMT", now_s=NOW) == 0.0  # in the past


@pytest.mark.parametrize("nonsense", [None, "", "soon", "-5", "nan", "inf", "Mon, 23 Nov 2026 11:00:00"])
def test_a_retry_after_that_is_neither_seconds_nor_an_http_date_is_ignored(nonsense: str | None) -> None:
    assert retry_after_s(nonsense, now_s=NOW) is None
    assert retry_delay_s(0.25, nonsense, now_s=NOW, max_retry_after_s=60) == 0.25


def test_the_wait_is_the_backoff_or_the_retry_after_if_longer_up_to_the_cap() -> None:
    assert retry_delay_s(0.25, "1.5", now_s=NOW, max_retry_after_s=60) == 1.5
    assert retry_delay_s(4.0, "1.5", now_s=NOW, max_retry_after_s=60) == 4.0
    assert retry_delay_s(0.25, "99999999", now_s=NOW, max_retry_after_s=60) == 60.0
    assert retry_delay_s(0.25, "Sat, 01 Jan 2039 00:00:00 GMT", now_s=NOW, max_retry_after_s=60) == 60.0


def test_the_sdk_waits_a_fractional_retry_after() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.01)
    with (
        fault_proxy(faults=[Reply(429, headers={"Retry-After": "1.5"})], then=Reply(200, b"{}")) as proxy,
        AxonClient("px", "key", base_url=proxy.url, retry=policy) as client,
    ):
        started = time.monotonic()
        result = client.send([page_view()])
    assert result.ok and result.requests[0].attempts == 2
    assert time.monotonic() - started >= 1.45


def test_the_sdk_caps_a_long_retry_after_and_tries_again() -> None:
    policy = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.01, max_retry_after_s=0.5)
    with (
        fault_proxy(faults=[Reply(429, headers={"Retry-After": "3600"})], then=Reply(200, b"{}")) as proxy,
        AxonClient("px", "key", base_url=proxy.url, retry=policy) as client,
    ):
        started = time.monotonic()
        result = client.send([page_view()])
    assert result.ok and result.requests[0].attempts == 2
    assert 0.45 <= time.monotonic() - started < 30  # the cap, not the hour asked for


@pytest.mark.parametrize(
    ("retry_after", "cap_s", "least_s"),
    [("1.5", 86400.0, 1.45), ("3600", 0.5, 0.45)],
    ids=["fractional", "capped"],
)
def test_the_relay_waits_the_same_way(tmp_path: Path, retry_after: str, cap_s: float, least_s: float) -> None:
    with Upstream() as up:
        up.script = lambda seen: (
            UpstreamReply(429, b"slow down", {"retry-after": retry_after}) if len(up.seen) == 0 else None
        )
        paced = target(up.url, backoff_max_s=0.01, max_retry_after_s=cap_s)

        async def test(store: Store) -> None:
            await ingest(store, [axon_event(1)])
            async with RelayRunner(store, destinations=[paced]):
                await delivered(store, 1)

        run(test, tmp_path)
        first, second = up.requests()
        assert least_s <= second.at - first.at < 30
