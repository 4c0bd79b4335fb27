"""Request bodies for each workload, written to files once per run.

Axon bodies carry ``TOKEN`` in every ``dedupe_id`` and ``transaction_id``. The load
generators (``wrk_rotate.lua``, ``loadgen.py``) replace it with a string unique to each
request they send, so rotating through a few hundred files still gives every event of the
run its own ``dedupe_id`` and the gateway stores it instead of dropping it as a duplicate.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.population import User, make_population

__all__ = ["TOKEN", "BodySet", "run_token", "write_body_sets", "write_lead_gen_sets"]

TOKEN = "@@RQ@@"


def run_token() -> str:
    """A prefix no other load run's request ids share (the time in ns, hex): the bench keeps a
    server through several runs, which re-sent each other's dedupe ids, all duplicates."""
    return f"{time.time_ns():x}"


AF_MAX_BYTES = 1024
PRODUCTS = (
    ("sku-1001", "Running shoes", "Apparel & Accessories > Shoes", 187, 89.99),
    ("sku-1002", "Trail socks (3 pack)", "Apparel & Accessories > Clothing", 1604, 14.5),
    ("sku-2001", "Wireless earbuds", "Electronics > Audio", 505771, 59.0),
    ("sku-2002", "Phone case", "Electronics > Accessories", 264, 19.99),
    ("sku-3001", "Coffee beans 1kg", "Food > Coffee", 1868, 24.0),
    ("sku-4001", "Yoga mat", "Sporting Goods > Fitness", 3276, 35.0),
    ("sku-5001", "Gem pack (500)", "Software > Games", 1279, 4.99),
    ("sku-5002", "Season pass", "Software > Games", 1279, 9.99),
)
PAGES = ("/", "/product/{sku}", "/category/shoes", "/cart", "/checkout", "/search?q=shoes")
AF_EVENTS = ("af_purchase", "af_content_view", "af_add_to_cart", "af_complete_registration")


@dataclass(frozen=True, slots=True)
class BodySet:
    name: str
    directory: Path
    count: int
    events_per_request: int
    mean_bytes: int

    def path(self, index: int) -> Path:
        return self.directory / f"body-{index:05d}.json"


def _items(rng: random.Random) -> list[dict[str, Any]]:
    items = []
    for sku, name, category, category_id, price in rng.sample(PRODUCTS, rng.randint(1, 3)):
        items.append(
            {
                "item_id": sku,
                "item_name": name,
                "item_category": category,
                "item_category_id": category_id,
                "price": price,
                "quantity": rng.choice((1, 1, 1, 2, 3)),
            }
        )
    return items


def _axon_event(rng: random.Random, user: User, now_ms: int, ref: str) -> dict[str, Any]:
    sku = rng.choice(PRODUCTS)[0]
    page = rng.choice(PAGES).format(sku=sku)
    event: dict[str, Any] = {
        "name": "purchase" if rng.random() < 0.4 else "page_view",
        "event_time": now_ms - rng.randrange(120_000),
        "event_source_url": f"https://shop.example.com{page}",
        "dedupe_id": f"{TOKEN}-{ref}",
        "user_data": {
            "client_ip_address": user.ip,
            "client_user_agent": user.user_agent,
            "esi": "web" if user.os == "desktop_os" or rng.random() < 0.5 else "app",
            "email": user.email,
            "phone": user.phone,
            "user_id": user.user_id,
            "client_id": user.client_id,
            "os": user.os,
            "country_code": user.country,
        },
    }
    user_data = event["user_data"]
    if user.zip:
        user_data["zip"] = user.zip
    if user.os != "desktop_os":
        user_data["ifa"] = user.ifa
    if rng.random() < 0.3:
        user_data["aleid"] = f"ale.{rng.getrandbits(64):016x}"
    if event["name"] == "page_view":
        event["data"] = {"user_id": user.user_id} if rng.random() < 0.5 else None
        return event
    items = _items(rng)
    value = round(sum(i["price"] * i["quantity"] for i in items), 2)
    event["data"] = {
        "currency": user.currency,
        "value": value,
        "transaction_id": f"T{TOKEN}-{ref}",
        "shipping": rng.choice((0, 4.99, 5.99)),
        "tax": round(value * 0.08, 2),
        "user_id": user.user_id,
        "items": items,
    }
    if rng.random() < 0.5:
        event["measurement_partner_data"] = {
            "is_claimable": True,
            "attribution_model": "LAST_CLICK",
            "attribution_lookback_window_hours": 24,
            "attribution_share": 1,
            "accounting_mode": "ACCRUAL",
            "campaign_id": str(rng.randrange(100, 999)),
        }
    return event


