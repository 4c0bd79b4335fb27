"""Validation and normalisation of Axon batches: every rule of NOTES.md lives here.

``check_batch`` takes the decoded JSON body and returns the events ready to store (payload
normalised, PII hashed) or every problem found; warnings are collected either way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final, TypeGuard, TypeVar
from urllib.parse import urlsplit

import msgspec

from capigate.amounts import warn_negative, warn_zero_quantity
from capigate.axon.body import BODY_KEYS, MAX_BATCH, batch_events
from capigate.axon.personal import without_personal_unknowns
from capigate.axon.profiles import Profile
from capigate.axon.schema import (
    DATA_SCHEMAS,
    EventData,
    Item,
    MeasurementPartnerData,
    ServerEvent,
    UserData,
    field_names,
)
from capigate.axon.user_data import check_user_data
from capigate.checking import (
    Report,
    check_struct,
    did_you_mean,
    has_edge_spaces,
    is_blank_dedupe_id,
    join,
    shown_value,
)
from capigate.epoch import MAX_EPOCH_MILLIS, looks_like_seconds
from capigate.errors import Problem
from capigate.events import NewEvent
from capigate.identity import (
    contains_email,
    contains_international_phone,
    is_international_phone,
    payload_may_hold_email,
    payload_may_hold_phone,
)
from capigate.iso import CURRENCY_CODES
from capigate.matchkeys import axon_match_keys, identifiers_treated
from capigate.personal import (
    MAX_DEPTH,
    PHONE_HASHED,
    TooDeep,
    phone_dropped,
    said_of_refused,
    shown_key,
    treated_phone_id,
    url_holds_credentials,
    without_emails,
)

__all__ = [
    "DESCRIPTIVE_TEXT",
    "IDENTIFIER_TEXT",
    "MAX_BATCH",
    "PHONE_FIELDS",
    "BatchCheck",
    "check_batch",
    "check_source_url",
    "stored_dedupe_id",
    "url_holds_credentials",
    "without_phones",
]

S = TypeVar("S", bound=msgspec.Struct)

_YEAR_MS = 365 * 24 * 3600 * 1000
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
# The names whose `items` are required or recommended: an empty list tells AppLovin of no item.
_ITEMS_EXPECTED: Final = frozenset(
    {"view_item", "add_to_cart", "remove_from_cart", "view_cart", "begin_checkout", "add_payment_info", "purchase"}
)
_ITEM_RECOMMENDED: Final[tuple[str, ...]] = ("item_name", "item_variant_id", "price", "image_url", "item_category_id")
_ITEM_RECOMMENDED_SET = frozenset(_ITEM_RECOMMENDED)
_MPD_TIMESTAMPS: Final[tuple[str, ...]] = ("first_purchase_ts", "first_visit_ts", "last_purchase_ts", "last_visit_ts")


class BatchCheck:
    """The events of a body ready to store, and the report of its problems and warnings. A
    class with its own ``__init__``, not a dataclass: compiled, a dataclass's is interpreted
    Python, called on every request."""

    __slots__ = ("events", "report")

    def __init__(self, events: list[NewEvent] | None = None, report: Report | None = None) -> None:
        self.events: list[NewEvent] = [] if events is None else events
        self.report: Report = Report() if report is None else report


def check_batch(body: Any, profile: Profile, *, source: str, now_ms: int, test_tag: str | None = None) -> BatchCheck:
    result = BatchCheck()
    report = result.report
    raw_events = batch_events(body, report)
    if raw_events is None:
        return result
    if isinstance(body, dict):
        _unknown_keys(body, BODY_KEYS, profile, report, "")
    typed = _typed_events(raw_events)
    for i, raw in enumerate(raw_events):
        refused = len(report.problems)
        try:
            checked = _check_event(raw, f"events[{i}]", profile, report, now_ms, typed[i])
        except RecursionError:  # a safety net: free-form values are refused past MAX_DEPTH first
            report.error(f"events[{i}]", "too_deep", "the event nests objects or arrays too deep")
            break
        if checked is not None and len(report.problems) == refused:  # after a refused event too
            event, user, kept = checked
            path = f"events[{i}]"
            result.events.append(_new_event(event, user, kept, path, report, source, test_tag, profile, now_ms))
        elif isinstance(raw, dict):
            _email_problems(raw, f"events[{i}]", report, profile, now_ms)
    if not report.ok:
        result.events.clear()
        report.warnings = said_of_refused(report.warnings)
    return result


def _typed_events(events: list[Any]) -> Sequence[ServerEvent | None]:
    """Every event converted by one call when the whole batch converts (nearly always);
    else None for each, and each event is converted, its problems collected, on its own."""
    try:
        return msgspec.convert(events, list[ServerEvent])
    except msgspec.ValidationError:
        return [None] * len(events)


def _check_event(
    raw: Any, path: str, profile: Profile, report: Report, now_ms: int, typed: ServerEvent | None
) -> tuple[ServerEvent, dict[str, str], dict[str, Any]] | None:
    """The typed event, the normalised values of its user_data and the event as it is kept
    (personal data under unknown keys treated), or None if refused.

    ``typed`` is ``raw`` already converted, when the batch converted as a whole."""
    if not isinstance(raw, dict):
        report.error(path, "not_an_object", "each event must be a JSON object")
        return None
    hashed: set[str] = set()
    if not profile.strict_keys:  # the strict profile refuses unknown keys: nothing to keep
        start = len(report.warnings)
        try:
            raw = without_personal_unknowns(raw, path, report)
        except TooDeep as exc:
            report.error(str(exc), "too_deep", f"nests objects or arrays more than {MAX_DEPTH} levels deep")
            return None
        # A look-alike of email or phone was hashed under its own key (axon/personal.py), and said so.
        hashed = {w.path for w in report.warnings[start:] if w.code == "plain_pii_hashed"}
    _unknown_keys(raw, _EVENT_KEYS, profile, report, path, hashed=hashed)
    user_raw = raw.get("user_data")
    if isinstance(user_raw, dict):
        allowed = profile.user_fields if profile.user_fields is not None else _USER_KEYS
        _unknown_keys(user_raw, allowed, profile, report, path, "user_data", hashed=hashed)
    if typed is None:  # a fractional time never converts: read as whole milliseconds here
        raw = _whole_millis(raw, path, report)
    seen = len(report.problems)
    event = typed if typed is not None else check_struct(raw, ServerEvent, path, report)
    if event is None:
        _say_time_ranges(raw, path, report, seen)
    _check_event_fields(raw, path, profile, report, now_ms)
    user = event.user_data if event is not None else _lenient_user(user_raw)
    normalised = check_user_data(user, path, profile, report, raw.get("name")) if user is not None else {}
    if "measurement_partner_data" in raw:
        _check_measurement(raw["measurement_partner_data"], path, profile, report)
    if is_blank_dedupe_id(raw.get("dedupe_id")):
        report.warn(f"{path}.dedupe_id", "blank_dedupe_id", BLANK_DEDUPE_ID)
        raw = {k: v for k, v in raw.items() if k != "dedupe_id"}
        if event is not None:
            event.dedupe_id = None
    elif raw.get("dedupe_id") is None and profile.dedupe_id_expected:
        report.warn(f"{path}.dedupe_id", "missing_dedupe_id", "without a dedupe_id this event cannot be deduplicated")
    elif holds_nul(raw.get("dedupe_id")):
        report.error(f"{path}.dedupe_id", "invalid_dedupe_id", NUL_DEDUPE_ID)
    elif has_edge_spaces(sent := raw.get("dedupe_id")) and _guarded_dedupe_id(sent) == sent:
        # not one hashed as an email address or a phone number is: trimmed first (a trial)
        report.warn(f"{path}.dedupe_id", "dedupe_id_spaces", DEDUPE_ID_SPACES)
    name = raw.get("name")
    if raw.get("data") == {} and isinstance(name, str) and name in profile.null_data_events:
        raw = {**raw, "data": None}  # as stape's tag sends it; kept and relayed as documented
    return (event, normalised, raw) if event is not None else None


BLANK_DEDUPE_ID: Final = (
    "an empty dedupe_id deduplicates nothing: the event is stored and relayed without one (had it been kept, "
    "every later event with the same blank id would have been dropped as a duplicate); send the event's own id"
)


DEDUPE_ID_SPACES: Final = (
    "dedupe_id has white space before or after it: it is kept and matched as sent (as AppLovin matches it), so "
    "a resend without the spaces is another id and is not deduplicated; trim the id where it is made"
)
NUL_DEDUPE_ID: Final = (
    "dedupe_id holds a NUL character (U+0000), which no id should: PostgreSQL cannot store one, and two ids "
    "differing only there would be taken for one; send the id without it"
)


def holds_nul(value: object) -> bool:
    """A string holding NUL (U+0000): refused as a dedupe_id, the same on either store."""
    return isinstance(value, str) and "\x00" in value


_STAND_INS: Final = {"client_ip_address": "192.0.2.1", "client_user_agent": "-", "esi": "web"}


def _lenient_user(raw: Any) -> UserData | None:
    """The fields of a user_data that the schema refused which are valid on their own, so
    that the identifier rules still run on them and one answer holds every problem. A required
    field that is missing or refused (already reported) is stood in for by a valid value
    that no rule reports."""
    if not isinstance(raw, dict):
        return None
    kept = {k: v for k, v in raw.items() if k in _USER_KEYS and _quiet({**_STAND_INS, k: v}, UserData) is not None}
    return _quiet({**_STAND_INS, **kept}, UserData)


def _check_event_fields(raw: dict[str, Any], path: str, profile: Profile, report: Report, now_ms: int) -> None:
    """The rules on name, data, event_time and event_source_url that the Structs cannot express."""
    name, url, ms = raw.get("name"), raw.get("event_source_url"), raw.get("event_time")
    if isinstance(name, str) and name:
        if "data" in raw:
            _check_name_and_data(name, raw["data"], path, profile, report)
        else:  # data's own problem is reported with the schema's; the name's is reported here
            _check_name(name, path, profile, report)
    if _is_epoch_millis(ms):
        _check_event_time(ms, path, now_ms, report)
    if isinstance(url, str) and url:
        user = raw.get("user_data")
        esi = user.get("esi") if isinstance(user, dict) else None
        check_source_url(url, esi, f"{path}.event_source_url", profile, report)


def _quiet(raw: Any, kind: type[S]) -> S | None:
    """``raw`` as ``kind`` if it converts, else None: its problems are reported elsewhere."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError:
        return None


