"""The rules past the schema on each field of an AppsFlyer in-app event, shared by the
typed and the field-by-field paths of ``rules.py``: each takes the field's key, its value and
the check's ``Context``, reports at the key's path, and returns the value to keep (``DROP``
to leave the field out). The event's own fields (name, value, time, currency, revenue) are
checked here; the fields that identify a device or a person in ``identifiers.py``."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, Final

import msgspec

from capigate.amounts import warn_negative, warn_zero_quantity
from capigate.appsflyer.context import DROP, Context, Rule, suggest
from capigate.appsflyer.identifiers import IDENTIFIER_RULES, PLAIN_HASHERS, SEND_HASHED
from capigate.appsflyer.schema import (
    CURRENCIES,
    RESERVED_EVENT_NAMES,
    RESERVED_EVENT_VALUE_KEYS,
    WITHDRAWN_CURRENCIES,
    format_event_time,
    parse_event_time,
)
from capigate.checking import TOO_LARGE_NUMBER, join, shown_value
from capigate.duplicates import may_repeat, repeated_keys
from capigate.identity import is_international_phone
from capigate.iso import COUNTRY_CODES
from capigate.logs import control_characters
from capigate.personal import MAX_DEPTH, TooDeep, without_personal
from capigate.unreadable import lone_surrogate, unreadable

__all__ = [
    "DROP",
    "FUTURE_SKEW_MS",
    "PLAIN_HASHERS",
    "RESTAMPED_FIELD",
    "RULES",
    "SEND_HASHED",
    "Context",
    "check_event_value",
    "region_of",
    "suggest",
]

# An eventTime further ahead of the arrival time than this is warned about.
FUTURE_SKEW_MS: Final = 5 * 60 * 1000
# Added to the payload, with the arrival time, when a late event is re-stamped.
RESTAMPED_FIELD: Final = "eventTime_restamped"

_DAY_MS: Final = 86_400_000
_LATE_CUTOFF_MS: Final = _DAY_MS + 2 * 3_600_000  # 02:00 UTC the day after the event's day

_OBJECT_DECODER: Final = msgspec.json.Decoder(dict[str, Any])
_ENCODER: Final = msgspec.json.Encoder()

_NUMERIC = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_INTEGER = re.compile(r"-?\d+")


def _event_name(key: str, value: str, ctx: Context) -> str:
    if not value.strip():
        ctx.report.error(key, "blank_event_name", "eventName must not be blank")
    elif is_international_phone(value):  # refused as an email address there is: a name cannot be dropped
        ctx.report.error(key, "plain_pii", f"this field holds a phone number, which is never stored ({SEND_HASHED})")
    elif controls := control_characters(value):  # Axon's name is one of its profile's: refused already
        ctx.report.error(
            key,
            "control_character",
            f"eventName holds control characters ({', '.join(controls)}), which no event name should: a NUL "
            "cannot be stored on PostgreSQL, a line break or a bidirectional control (\\u202e reverses what "
            "follows) changes how the name reads wherever it is shown, and an invisible one (\\u200b, a "
            "zero-width space) makes it read as another name; send the name without them",
        )
    elif value[:3].lower() == "af_" and value not in RESERVED_EVENT_NAMES:
        ctx.report.warn(
            key,
            "unknown_event_name",
            f"{shown_value(value)} is not a predefined AppsFlyer event; custom event names should not "
            f"start with af_{suggest(value, RESERVED_EVENT_NAMES)}",
        )
    return value


def _stringified(key: str, value: str | dict[str, Any], ctx: Context) -> dict[str, Any] | None:
    """The object a stringified-JSON field holds ({} for ""), or None after a problem."""
    if isinstance(value, dict):
        code = "event_value_not_stringified" if key == "eventValue" else f"{key}_not_stringified"
        ctx.report.warn(
            key,
            code,
            f"{key} is sent as a JSON object; AppsFlyer documents it as a stringified JSON "
            "object (a string), which is what other clients send",
        )
        return value
    if not value.strip():  # "" is documented; the dev hub's reference says " "
        return {}
    try:
        parsed = _OBJECT_DECODER.decode(value)
    except msgspec.ValidationError as wrong:
        if str(wrong).startswith("Number out of range"):  # an object all the same: not "not_an_object"
            too_large = unreadable(value.encode(), wrong)
            ctx.report.error(join(key, too_large.path) if too_large.path else key, too_large.code, too_large.message)
        else:
            ctx.report.error(key, "not_an_object", f'{key} must be a stringified JSON object, or "" for none')
    except msgspec.DecodeError as exc:
        why = str(exc)
        if why == "Input data was truncated":  # a lone surrogate escape is said so, as in a body
            why = lone_surrogate(value.encode("utf-8", "surrogatepass")) or why
        ctx.report.error(key, "malformed_json", f"{key} is not valid stringified JSON ({why})")
    else:
        # A key given twice inside the string: the last value kept, as in the body (duplicates.py).
        if may_repeat(value.encode(), _ENCODER.encode(parsed)):
            repeated_keys(value, key, ctx.report)
        return parsed
    return None


def check_event_value(key: str, value: str | dict[str, Any], ctx: Context) -> Any:
    parsed = _stringified(key, value, ctx)
    if parsed is None:
        return value
    fixed: dict[str, Any] = {}
    for name, item in parsed.items():
        if name[:3].lower() != "af_":
            continue
        rule = _EVENT_VALUERULES.get(name)
        if rule is not None:
            new = rule(f"{key}.{name}", item, ctx)
            if new is not item:
                fixed[name] = new
        elif name not in RESERVED_EVENT_VALUE_KEYS:
            ctx.report.warn(
                f"{key}.{name}",
                "unknown_event_value_key",
                f"`{name}` is not a predefined AppsFlyer parameter; custom parameters should "
                f"not start with af_{suggest(name, RESERVED_EVENT_VALUE_KEYS)}",
            )
    parsed.update(fixed)
    # The rules above saw every parameter; what is stored, relayed and deduplicated on is
    # what is left once personal data is dropped.
    kept: dict[str, Any] = _without_personal(parsed, key, ctx)
    ctx.event_value = kept
    return kept


def region_of(event_value: dict[str, Any] | None) -> str | None:
    country = event_value.get("af_country") if event_value is not None else None
    if isinstance(country, str) and country.upper() in COUNTRY_CODES:
        return country.upper()
    return None


def _is_number(value: Any) -> bool:
    if isinstance(value, str):
        return _NUMERIC.fullmatch(value) is not None
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    if isinstance(value, str):
        return _INTEGER.fullmatch(value) is not None
    return isinstance(value, int) and not isinstance(value, bool)


def _all(test: Callable[[Any], bool], value: Any) -> bool:
    """A non-empty list whose every item passes ``test`` (several items in one event)."""
    return isinstance(value, list) and bool(value) and all(test(v) for v in value)


def _revenue(path: str, value: Any, ctx: Context) -> Any:
    if not _is_number(value):
        ctx.report.error(
            path,
            "not_numeric",
            "af_revenue must be a number, or a string of digits with an optional decimal point "
            "and leading '-' (no currency sign, spaces or thousands separators)",
        )
    elif _too_large(path, value, ctx):
        pass
    elif _below_zero(value):
        warn_negative(path, "af_revenue", ctx.report)
    return value


def _price(path: str, value: Any, ctx: Context) -> Any:
    if not (_is_number(value) or _all(_is_number, value)):
        ctx.report.warn(
            path,
            "price_not_numeric",
            "af_price should be a number or a string of digits (a list of them for several items)",
        )
        return value
    for here, price in _each(path, value):
        if not _too_large(here, price, ctx) and _below_zero(price):
            warn_negative(here, "af_price", ctx.report)
    return value


def _too_large(path: str, value: Any, ctx: Context) -> bool:
    """An integer past a float's range (±1.8e308) is refused as Axon's are (out_of_range);
    float() of it raised, a 500. A string of digits reads as infinity, and is kept as sent."""
    if isinstance(value, int) and abs(value) > sys.float_info.max:
        ctx.report.error(path, "out_of_range", TOO_LARGE_NUMBER)
        return True
    return False


def _below_zero(value: Any) -> bool:
    return float(value) < 0 if isinstance(value, str) else bool(value < 0)


def _quantity(path: str, value: Any, ctx: Context) -> Any:
    if not (_is_integer(value) or _all(_is_integer, value)):
        ctx.report.error(
            path,
            "not_integer",
            "af_quantity must be an integer or a string of digits (a list of them for several items)",
        )
        return value
    for here, quantity in _each(path, value):
        if int(quantity) == 0:
            warn_zero_quantity(here, "af_quantity", ctx.report)
    return value


def _each(path: str, value: Any) -> list[tuple[str, Any]]:
    """(path, value) of a parameter's value, or of each of its items (several in one event)."""
    return [(f"{path}[{i}]", v) for i, v in enumerate(value)] if isinstance(value, list) else [(path, value)]


