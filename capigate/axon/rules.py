"""Validation and normalisation of Axon batches: every rule of NOTES.md lives here.

``check_batch`` takes the decoded JSON body and returns the events ready to store (payload
normalised, PII hashed) or every problem found; warnings are collected either way.
"""

from __future__ import annotations

import math
import socket
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec

from capigate.axon.profiles import Profile
from capigate.axon.schema import (
    DATA_SCHEMAS,
    OS_VALUES,
    Item,
    MeasurementPartnerData,
    ServerEvent,
    UserData,
    field_names,
)
from capigate.checking import Report, check_struct, did_you_mean, join
from capigate.identity import (
    InvalidIdentifier,
    hash_email,
    hash_phone,
    is_sha256_hex,
    normalise_phone,
)
from capigate.iso import COUNTRY_CODES, CURRENCY_CODES
from capigate.store.base import NewEvent

__all__ = ["MAX_BATCH", "BatchCheck", "check_batch"]

S = TypeVar("S", bound=msgspec.Struct)

MAX_BATCH = 100
_YEAR_MS = 365 * 24 * 3600 * 1000
_SECONDS_LIKE_BELOW = 100_000_000_000  # 1973 in ms, 5138 in s: smaller values are seconds
_encode = msgspec.json.Encoder().encode

_EVENT_KEYS = field_names(ServerEvent)
_USER_KEYS = field_names(UserData)
_ITEM_KEYS = field_names(Item)
_MPD_KEYS = field_names(MeasurementPartnerData)
_QUANTITY_REQUIRED = frozenset({"add_to_cart", "remove_from_cart", "purchase"})
_RECOMMENDED: dict[str, tuple[str, ...]] = {
    "view_item": ("currency",),
    "add_to_cart": ("currency",),
    "add_payment_info": ("currency", "items", "payment_type", "value"),
    "purchase": ("shipping", "tax", "user_id"),
}
_ITEM_RECOMMENDED = ("item_name", "item_variant_id", "price", "image_url", "item_category_id")
_MPD_TIMESTAMPS = ("first_purchase_ts", "first_visit_ts", "last_purchase_ts", "last_visit_ts")


@dataclass(slots=True)
class BatchCheck:
    events: list[NewEvent] = field(default_factory=list)
    report: Report = field(default_factory=Report)


def check_batch(body: Any, profile: Profile, *, source: str, now_ms: int, test_tag: str | None = None) -> BatchCheck:
    result = BatchCheck()
    report = result.report
    raw_events = _batch_events(body, profile, report)
    if raw_events is None:
        return result
    for i, raw in enumerate(raw_events):
        checked = _check_event(raw, f"events[{i}]", profile, report, now_ms)
        if checked is not None and report.ok:
            result.events.append(_new_event(*checked, raw, source, test_tag))
    if not report.ok:
        result.events.clear()
    return result


def _batch_events(body: Any, profile: Profile, report: Report) -> list[Any] | None:
    if not isinstance(body, dict):
        report.error("", "not_an_object", 'the body must be a JSON object {"events": [...]}')
        return None
    _unknown_keys(body, frozenset({"events"}), "", profile, report)
    events = body.get("events")
    if events is None:
        report.error("events", "missing_field", "`events` is required")
    elif not isinstance(events, list):
        report.error("events", "wrong_type", "`events` must be an array of events")
    elif not events:
        report.error("events", "empty_batch", "`events` must hold at least 1 event")
    elif len(events) > MAX_BATCH:
        report.error("events", "too_many_events", f"a batch holds at most {MAX_BATCH} events, got {len(events)}")
    else:
        return events
    return None


def _check_event(
    raw: Any, path: str, profile: Profile, report: Report, now_ms: int
) -> tuple[ServerEvent, dict[str, str]] | None:
    """The typed event and the normalised values of its user_data, or None if refused."""
    if not isinstance(raw, dict):
        report.error(path, "not_an_object", "each event must be a JSON object")
        return None
    _unknown_keys(raw, _EVENT_KEYS, path, profile, report)
    user_raw = raw.get("user_data")
    if isinstance(user_raw, dict):
        allowed = profile.user_fields if profile.user_fields is not None else _USER_KEYS
        _unknown_keys(user_raw, allowed, join(path, "user_data"), profile, report)
    event = check_struct(raw, ServerEvent, path, report)
    name, url, ms = raw.get("name"), raw.get("event_source_url"), raw.get("event_time")
    if isinstance(name, str) and name and "data" in raw:
        _check_name_and_data(name, raw["data"], path, profile, report)
    if isinstance(ms, int) and ms >= 0:
        _check_event_time(ms, path, now_ms, report)
    if isinstance(url, str) and url:
        _check_url(url, path, profile, report)
    user = event.user_data if event is not None else _quiet(raw.get("user_data"), UserData)
    normalised = _check_user_data(user, f"{path}.user_data", profile, report) if user is not None else {}
    if "measurement_partner_data" in raw:
        _check_measurement(raw["measurement_partner_data"], f"{path}.measurement_partner_data", profile, report)
    if raw.get("dedupe_id") is None and profile.dedupe_id_expected:
        report.warn(f"{path}.dedupe_id", "missing_dedupe_id", "without a dedupe_id this event cannot be deduplicated")
    return (event, normalised) if event is not None else None


