"""The rules past the schema on each field of an AppsFlyer in-app event, shared by the
typed and the field-by-field paths of ``rules.py``: each takes the field's key, its value and
the check's ``Context``, reports at the key's path, and returns the value to keep (``DROP``
to leave the field out)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

import msgspec

from capigate.appsflyer.schema import (
    CURRENCIES,
    RESERVED_EVENT_NAMES,
    RESERVED_EVENT_VALUE_KEYS,
    WITHDRAWN_CURRENCIES,
    format_event_time,
    parse_event_time,
)
from capigate.checking import Report, did_you_mean, shown_value
from capigate.identity import (
    InvalidIdentifier,
    contains_email,
    hash_email,
    hash_name,
    is_sha256_hex,
    normalise_phone,
    sha256_hex,
)
from capigate.iso import COUNTRY_CODES
from capigate.personal import MAX_DEPTH, TooDeep, without_personal

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

_NUMERIC = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_INTEGER = re.compile(r"-?\d+")
_HEX = re.compile(r"[0-9A-Fa-f]{32,}")
_NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ '\u2019.\-])*")
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(r"\.".join([_OCTET] * 4))
# Not globally reachable (what ipaddress.IPv4Address.is_global tells, ~10x faster here).
_NON_PUBLIC_NETWORKS: Final = tuple(
    (int(net.network_address), int(net.netmask))
    for net in map(
        ipaddress.IPv4Network,
        (
            *("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16"),
            *("172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16"),
            *("198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24"),
            "224.0.0.0/3",  # multicast, reserved and broadcast
        ),
    )
)
_NON_PUBLIC_FIRST_OCTETS: Final = frozenset(
    octet
    for network, mask in _NON_PUBLIC_NETWORKS
    for octet in range(256)
    if (octet << 24 ^ network) & mask & 0xFF000000 == 0
)
SEND_HASHED: Final = "send email and phone hashed, in the top-level email_hashed and phone_number_hashed"
_REQUIRED_TEXT: Final = frozenset({"eventName"})
_ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"
_SHA256_OF_EMPTY: Final = sha256_hex("")


@lru_cache(maxsize=1024)  # difflib costs ~100 µs; a client repeats the same stray keys
def suggest(key: str, known: frozenset[str]) -> str:
    lowered = key.lower()
    for name in known:
        if name.lower() == lowered:
            return f" (did you mean {name!r}?)"
    return did_you_mean(key, known)


class Drop:
    """Returned by a rule to leave the field out of the payload."""


DROP: Final = Drop()


class Context:
    __slots__ = ("event_time_ms", "event_value", "extra", "received_at_ms", "region", "report")

    def __init__(self, report: Report, received_at_ms: int) -> None:
        self.report = report
        self.received_at_ms = received_at_ms
        self.event_time_ms: int | None = None
        self.event_value: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.region: str | None = None  # the country the body carries (eventValue.af_country)


_Rule = Callable[[str, Any, Context], Any]


def _event_name(key: str, value: str, ctx: Context) -> str:
    if not value.strip():
        ctx.report.error(key, "blank_event_name", "eventName must not be blank")
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
        return _OBJECT_DECODER.decode(value)
    except msgspec.ValidationError:
        ctx.report.error(key, "not_an_object", f'{key} must be a stringified JSON object, or "" for none')
    except msgspec.DecodeError as exc:
        ctx.report.error(key, "malformed_json", f"{key} is not valid stringified JSON ({exc})")
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
    return value


def _price(path: str, value: Any, ctx: Context) -> Any:
    if not (_is_number(value) or _all(_is_number, value)):
        ctx.report.warn(
            path,
            "price_not_numeric",
            "af_price should be a number or a string of digits (a list of them for several items)",
        )
    return value


def _quantity(path: str, value: Any, ctx: Context) -> Any:
    if not (_is_integer(value) or _all(_is_integer, value)):
        ctx.report.error(
            path,
            "not_integer",
            "af_quantity must be an integer or a string of digits (a list of them for several items)",
        )
    return value


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


def _ip(key: str, value: str, ctx: Context) -> str:
    match = _IPV4.fullmatch(value)
    if match is None:
        ctx.report.error(
            key,
            "invalid_ip",
            "ip must be an IPv4 address; AppsFlyer does not take IPv6"
            if ":" in value
            else "ip is not an IPv4 address (such as 203.0.113.7)",
        )
    elif not _is_public(match):
        ctx.report.warn(
            key,
            "non_public_ip",
            "ip is not a public address: send the device's address, which AppsFlyer uses for geo",
        )
    return value


def _is_public(match: re.Match[str]) -> bool:
    first = int(match[1])
    if first not in _NON_PUBLIC_FIRST_OCTETS:
        return True
    number = first << 24 | int(match[2]) << 16 | int(match[3]) << 8 | int(match[4])
    return not any(number & mask == network for network, mask in _NON_PUBLIC_NETWORKS)


def _apple_id(key: str, value: str, ctx: Context) -> str:
    _zeroed(key, value, ctx)
    upper = value.upper()
    if upper != value:
        ctx.report.warn(key, "not_upper_case", f"{key} is an upper-case UUID; it was upper-cased")
    return upper


def _zeroed(key: str, value: str, ctx: Context) -> str:
    if value == _ZERO_UUID:
        ctx.report.warn(
            key,
            "zeroed_device_id",
            f"{key} is all zeros (ad tracking not allowed on the device): no partner can match it",
        )
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


def _customer_user_id(key: str, value: str, ctx: Context) -> Any:
    if contains_email(value):
        ctx.report.warn(
            key,
            "pii_in_customer_user_id",
            "customer_user_id holds an email address: it was dropped, never stored or relayed; use an "
            "internal user id, and send the email hashed in email_hashed",
        )
        return DROP
    return value


def _plain_name(raw: str) -> str:
    if not _NAME.fullmatch(raw.strip()):
        raise InvalidIdentifier("not a name (letters, spaces, apostrophes, hyphens, dots)")
    return hash_name(raw)


# The hashed fields a client may send plain: how each is normalised and hashed, and what it is.
PLAIN_HASHERS: Final[dict[str, tuple[Callable[[str], str], str]]] = {
    "email_hashed": (hash_email, "an email address"),
    "first_name_hashed": (_plain_name, "a first name"),
    "last_name_hashed": (_plain_name, "a last name"),
}
_PHONES: Final = {"phone_number_hashed": "a phone number", "phone_number_e164_hashed": "an E.164 phone number"}


def _hashed(key: str, value: str, ctx: Context) -> Any:
    """64-hex passes (lower-cased); a plain value is normalised and hashed, with a warning."""
    text = value.strip()
    if not text:
        ctx.report.warn(key, "empty_value", f"{key} is empty; it was left out")
        return DROP
    if is_sha256_hex(text):
        digest = text.lower()
        if digest == _SHA256_OF_EMPTY:
            ctx.report.warn(key, "hash_of_empty_string", f"{key} is the SHA-256 of an empty string")
        return digest
    if _HEX.fullmatch(text):
        ctx.report.error(key, "invalid_hash", f"{key} looks like a hex digest but not SHA-256 (64 hex digits)")
        return DROP
    what = _PHONES.get(key) or PLAIN_HASHERS[key][1]
    try:
        digest = _hashed_phone(key, value, ctx) if key in _PHONES else PLAIN_HASHERS[key][0](value)
    except InvalidIdentifier as exc:
        ctx.report.error(key, "invalid_hash", f"{key} is neither a SHA-256 hex digest nor {what}: {exc}")
        return DROP
    ctx.report.warn(
        key,
        "plain_pii_hashed",
        f"{key} held {what} instead of its SHA-256: it was normalised and hashed, and the plain value was not kept",
    )
    return digest


def _hashed_phone(key: str, value: str, ctx: Context) -> str:
    """phone_number_hashed: the digits with country code; the E.164 form adds the "+". A number
    without + or 00 is read in the body's country (eventValue.af_country) when it carries one."""
    phone = normalise_phone(value, ctx.region)
    if not phone.with_country_code:
        ctx.report.warn(
            key,
            "phone_without_country_code",
            f"{key} has no country code (+ or 00) and the body no eventValue.af_country: its digits were hashed "
            "as sent, and will only match if they include the country code (AppsFlyer expects 16505551212)",
        )
    elif not phone.possible:
        ctx.report.warn(key, "phone_not_possible", f"{key} is not a possible number: check its country code")
    return sha256_hex(phone.digits if key == "phone_number_hashed" else "+" + phone.digits)


RULES: Final[dict[str, _Rule]] = {
    "eventName": _event_name,
    "eventValue": check_event_value,
    "eventCurrency": _currency,
    "eventTime": _event_time,
    "ip": _ip,
    "idfa": _apple_id,
    "idfv": _apple_id,
    "advertising_id": _zeroed,
    "consent_data": _consent_data,
    "custom_data": _custom_data,
    "customer_user_id": _customer_user_id,
    **{name: _hashed for name in (*PLAIN_HASHERS, *_PHONES)},
}
_EVENT_VALUERULES: Final[dict[str, Callable[[str, Any, Context], Any]]] = {
    "af_revenue": _revenue,
    "af_price": _price,
    "af_quantity": _quantity,
    "af_currency": _currency,
}