def _currency(path: str, value: Any, ctx: Context) -> Any:
    if not isinstance(value, str) or len(value) != 3 or not value.isalpha():
        ctx.report.error(path, "invalid_currency", "must be a 3-letter ISO 4217 code such as USD")
        return value
    code = value.upper()
    if code in WITHDRAWN_CURRENCIES:
        ctx.report.warn(
            path,
            "withdrawn_currency",
            f"{code} has been withdrawn from ISO 4217 (AppsFlyer's list still accepts it)",
        )
    elif code not in CURRENCIES:
        ctx.report.error(path, "unknown_currency", f"{value!r} is not an ISO 4217 currency code")
        return value
    if code != value:
        ctx.report.warn(path, "currency_not_upper_case", f"currency codes are upper-case; it was read as {code}")
    return code


def _event_time(key: str, value: str, ctx: Context) -> str:
    try:
        event_ms = parse_event_time(value)
    except ValueError:
        ctx.report.error(
            key,
            "invalid_event_time",
            "eventTime is not a real date and time (yyyy-MM-dd HH:mm:ss.SSS, UTC)",
        )
        return value
    if len(value) == 19:
        ctx.report.warn(
            key,
            "event_time_without_milliseconds",
            "eventTime has no milliseconds; the documented format is yyyy-MM-dd HH:mm:ss.SSS (read as .000)",
        )
    arrival = ctx.received_at_ms
    if event_ms > arrival + FUTURE_SKEW_MS:
        ctx.report.warn(
            key,
            "event_time_in_future",
            f"eventTime is {(event_ms - arrival) // 1000} s after the request arrived: check that it is in UTC",
        )
    elif arrival > event_ms - event_ms % _DAY_MS + _LATE_CUTOFF_MS:
        ctx.extra[RESTAMPED_FIELD] = format_event_time(arrival)
        ctx.report.warn(
            key,
            "event_time_restamped",
            "the event arrived after 02:00 UTC of the day after its eventTime: like AppsFlyer, "
            f"it is recorded at its arrival time ({RESTAMPED_FIELD} in the payload)",
        )
        event_ms = arrival
    ctx.event_time_ms = event_ms
    return value