def _unknown_keys(
    obj: dict[str, Any],
    known: frozenset[str],
    profile: Profile,
    report: Report,
    *at: str,
    hashed: AbstractSet[str] = frozenset(),
) -> None:
    """Reports each key of ``obj`` that is not ``known``, but for the paths of ``hashed`` (the
    look-alikes of email and phone hashed under their own keys, and said so); ``at`` is the path
    of ``obj`` in parts, joined only when there is something to report. (``hashed`` was read of
    every warning said before, for each object with an unknown key: an unknown key in each of
    16,000 items took 15 s.) A "did you mean" is looked for only while the answer lists these
    warnings (Report.lists): 7 µs a key, half a second of 70,000 unknown keys."""
    if known.issuperset(obj):
        return
    path = functools.reduce(join, at)
    for key in [k for k in obj if k not in known]:  # in the order sent: a set's order varies by process
        shown = shown_key(key)  # a key beside `events` is never stored, but may hold an address
        here = join(path, shown)
        if here in hashed and not profile.strict_keys:
            continue
        hint = did_you_mean(key, known) if report.lists("unknown_field") else ""
        if profile.strict_keys:
            report.error(here, "unknown_field", f"`{shown}` is not allowed by the {profile.name} profile{hint}")
        else:
            report.warn(here, "unknown_field", f"`{shown}` is not a field of the API; kept as sent{hint}")