def _quiet(raw: Any, kind: type[S]) -> S | None:
    """``raw`` as ``kind`` if it converts; its problems were already reported otherwise."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError:
        return None


def _unknown_keys(obj: dict[str, Any], known: frozenset[str], path: str, profile: Profile, report: Report) -> None:
    if obj.keys() <= known:
        return
    for key in obj.keys() - known:
        hint = did_you_mean(key, known)
        if profile.strict_keys:
            report.error(
                join(path, key), "unknown_field", f"`{key}` is not allowed by the {profile.name} profile{hint}"
            )
        else:
            report.warn(join(path, key), "unknown_field", f"`{key}` is not a field of the API; kept as sent{hint}")


def _check_name_and_data(name: str, data: Any, path: str, profile: Profile, report: Report) -> None:
    data_path = join(path, "data")
    if name not in profile.events:
        report.error(
            join(path, "name"),
            "unknown_event",
            f"`{name}` is not an event of the {profile.name} profile{did_you_mean(name, profile.events)};"
            f" expected one of {', '.join(sorted(profile.events))}",
        )
        return
    if name in profile.null_data_events:
        if data is not None:
            report.error(data_path, "data_must_be_null", f'`{name}` events send `"data": null`')
        return
    if data is None:
        if name != "page_view":
            report.error(data_path, "missing_data", f"`{name}` events need a data object")
        return
    schema = DATA_SCHEMAS[name]
    assert schema is not None
    if not isinstance(data, dict):
        report.error(data_path, "wrong_type", "`data` must be a JSON object or null")
        return
    if profile.strict_keys:
        _unknown_keys(data, field_names(schema), data_path, profile, report)
    typed = check_struct(data, schema, data_path, report)
    _check_data_fields(name, data, data_path, profile, report)
    if typed is not None:
        _check_items_value(data, data_path, report)


def _check_data_fields(name: str, data: dict[str, Any], path: str, profile: Profile, report: Report) -> None:
    if not profile.strict_keys:
        _unknown_keys(data, field_names(DATA_SCHEMAS[name] or ServerEvent), path, profile, report)
    for key in _RECOMMENDED.get(name, ()):
        if key not in data:
            report.warn(join(path, key), "missing_recommended", f"`{key}` is recommended for `{name}`")
    currency = data.get("currency")
    if isinstance(currency, str) and len(currency) == 3 and currency.upper() not in CURRENCY_CODES:
        report.error(join(path, "currency"), "unknown_currency", "not an ISO 4217 currency code")
    for list_key in ("items", "results"):
        items = data.get(list_key)
        if isinstance(items, list):
            _check_items(name, items, join(path, list_key), profile, report)


def _check_items(name: str, items: list[Any], path: str, profile: Profile, report: Report) -> None:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        here = join(path, i)
        _unknown_keys(item, _ITEM_KEYS, here, profile, report)
        if name in _QUANTITY_REQUIRED and "quantity" not in item:
            report.error(join(here, "quantity"), "missing_field", f"`quantity` is required on `{name}` items")
        category = item.get("item_category_id")
        if isinstance(category, str) and not category.isdigit():
            report.error(join(here, "item_category_id"), "invalid_format", "a Google product category id is numeric")
        missing = [k for k in _ITEM_RECOMMENDED if k not in item]
        if missing:
            report.warn(here, "missing_recommended", f"recommended item fields missing: {', '.join(missing)}")


def _check_items_value(data: dict[str, Any], path: str, report: Report) -> None:
    items, value = data.get("items"), data.get("value")
    if not isinstance(items, list) or not isinstance(value, int | float):
        return
    if not all(isinstance(i, dict) and "price" in i for i in items):
        return
    total = sum(float(i["price"]) * float(i.get("quantity", 1)) for i in items)
    if not math.isclose(total, float(value), rel_tol=1e-6, abs_tol=0.005):
        report.warn(
            join(path, "value"),
            "value_mismatch",
            f"value {value} differs from the sum of price x quantity ({round(total, 2)}); shipping and tax are excluded",
        )


def _check_event_time(ms: int, event_path: str, now_ms: int, report: Report) -> None:
    if ms < _SECONDS_LIKE_BELOW:
        report.warn(
            f"{event_path}.event_time", "time_in_seconds", "event_time looks like seconds; the API expects milliseconds"
        )
    elif abs(now_ms - ms) > _YEAR_MS:
        report.warn(f"{event_path}.event_time", "time_far_away", "event_time is more than a year away from now")


def _check_url(url: str, event_path: str, profile: Profile, report: Report) -> None:
    path = f"{event_path}.event_source_url"
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or not parts.scheme or not parts.netloc:
        report.error(path, "invalid_url", "event_source_url must be an absolute URL (scheme://host/...)")
        return
    if profile.origin_only_url and (parts.path not in ("", "/") or parts.query or parts.fragment):
        report.error(path, "url_not_origin", "send only scheme and host (e.g. https://example.com/), no path or query")


def _is_ip(text: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except OSError:
            continue
        return True
    return False


def _check_user_data(user: UserData, path: str, profile: Profile, report: Report) -> dict[str, str]:
    """Checks user_data; returns the fields whose stored form differs (hashes, codes)."""
    if not _is_ip(user.client_ip_address):
        report.error(join(path, "client_ip_address"), "invalid_ip", "not an IPv4 or IPv6 address")
    if not any(getattr(user, key) for key in profile.identifiers):
        report.error(path, "missing_identifier", f"send at least one identifier: {', '.join(profile.identifiers)}")
    if user.os is not None and user.os not in OS_VALUES:
        report.warn(join(path, "os"), "unknown_enum", f"`os` is one of {', '.join(sorted(OS_VALUES))}; kept as sent")
    if user.country_code is not None and user.country_code.upper() not in COUNTRY_CODES:
        report.error(join(path, "country_code"), "unknown_country", "not an ISO 3166-1 alpha-2 country code")
    if profile.numeric_user_id and user.user_id is not None and not user.user_id.isdigit():
        report.error(join(path, "user_id"), "invalid_format", "user_id must be numeric in this profile")
    normalised = _hashed_pii(user, path, report)
    if user.country_code is not None:
        normalised["country_code"] = user.country_code.upper()
    if user.zip is not None and (user.country_code or "").upper() == "US":
        normalised["zip"] = user.zip.strip()[:5]
    return normalised


def _hashed_pii(user: UserData, path: str, report: Report) -> dict[str, str]:
    hashed: dict[str, str] = {}
    if user.email is not None:
        try:
            hashed["email"] = hash_email(user.email)
        except InvalidIdentifier as exc:
            report.error(join(path, "email"), "invalid_email", str(exc))
    if user.phone is not None:
        try:
            hashed["phone"] = hash_phone(user.phone)
        except InvalidIdentifier as exc:
            report.error(join(path, "phone"), "invalid_phone", str(exc))
        else:
            if not is_sha256_hex(user.phone.strip()) and not normalise_phone(user.phone)[1]:
                report.warn(
                    join(path, "phone"), "unlikely_phone", "not a possible number for its country code; hashed anyway"
                )
    return hashed


def _check_measurement(mpd_raw: Any, path: str, profile: Profile, report: Report) -> None:
    if mpd_raw is None:
        return
    if not profile.measurement_partner_data:
        report.error(path, "unknown_field", f"`measurement_partner_data` is not allowed by the {profile.name} profile")
        return
    if not isinstance(mpd_raw, dict):
        return
    _unknown_keys(mpd_raw, _MPD_KEYS, path, profile, report)
    for key in _MPD_TIMESTAMPS:
        ts = mpd_raw.get(key)
        if isinstance(ts, int) and 0 < ts < _SECONDS_LIKE_BELOW:
            report.warn(join(path, key), "time_in_seconds", f"{key} looks like seconds; timestamps are in milliseconds")


def _new_event(
    event: ServerEvent, user: dict[str, str], raw: dict[str, Any], source: str, test_tag: str | None
) -> NewEvent:
    return NewEvent(
        api="axon",
        source=source,
        name=event.name,
        event_time_ms=event.event_time,
        dedupe_id=event.dedupe_id,
        payload=_encode(_normalised(raw, user)),
        test_tag=test_tag,
    )


def _normalised(raw: dict[str, Any], user: dict[str, str]) -> dict[str, Any]:
    """The event as sent, with PII hashed and codes in their canonical case."""
    out = dict(raw)
    if user:
        out["user_data"] = {**raw["user_data"], **user}
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("currency"), str):
        out["data"] = {**data, "currency": data["currency"].upper()}
    return out