def _consent_data(key: str, value: dict[str, Any], ctx: Context) -> dict[str, Any]:
    if (value.get("tcf") is None) == (value.get("manual") is None):
        ctx.report.error(key, "invalid_consent_data", "consent_data must hold exactly one of `tcf` and `manual`")
    return value


def _custom_data(key: str, value: str | dict[str, Any], ctx: Context) -> Any:
    parsed = _stringified(key, value, ctx)
    return value if parsed is None else _without_personal(parsed, key, ctx)


def _without_personal(value: dict[str, Any], key: str, ctx: Context) -> dict[str, Any]:
    try:
        kept: dict[str, Any] = without_personal(value, key, ctx.report, SEND_HASHED)
    except TooDeep:
        ctx.report.error(key, "too_deep", f"{key} nests objects or arrays more than {MAX_DEPTH} levels deep")
        return {}
    return kept


RULES: Final[dict[str, Rule]] = {
    "eventName": _event_name,
    "eventValue": check_event_value,
    "eventCurrency": _currency,
    "eventTime": _event_time,
    "consent_data": _consent_data,
    "custom_data": _custom_data,
    **IDENTIFIER_RULES,
}
_EVENT_VALUERULES: Final[dict[str, Rule]] = {
    "af_revenue": _revenue,
    "af_price": _price,
    "af_quantity": _quantity,
    "af_currency": _currency,
}