def _check_name(name: str, path: str, profile: Profile, report: Report) -> bool:
    if name in profile.events:
        return True
    if is_international_phone(name):  # refused, as AppsFlyer's eventName: a name cannot be hashed
        report.error(
            f"{path}.name", "plain_pii", f"this field holds a phone number, which is never stored ({_SEND_HASHED})"
        )
        return False
    report.error(
        f"{path}.name",
        "unknown_event",
        f"{shown_value(name)} is not an event of the {profile.name} profile{did_you_mean(name, profile.events)};"
        f" expected one of {', '.join(sorted(profile.events))}",
    )
    return False


def _check_name_and_data(name: str, data: Any, path: str, profile: Profile, report: Report) -> None:
    if not _check_name(name, path, profile, report):
        return
    if name in profile.null_data_events:
        if data == {}:
            report.warn(
                f"{path}.data",
                "empty_data_for_null_event",
                f'`{name}` events send `"data": null`; an empty object is read as null, and relayed as null',
            )
        elif data is not None:
            report.error(f"{path}.data", "data_must_be_null", f'`{name}` events send `"data": null`')
        return
    if data is None:
        if name != "page_view":
            report.error(f"{path}.data", "missing_data", f"`{name}` events need a data object")
        return
    schema = DATA_SCHEMAS[name]
    assert schema is not None
    if not isinstance(data, dict):
        report.error(f"{path}.data", "wrong_type", "`data` must be a JSON object or null")
        return
    _check_data(name, schema, data, f"{path}.data", profile, report)


def _check_data(
    name: str, schema: type[EventData], data: dict[str, Any], path: str, profile: Profile, report: Report
) -> None:
    _unknown_keys(data, field_names(schema), profile, report, path)
    typed = check_struct(data, schema, path, report)
    for key in _RECOMMENDED.get(name, ()):
        if key not in data:
            report.warn(f"{path}.{key}", "missing_recommended", f"`{key}` is recommended for `{name}`")
    currency = data.get("currency")
    if isinstance(currency, str) and len(currency) == 3:
        if currency.upper() not in CURRENCY_CODES:
            report.error(f"{path}.currency", "unknown_currency", "not an ISO 4217 currency code")
        elif currency != currency.upper():
            warn_currency_case(currency, f"{path}.currency", report)
    for list_key in ("items", "results"):
        items = data.get(list_key)
        if isinstance(items, list):
            _check_items(name, items, f"{path}.{list_key}", profile, report)
    if typed is not None:
        warn_negative_value(getattr(typed, "value", None), path, report)
        _check_items_value(data, path, report)