def _af_event(rng: random.Random, user: User, now: datetime) -> dict[str, Any]:
    name = rng.choice(AF_EVENTS)
    value: dict[str, Any] = {}
    if name in ("af_purchase", "af_add_to_cart"):
        sku, _, _, _, price = rng.choice(PRODUCTS)
        quantity = rng.randint(1, 3)
        value = {
            "af_revenue": f"{price * quantity:.2f}",
            "af_currency": user.currency,
            "af_content_id": sku,
            "af_quantity": quantity,
        }
        if name == "af_purchase":
            value["af_order_id"] = f"o{rng.getrandbits(40):010x}"
    elif name == "af_content_view":
        value = {"af_content_id": rng.choice(PRODUCTS)[0], "af_content_type": "product"}
    when = now - timedelta(milliseconds=rng.randrange(120_000))
    return {
        "appsflyer_id": f"{rng.randrange(10**12, 10**13)}-{rng.randrange(10**6, 10**8)}",
        "eventName": name,
        "eventValue": json.dumps(value, separators=(",", ":")),
        "eventTime": when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}",
        "customer_user_id": user.user_id,
        "ip": user.ip if ":" not in user.ip else "73.12.40.8",
        "advertising_id": user.ifa,
        "os": "14",
        "app_version_name": "3.2.1",
        "bundleIdentifier": "com.example.bench",
    }


def _write(directory: Path, bodies: list[bytes], name: str, per_request: int) -> BodySet:
    directory.mkdir(parents=True, exist_ok=True)
    for index, body in enumerate(bodies):
        (directory / f"body-{index:05d}.json").write_bytes(body)
    mean = sum(len(b) for b in bodies) // len(bodies)
    return BodySet(name, directory, len(bodies), per_request, mean)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def write_body_sets(root: Path, *, batches: int, singles: int, population: int, seed: int = 7) -> dict[str, BodySet]:
    """Write the W1 (100-event batches), W2 Axon and W2 AppsFlyer bodies under ``root``."""
    users = make_population(population, seed)
    rng = random.Random(seed + 1)
    now_ms = int(time.time() * 1000)
    w1 = [
        _dump({"events": [_axon_event(rng, rng.choice(users), now_ms, f"{b}-{e}") for e in range(100)]})
        for b in range(batches)
    ]
    w2 = [_dump({"events": [_axon_event(rng, rng.choice(users), now_ms, f"{b}")]}) for b in range(singles)]
    now = datetime.now(UTC)
    af = [_dump(_af_event(rng, rng.choice(users), now)) for _ in range(singles)]
    too_big = [len(b) for b in af if len(b) > AF_MAX_BYTES]
    if too_big:
        raise ValueError(f"AppsFlyer bodies over {AF_MAX_BYTES} bytes: {too_big[:5]}")
    return {
        "w1": _write(root / "w1", w1, "w1", 100),
        "w2-axon": _write(root / "w2-axon", w2, "w2-axon", 1),
        "w2-af": _write(root / "w2-af", af, "w2-af", 1),
    }


def _lead_gen_event(rng: random.Random, user: User, now_ms: int, ref: str) -> dict[str, Any]:
    """A lead-gen event valid both for the seed OpenAPI (what Prism checks) and for capigate's
    ``lead_gen`` profile: ``page_view`` with ``data: null``, or ``generate_lead``."""
    user_data: dict[str, Any] = {
        "client_ip_address": user.ip,
        "client_user_agent": user.user_agent,
        "esi": "web",
        "email": user.email,
        "phone": user.phone,
        "user_id": user.user_id,
        "client_id": user.client_id,
        "country_code": user.country,
        "os": user.os,
    }
    if rng.random() < 0.3:
        user_data["aleid"] = f"ale.{rng.getrandbits(64):016x}"
    lead = rng.random() < 0.5
    return {
        "name": "generate_lead" if lead else "page_view",
        "event_time": now_ms - rng.randrange(120_000),
        "event_source_url": "https://leads.example.com/" + ("thanks" if lead else "form"),
        "dedupe_id": f"{TOKEN}-{ref}",
        "data": {"currency": user.currency, "value": rng.choice((10, 25, 30.5, 50))} if lead else None,
        "user_data": user_data,
    }


def write_lead_gen_sets(
    root: Path, *, batches: int, singles: int, population: int, seed: int = 11
) -> dict[str, BodySet]:
    """The peer comparison's bodies: 100-event lead-gen batches and single lead-gen events."""
    users = make_population(population, seed)
    rng = random.Random(seed + 1)
    now_ms = int(time.time() * 1000)
    w1 = [
        _dump({"events": [_lead_gen_event(rng, rng.choice(users), now_ms, f"{b}-{e}") for e in range(100)]})
        for b in range(batches)
    ]
    w2 = [_dump({"events": [_lead_gen_event(rng, rng.choice(users), now_ms, f"{b}")]}) for b in range(singles)]
    return {"w1": _write(root / "lead-w1", w1, "lead-w1", 100), "w2": _write(root / "lead-w2", w2, "lead-w2", 1)}
