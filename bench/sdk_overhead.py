"""The SDK's own overhead: events per second it can build, check, hash and encode on one core,
against raw msgspec encoding of the same events, measured in the same run.

    .venv/bin/python -m bench.sdk_overhead [--events 10000] [--repeat 3]

Nothing is sent: ``prepare`` is everything ``send`` does before the network. Events come from
the seeded population of the load benchmark (plain, unique emails and phones, ~40 % purchases
with items), so the SDK must normalise and hash every identifier; the phone-parsing cache is
emptied before each timed pass. Each figure is the best of ``--repeat`` passes, on one CPU.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from typing import Any

import msgspec

from bench.cli import positive_int
from bench.population import User, make_population
from capigate import (
    AppsFlyerClient,
    AxonBatch,
    AxonClient,
    InAppEvent,
    Item,
    PageViewData,
    PurchaseData,
    ServerEvent,
    UserData,
    axon_event,
    in_app_event,
)

NOW_MS = time.time_ns() // 1_000_000


def _user_data(u: User) -> UserData:
    return UserData(
        client_ip_address=u.ip,
        client_user_agent=u.user_agent,
        esi="web",
        client_id=u.client_id,
        user_id=u.user_id,
        email=u.email,
        phone=u.phone,
        country_code=u.country,
        os=u.os,
    )


def _axon_fields(n: int, u: User) -> dict[str, Any]:
    if n % 5 < 2:
        items = [Item(item_id=f"sku-{n % 97}", item_name="Shoe", price=15.0, quantity=2, image_url="https://x/i.png")]
        data: Any = PurchaseData(
            currency=u.currency,
            items=items,
            transaction_id=f"t{n}",
            value=30.0,
            shipping=4.0,
            tax=2.0,
            user_id=u.user_id,
        )
        name = "purchase"
    else:
        name, data = "page_view", PageViewData(user_id=u.user_id)
    return {
        "name": name,
        "user_data": _user_data(u),
        "event_source_url": f"https://shop.example.com/p/{n % 500}",
        "data": data,
        "dedupe_id": f"d{n}",
    }


def build_axon_structs(users: list[User]) -> list[ServerEvent]:
    """Plain Struct constructors: what the SDK user writes without the checking builder."""
    out = []
    for n, u in enumerate(users):
        f = _axon_fields(n, u)
        out.append(ServerEvent(event_time=NOW_MS, **f))
    return out


def build_axon_checked(users: list[User]) -> list[ServerEvent]:
    """``axon_event``: the builder that checks each event where it is built."""
    out = []
    for n, u in enumerate(users):
        f = _axon_fields(n, u)
        out.append(axon_event(f.pop("name"), event_time_ms=NOW_MS, **f))
    return out


def _af_fields(n: int, u: User) -> dict[str, Any]:
    return {
        "appsflyer_id": f"{1415211453000 + n}-{n}",
        "eventName": "af_purchase",
        "eventValue": msgspec.json.encode({"af_revenue": "6.5", "af_content_id": f"sku-{n % 97}"}).decode(),
        "eventCurrency": u.currency,
        "customer_user_id": u.user_id,
        "ip": u.ip if ":" not in u.ip else "203.0.113.9",
        "os": "17.5",
        "email_hashed": u.email,
        "phone_number_e164_hashed": u.phone,
    }


def build_af_structs(users: list[User]) -> list[InAppEvent]:
    return [InAppEvent(**_af_fields(n, u)) for n, u in enumerate(users)]


def build_af_checked(users: list[User]) -> list[InAppEvent]:
    out = []
    for n, u in enumerate(users):
        f = _af_fields(n, u)
        out.append(in_app_event(f.pop("appsflyer_id"), f.pop("eventName"), f.pop("eventValue"), **f))
    return out


def best_rate(events: int, work: Callable[[], object], repeat: int) -> float:
    """Events per second of the fastest of ``repeat`` passes (GC off while timing)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        started = time.perf_counter()
        work()
        elapsed = time.perf_counter() - started
        gc.enable()
        best = min(best, elapsed)
    return events / best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=positive_int, default=10_000)
    parser.add_argument("--repeat", type=positive_int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    users = make_population(args.events)
    n, r = len(users), args.repeat
    encoder = msgspec.json.Encoder()

    axon_structs = build_axon_structs(users)
    axon = AxonClient("px_bench", "key", base_url="http://127.0.0.1:9")
    af_structs = build_af_structs(users)
    appsflyer = AppsFlyerClient("com.example.bench", "key", base_url="http://127.0.0.1:9")
    assert axon.prepare(axon_structs).events == n and appsflyer.prepare(af_structs).events == n

    def raw_axon() -> None:
        for i in range(0, n, 100):
            encoder.encode(AxonBatch(events=axon_structs[i : i + 100]))

    rows = [
        ("Axon", "raw msgspec encode, batches of 100", best_rate(n, raw_axon, r)),
        ("Axon", "SDK prepare: check + hash + encode", best_rate(n, lambda: axon.prepare(axon_structs), r)),
        ("Axon", "SDK build (axon_event) + prepare", best_rate(n, lambda: axon.prepare(build_axon_checked(users)), r)),
        ("Axon", "Struct constructors only", best_rate(n, lambda: build_axon_structs(users), r)),
        (
            "AppsFlyer",
            "raw msgspec encode, one body each",
            best_rate(n, lambda: [encoder.encode(e) for e in af_structs], r),
        ),
        ("AppsFlyer", "SDK prepare: check + hash + encode", best_rate(n, lambda: appsflyer.prepare(af_structs), r)),
        (
            "AppsFlyer",
            "SDK build (in_app_event) + prepare",
            best_rate(n, lambda: appsflyer.prepare(build_af_checked(users)), r),
        ),
    ]
    axon.close()
    appsflyer.close()
    print(f"{n:,} events, best of {r}, one core (pid {os.getpid()})\n")
    print(f"{'API':<10} {'stage':<40} {'events/s':>12} {'µs/event':>9}")
    for api, stage, rate in rows:
        print(f"{api:<10} {stage:<40} {rate:>12,.0f} {1e6 / rate:>9.1f}")
    raw_a, sdk_a, raw_f, sdk_f = rows[0][2], rows[1][2], rows[4][2], rows[5][2]
    print(
        f"\nratio raw encode / SDK prepare: Axon {raw_a / sdk_a:.1f}x, AppsFlyer {raw_f / sdk_f:.1f}x "
        f"(SDK: Axon {sdk_a:,.0f} events/s, AppsFlyer {sdk_f:,.0f} events/s on one core)"
    )


if __name__ == "__main__":
    main()