def warn_negative_value(value: Any, path: str, report: Report) -> None:
    if value is not None and value < 0:
        warn_negative(f"{path}.value", "value", report)


def warn_currency_case(currency: str, path: str, report: Report) -> None:
    """AppsFlyer's rule too: a lower-case code is read upper-cased, and said so."""
    report.warn(path, "currency_not_upper_case", f"currency codes are upper-case; it was read as {currency.upper()}")


def _check_items(name: str, items: list[Any], path: str, profile: Profile, report: Report) -> None:
    if not items and path.endswith(".items"):
        warn_empty_items(name, path, report)
    quantity_required = name in _QUANTITY_REQUIRED
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        here = f"{path}[{i}]"
        _unknown_keys(item, _ITEM_KEYS, profile, report, here)
        if quantity_required and "quantity" not in item:
            report.error(f"{here}.quantity", "missing_field", f"`quantity` is required on `{name}` items")
        category = item.get("item_category_id")
        if isinstance(category, str) and not category.isdigit():
            report.error(f"{here}.item_category_id", "invalid_format", "a Google product category id is numeric")
        missing = _ITEM_RECOMMENDED_SET.difference(item)
        if missing:
            report.warn(here, "missing_recommended", _missing_item_fields(missing))
        warn_item_amounts(item.get("price"), item.get("quantity"), here, report)


def warn_empty_items(name: str, path: str, report: Report) -> None:
    """An empty `items` of a name that expects them: kept as sent (the API's schema sets no
    minimum), and said, as AppLovin is told of no item; no value_mismatch is said beside it."""
    if name in _ITEMS_EXPECTED:
        report.warn(path, "empty_items", f"`items` is empty: `{name}` events tell AppLovin which items they were about")


def warn_item_amounts(price: Any, quantity: Any, path: str, report: Report) -> None:
    """A negative price and a quantity of 0 are kept, and said (a value the schema refuses is not)."""
    if type(price) in (int, float) and price < 0:
        warn_negative(f"{path}.price", "price", report)
    if type(quantity) is int and quantity == 0:
        warn_zero_quantity(f"{path}.quantity", "quantity", report)


def _missing_item_message(missing: frozenset[str]) -> str:
    return f"recommended item fields missing: {', '.join(k for k in _ITEM_RECOMMENDED if k in missing)}"


# Not a decorator: typed.py reads the plain function at import, which mypy (and so mypyc,
# capigate/native.py) cannot type through a decorator inside an import cycle.
_missing_item_fields = functools.cache(_missing_item_message)


def _check_items_value(data: dict[str, Any], path: str, report: Report) -> None:
    items, value = data.get("items"), data.get("value")
    if not isinstance(items, list) or not items or not isinstance(value, (int, float)):
        return
    for item in items:
        # Only a sum of numbers can disagree with value; null price or quantity means unknown.
        if not isinstance(item, dict) or not isinstance(item.get("price"), (int, float)):
            return
        if not isinstance(item.get("quantity", 1), (int, float)):
            return
    total = sum([float(i["price"]) * float(i.get("quantity", 1)) for i in items])
    if not math.isclose(total, float(value), rel_tol=1e-6, abs_tol=0.005):
        report.warn(
            f"{path}.value",
            "value_mismatch",
            f"value {value} differs from the sum of price x quantity ({round(total, 2)}); shipping and tax are excluded",
        )


def _is_epoch_millis(value: Any) -> TypeGuard[int]:
    """A time the schema accepts: only such a time gets a warning about its value, so that a
    refused one (`true` is an int to Python) is not also told it looks like seconds."""
    return type(value) is int and 0 <= value <= MAX_EPOCH_MILLIS


def _whole_millis(raw: dict[str, Any], path: str, report: Report) -> dict[str, Any]:
    """``raw`` with its times (event_time, the measurement timestamps) sent as JSON numbers with
    a fraction (AppLovin documents numbers) read, kept and relayed as their whole milliseconds;
    a real fraction is warned about."""
    raw = _whole_time(raw, "event_time", path, report)
    mpd = raw.get("measurement_partner_data")
    if isinstance(mpd, dict):
        whole = mpd
        for key in _MPD_TIMESTAMPS:
            whole = _whole_time(whole, key, f"{path}.measurement_partner_data", report)
        if whole is not mpd:
            raw = {**raw, "measurement_partner_data": whole}
    return raw


def _whole_time(obj: dict[str, Any], key: str, path: str, report: Report) -> dict[str, Any]:
    """``obj`` with its time ``key`` floored if it is a float. A value out of range stays out
    of range (floored, not truncated toward 0) for the schema."""
    ms = obj.get(key)
    if type(ms) is not float or not math.isfinite(ms):
        return obj
    whole = math.floor(ms)
    if whole != ms and 0 <= whole <= MAX_EPOCH_MILLIS:
        report.warn(
            f"{path}.{key}",
            "fractional_time",
            f"{key} is whole milliseconds: {ms!r} was read and is stored as {whole}",
        )
    return {**obj, key: whole}


_TIME_RANGE: Final = (
    f"epoch milliseconds from 0 (1970-01-01T00:00:00Z) to {MAX_EPOCH_MILLIS} (9999-12-31T23:59:59.999Z)"
)


def _say_time_ranges(raw: dict[str, Any], path: str, report: Report, seen: int) -> None:
    """The schema's out_of_range or wrong_type of a time (event_time, a measurement timestamp),
    among the problems from index ``seen`` on, said as the time rules say theirs: msgspec's
    ``Expected integer >= 0`` told a -0.5 that its fraction was the mistake, and ``Expected
    integer, got string`` told "1733000000000" nothing of quotes, while a fraction is read."""
    times = {f"{path}.event_time": ("event_time", raw.get("event_time"))}
    mpd = raw.get("measurement_partner_data")
    if isinstance(mpd, dict):
        times |= {f"{path}.measurement_partner_data.{key}": (key, mpd.get(key)) for key in _MPD_TIMESTAMPS}
    problems = report.problems
    for i in range(seen, len(problems)):
        here, code = problems[i].path, problems[i].code
        key, ms = times.get(here, ("", None))
        if code == "out_of_range" and isinstance(ms, int | float):  # not bool: that is wrong_type
            end = "a negative time is before 1970" if ms < 0 else "a larger time is past the year 9999"
            problems[i] = Problem(here, code, f"{key} is {_TIME_RANGE}: {end}")
        elif code == "wrong_type" and key:
            problems[i] = Problem(here, code, _wrong_time_type(key, ms))


def _wrong_time_type(key: str, sent: Any) -> str:
    expected = f"{key} is a JSON number of epoch milliseconds (1733000000000 is 2024-11-30T20:53:20Z)"
    if isinstance(sent, str):
        try:
            float(sent)
        except ValueError:
            return f"{expected}, not a string"
        return f"{expected}: send it without the quotes"
    return f"{expected}, not {_JSON_KINDS.get(type(sent), 'this')}"


_JSON_KINDS: Final[dict[type, str]] = {bool: "a boolean", list: "an array", dict: "an object", type(None): "null"}


def _check_event_time(ms: int, path: str, now_ms: int, report: Report) -> None:
    if looks_like_seconds(ms):
        report.warn(
            f"{path}.event_time", "time_in_seconds", "event_time looks like seconds; the API expects milliseconds"
        )
    elif abs(now_ms - ms) > _YEAR_MS:
        report.warn(f"{path}.event_time", "time_far_away", "event_time is more than a year away from now")


def check_source_url(url: str, esi: Any, path: str, profile: Profile, report: Report) -> None:
    """An absolute URL; for app events (``esi: "app"``) an app screen such as
    ``MainActivity.ProductScreen`` too, with a warning (GA4-based taggers send screen_class +
    "." + screen_name). The restricted profile keeps its scheme-and-host-only rule.

    A phone number in international form anywhere in it (``?phone=%2B1…``, ``/tel:+1…``) is
    ``plain_pii``, as an email address there is (``without_emails``, ``_REQUIRED_TEXT``): the
    field is required, so the event cannot go without it, and a URL cut by the gateway would be
    one the client never sent. So are credentials before its host (``https://user:pw@host/``),
    ``url_credentials``: a password is never stored, and the URL is the client's to mend.
    typed.py reaches this through its cache of clean URLs."""
    if contains_international_phone(url):  # told at once for the usual URL: no "+", no "%2"
        report.error(path, "plain_pii", f"this field holds a phone number, which is never stored ({_SEND_HASHED})")
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and "@" in parts.netloc:
        report.error(path, "url_credentials", URL_CREDENTIALS)
        return
    if parts is None or not parts.scheme or not parts.netloc:
        if esi == "app" and not profile.origin_only_url:
            report.warn(
                path,
                "app_screen_url",
                "for an app event, event_source_url is not a URL: it is kept as sent, as the app screen",
            )
            return
        report.error(path, "invalid_url", "event_source_url must be an absolute URL (scheme://host/...)")
        return
    if profile.origin_only_url and (parts.path not in ("", "/") or parts.query or parts.fragment):
        report.error(path, "url_not_origin", "send only scheme and host (e.g. https://example.com/), no path or query")


URL_CREDENTIALS: Final = (
    "event_source_url holds credentials (a user name or password before the host: scheme://user:password@host), "
    "which are never stored: send the page's URL without them"
)


def _check_measurement(mpd_raw: Any, path: str, profile: Profile, report: Report) -> None:
    if mpd_raw is None:
        return
    if not profile.measurement_partner_data:
        report.error(
            f"{path}.measurement_partner_data",
            "unknown_field",
            f"`measurement_partner_data` is not allowed by the {profile.name} profile",
        )
        return
    if not isinstance(mpd_raw, dict):
        return
    _unknown_keys(mpd_raw, _MPD_KEYS, profile, report, path, "measurement_partner_data")
    for key in _MPD_TIMESTAMPS:
        ts = mpd_raw.get(key)
        if _is_epoch_millis(ts) and looks_like_seconds(ts):
            report.warn(
                f"{path}.measurement_partner_data.{key}",
                "time_in_seconds",
                f"{key} looks like seconds; timestamps are in milliseconds",
            )


_REQUIRED_TEXT: Final = frozenset(
    {
        "name",
        "event_source_url",
        "user_data.client_ip_address",
        "user_data.client_user_agent",
        "user_data.esi",
        "data.transaction_id",  # purchase's, required there: dropped, the purchase would lack it
    }
)
# An event's identifiers that an exact email address is hashed in, as email is (without_emails),
# and a phone number in international form, as phone is; capigate/kept.py treats a refused
# body's the same way.
IDENTIFIER_TEXT: Final = frozenset({"dedupe_id", "user_data.user_id", "user_data.client_id", "data.user_id"})
_SEND_HASHED: Final = "send email and phone in user_data.email and user_data.phone, which are hashed"
# The fields of an event that a phone number in international form (identity.international_phone)
# is treated in as an email address is (without_emails): hashed, as phone is, in the identifiers
# of IDENTIFIER_TEXT (True), dropped from zip (False); by treated_phone_id. The parent object of
# each ("" for the event itself). A name holding one is refused (_check_name): it cannot be
# hashed. Every other string of the event, ids (sid, aleid, ifa, an item's item_id), codes and
# free text (data.search_term, an item's name) alike, is read for one by the last guard,
# without_emails(..., phones=True), which also drops a number inside an identifier's text:
# dropped where an email address is, refused in a required field (data.transaction_id) and
# where the event cannot go without it (an item's item_id, the only identifier: _needed).
# capigate/kept.py treats a refused body's the same way, by the same keys and treated_phone_id.
PHONE_FIELDS: Final = (
    ("", "dedupe_id", True),
    ("user_data", "user_id", True),
    ("user_data", "client_id", True),
    ("user_data", "zip", False),
    ("data", "user_id", True),
)


def _new_event(
    event: ServerEvent,
    user: dict[str, str],
    raw: dict[str, Any],
    path: str,
    report: Report,
    source: str,
    test_tag: str | None,
    profile: Profile,
    now_ms: int,
) -> NewEvent:
    phoneless = without_phones(raw, path, report)
    kept = _normalised(phoneless, user)
    payload = _encode(kept)
    dedupe_id = kept.get("dedupe_id")  # a phone number hashed there, maybe
    treated = phoneless is not raw
    # Rare: only then is the event walked for an email address or a phone number.
    if payload_may_hold_email(payload) or payload_may_hold_phone(payload):
        kept = _without_personal_text(kept, path, report)
        payload = _encode(kept)
        dedupe_id = kept.get("dedupe_id")
        treated = True
    if treated:  # rare: a value was hashed or dropped; dropped, the event may now break a rule
        start = _own(report.warnings, path)
        ours = report.warnings[start:]
        dropped = [w for w in ours if w.code == "plain_pii_dropped" and w.path.startswith(f"{path}.")]
        needed = _needed(kept, dropped, path, profile, now_ms, set())
        if needed:
            report.warnings[start:] = [w for w in ours if w not in needed]
            report.problems += needed.values()
    data = raw.get("data")
    return NewEvent(
        api="axon",
        source=source,
        name=event.name,
        event_time_ms=event.event_time,
        dedupe_id=dedupe_id,
        payload=payload,
        test_tag=test_tag,
        match_keys=_match_keys(event, path, report),
        transaction_id=data.get("transaction_id") if isinstance(data, dict) else None,
    )


def _own(said: list[Problem], path: str) -> int:
    """Where the problems or warnings of the event at ``path`` begin in ``said``: they are its
    last ones, as check_batch checks one event after another. Read alone, not all those said
    before them: read for each event, those were a square of what a batch may hold."""
    ours = f"{path}."
    start = len(said)
    while start and (said[start - 1].path.startswith(ours) or said[start - 1].path == path):
        start -= 1
    return start


_TREATED: Final = {"plain_pii_hashed": True, "plain_pii_dropped": False}


def _match_keys(event: ServerEvent, path: str, report: Report) -> int:
    """The event's match keys as sent, but for an identifier hashed or dropped for holding an
    email address or a phone number: said by this event's warnings, the last in ``report``."""
    mask = axon_match_keys(event.user_data, event.dedupe_id is not None)
    user = event.user_data
    if user is None or (user.user_id is None and user.client_id is None):
        return mask
    hashed: list[str] = []
    dropped: list[str] = []
    ours, identifiers = f"{path}.", f"{path}.user_data."
    for warning in reversed(report.warnings):
        if not warning.path.startswith(ours):
            break
        key = warning.path[len(identifiers) :] if warning.path.startswith(identifiers) else ""
        if key in ("user_id", "client_id") and warning.code in _TREATED:
            (hashed if _TREATED[warning.code] else dropped).append(key)
    return identifiers_treated(mask, hashed, dropped) if hashed or dropped else mask


def without_phones(event: dict[str, Any], path: str, report: Report) -> dict[str, Any]:
    """``event`` (an event object as sent, at ``path``) with a phone number in international
    form in one of ``PHONE_FIELDS`` hashed as ``user_data.phone`` is, or dropped (from zip, or
    when it cannot be hashed), each said at its path; ``event`` itself when none holds one,
    the usual event, told by each field's first characters (typed.py hands such an event here)."""
    out = event
    for parent, key, hashed in PHONE_FIELDS:
        fields = out.get(parent) if parent else out
        if not isinstance(fields, dict):
            continue
        value = fields.get(key)
        if not isinstance(value, str):
            continue
        digest = treated_phone_id(value, hashed)
        if digest is value:  # no phone number: the usual value
            continue
        treated = dict(fields)
        at = f"{path}.{parent}.{key}" if parent else f"{path}.{key}"
        if digest is not None:
            treated[key] = digest
            report.warn(at, "plain_pii_hashed", PHONE_HASHED)
        else:
            del treated[key]
            report.warn(at, "plain_pii_dropped", phone_dropped(_SEND_HASHED))
        out = {**out, parent: treated} if parent else treated
    return out


def _without_personal_text(event: dict[str, Any], path: str, report: Report) -> dict[str, Any]:
    """The last guard on an event's defined fields: no string holding an email address or a
    phone number in international form (capigate.personal.without_emails)."""
    kept: dict[str, Any] = without_emails(
        event,
        path,
        report,
        _SEND_HASHED,
        required=_REQUIRED_TEXT,
        hashed=IDENTIFIER_TEXT,
        phones=True,
        plus_only=DESCRIPTIVE_TEXT,
    )
    return kept


_ITEM_TEXT: Final = (
    "item_name", "image_url", "affiliation", "item_brand", "item_category", "item_category2", "item_category3",
    "item_category4", "item_category5", "item_category_id",
)  # fmt: skip
# The fields of an event that describe (an item's name, brand, categories, image; the user
# agent, the os, sign_up's method), where only a "+" marks a phone number: "00" and digits
# there is a product's or a model's code, not read as one (identity.holds_international_phone's
# zeros). In an id (sid, ifa, transaction_id, an item's item_id) and in search_term, "00" and a
# valid number is one. typed.py tells a "00" form by the fields outside these alone: reading
# an item's every field cost 1 % of the rules.
DESCRIPTIVE_TEXT: Final = frozenset(
    {"user_data.client_user_agent", "user_data.os", "data.method"}
    | {f"data.{items}[].{key}" for items in ("items", "results") for key in _ITEM_TEXT}
)


def stored_dedupe_id(value: str) -> str:
    """``value``, a dedupe_id as a client sent it, as the gateway stores and journals it: through
    the guards ``_new_event`` puts an event through (an email address hashed as email is, and
    whatever ``without_phones`` treats), so that a lookup by the id as sent finds it (a trial's
    ``--dedupe-id jane@example.com`` found nothing); ``value`` itself when they keep it as sent,
    or drop it (then no event holds it)."""
    found = _guarded_dedupe_id(value)
    return found if isinstance(found, str) else value


def _guarded_dedupe_id(value: str) -> object:
    """``value`` through the guards of ``stored_dedupe_id``: itself, hashed, or None (dropped)."""
    report = Report()
    kept = without_emails(
        without_phones({"dedupe_id": value}, "", report), "", report, _SEND_HASHED, hashed=IDENTIFIER_TEXT, phones=True
    )
    return kept.get("dedupe_id")


_AXON_HASHED: Final = frozenset({"email", "phone"})  # user_data's: hashed, never walked for an address


def _needed(
    kept: dict[str, Any],
    dropped: list[Problem],
    path: str,
    profile: Profile,
    now_ms: int,
    known: set[tuple[str, str]],
) -> dict[Problem, Problem]:
    """Of the ``dropped`` warnings (an email address or a phone number dropped from the event at
    ``path``), those the event as ``kept`` cannot go without, each with the ``plain_pii`` problem
    said in its place: the event must pass the gateway's own rules after its personal data is
    treated. A re-trial: an item's item_id, or user_data's only identifier (aleid), holding a
    phone number was dropped and the event acknowledged (200), then refused upstream and
    dead-lettered, where the same event sent without it was refused (400). The rules run again
    on ``kept`` (rare: only when something was dropped); a problem they find that is not one of
    ``known`` (path, code) is the drop's when it is at the dropped value's path (a required
    field, an item made null) or is a missing identifier and the value was an identifier."""
    if not dropped:
        return {}
    seen = Report()
    _check_event(kept, path, profile, seen, now_ms, None)
    new = [p for p in seen.problems if (p.path, p.code) not in known]
    if not new:
        return {}
    identifiers = {f"{path}.user_data.{key}" for key in profile.identifiers}
    needed: dict[Problem, Problem] = {}
    for warning in dropped:
        for problem in new:
            if warning.path == problem.path or (problem.code == "missing_identifier" and warning.path in identifiers):
                # what it held, as the warning's message says it (personal.py's)
                held = "an email address" if "email address" in warning.message else "a phone number"
                needed[warning] = Problem(
                    warning.path,
                    "plain_pii",
                    f"this field holds {held}, which is never stored, and the event cannot go without it "
                    f"(dropped, it would be refused: {problem.code}); {_SEND_HASHED}",
                )
                break
    return needed


def _email_problems(raw: dict[str, Any], path: str, report: Report, profile: Profile, now_ms: int) -> None:
    """A refused event's email addresses and phone numbers in international form in required
    fields (``plain_pii``), said beside its other problems: ``_new_event``'s guard sees only
    the events that pass, so a client mending
    the others learnt of these at its next try. What the guard would drop is said as it is for
    an accepted event (``plain_pii_dropped``), in place of what a rule said of the value at its
    path (an os "kept as sent"): the kept body (capigate/kept.py) drops it too. What it would
    hash is not said, nor a field's second problem (an esi holding an address is not one of its
    values already). user_data's email and phone are not walked: ingest hashes them before its
    guard, and so does the kept body, or they are refused at their path (a trial: a correct
    email of a refused event was said dropped); nor are its look-alikes the rules hashed."""
    try:
        encoded = _encode(raw)
    except RecursionError:  # refused as too deep already
        return
    if not payload_may_hold_email(encoded) and not payload_may_hold_phone(encoded):
        return
    user = raw.get("user_data")
    hashed: dict[str, Any] | None = None
    start = _own(report.warnings, path)
    if isinstance(user, dict):
        # user_data's look-alikes of email and phone (em, ph, email_address, ...) that the rules
        # hashed (axon/personal.py) and said so, as kept.py hashes them: not walked either (a
        # re-trial: they were said dropped, a list's items too, beside plain_pii_hashed).
        under = f"{path}.user_data."
        looks = {
            w.path[len(under) :]
            for w in report.warnings[start:]
            if w.code == "plain_pii_hashed" and w.path.startswith(under)
        }
        if looks or "email" in user or "phone" in user:
            hashed = {k: v for k, v in user.items() if k in _AXON_HASHED or k in looks}
            raw = {**raw, "user_data": {k: v for k, v in user.items() if k not in hashed}}
    seen = Report()
    kept = _without_personal_text(raw, path, seen)
    if hashed is not None:  # the rules read them again as ingest would: hashed, not dropped
        kept = {**kept, "user_data": {**kept.get("user_data", {}), **hashed}}
    candidates = [w for w in seen.warnings if w.code == "plain_pii_dropped"]
    first = _own(report.problems, path)  # a slice bound is a value: mypyc may evaluate it twice (native.py)
    ours = report.problems[first:]
    needed = _needed(kept, candidates, path, profile, now_ms, {(p.path, p.code) for p in ours})
    said = {p.path for p in ours}
    report.problems += [p for p in seen.problems if p.path not in said]
    report.problems += [p for p in needed.values() if p.path not in said]
    said |= {p.path for p in needed.values()}
    # A path holding an address or a phone number (a key that is one, in a refused shape) is
    # not said: the journal keeps answers' paths as they are (a fuzz test found one there).
    dropped = [
        w
        for w in seen.warnings
        if w.code == "plain_pii_dropped"
        and w.path not in said
        and not contains_email(w.path)
        and not contains_international_phone(w.path)
    ]
    # A value refused here was said dropped by the unknown-key walk when the event's name is no
    # event's (a trial: a mistyped purchase's transaction_id was both): refused, not dropped.
    refused = {p.path for p in report.problems[first:] if p.code == "plain_pii"}
    at = {w.path for w in dropped}
    if refused or at:
        report.warnings[start:] = [
            w
            for w in report.warnings[start:]
            if w.path not in at and not (w.code == "plain_pii_dropped" and w.path in refused)
        ] + dropped


def _normalised(raw: dict[str, Any], user: dict[str, str]) -> dict[str, Any]:
    """The event as sent, with PII hashed and codes in their canonical case."""
    out = dict(raw)
    if user:
        out["user_data"] = raw["user_data"] | user
    data = raw.get("data")
    if isinstance(data, dict):
        currency = data.get("currency")
        if isinstance(currency, str) and currency.upper() != currency:
            out["data"] = data | {"currency": currency.upper()}
    return out
