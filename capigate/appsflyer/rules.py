"""Checking one AppsFlyer S2S in-app event body, and turning it into a ``NewEvent``.

``check_in_app_event`` answers as AppsFlyer would (status and plain-text body) and adds every
problem and warning with its path. The common valid body costs one typed decode into
``InAppEvent``; only a body msgspec refuses is decoded again untyped and walked field by
field, so that a refused body reports all its problems and unknown keys are kept.

Problems (400; the text is ``Payload is missing or failed to parse`` for the first four,
``appsflyer_id is a mandatory field`` when that field is missing, else ``Bad request``):

    empty_body, payload_too_large, malformed_json, not_an_object     the body itself (path "")
    missing_field, wrong_type, invalid_format, invalid_length,
    out_of_range, invalid_enum, invalid                              schema (from msgspec)
    malformed_json, not_an_object        eventValue / custom_data is not a stringified object
    not_numeric, not_integer             eventValue.af_revenue / eventValue.af_quantity
    invalid_currency, unknown_currency   eventCurrency, eventValue.af_currency
    invalid_event_time                   eventTime is not a real date and time
    invalid_ip                           ip is not IPv4
    invalid_consent_data                 consent_data holds neither or both of tcf, manual
    invalid_hash                         *_hashed is neither SHA-256 hex nor a plain value
    blank_event_name                     eventName is only spaces

Warnings (the event is accepted): event_value_not_stringified, custom_data_not_stringified,
unknown_event_value_key, unknown_event_name, price_not_numeric, revenue_without_currency,
currency_not_upper_case, withdrawn_currency, event_time_without_milliseconds,
event_time_in_future, event_time_restamped, not_upper_case, zeroed_device_id, non_public_ip,
plain_pii_hashed, empty_value, hash_of_empty_string, phone_not_possible,
pii_in_customer_user_id, unknown_field, plain_pii_dropped, platform_mismatch,
recommended_field_missing.

No message repeats the value of a personal identifier, and a plain one never reaches the
payload: ``*_hashed`` values are hashed; unknown top-level keys that look like personal data
are dropped; so is, at any depth inside eventValue and custom_data, a key that looks like
personal data or a string holding an email address (``plain_pii_dropped``, at its path, such
as ``eventValue.buyer.email``). A SHA-256 hex value is never taken for personal data. Phone
numbers are only recognised by their key (``phone``): under a harmless key, a string of digits
is far more often an order or content id, and dropping those would lose real data.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Container
from functools import lru_cache
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from capigate.appsflyer.schema import (
    ANDROID_ONLY_FIELDS,
    APPSFLYER_ID_MISSING,
    BAD_REQUEST,
    CURRENCIES,
    IOS_ONLY_FIELDS,
    MAX_BODY_BYTES,
    OK,
    PARSE_FAILED,
    RESERVED_EVENT_NAMES,
    RESERVED_EVENT_VALUE_KEYS,
    WITHDRAWN_CURRENCIES,
    InAppEvent,
    format_event_time,
    parse_event_time,
)
from capigate.checking import Report, check_struct, did_you_mean, join, shown_value, top_key
from capigate.errors import Problem
from capigate.events import NewEvent
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
from capigate.personal import MAX_DEPTH, TooDeep, looks_personal, shown_key, without_emails, without_personal

__all__ = [
    "FUTURE_SKEW_MS",
    "RESTAMPED_FIELD",
    "InAppCheck",
    "check_in_app_event",
]

# An eventTime further ahead of the arrival time than this is warned about.
FUTURE_SKEW_MS: Final = 5 * 60 * 1000
# Added to the payload, with the arrival time, when a late event is re-stamped.
RESTAMPED_FIELD: Final = "eventTime_restamped"

_DAY_MS: Final = 86_400_000
_LATE_CUTOFF_MS: Final = _DAY_MS + 2 * 3_600_000  # 02:00 UTC the day after the event's day

_DECODER: Final = msgspec.json.Decoder(InAppEvent)
_ANY_DECODER: Final = msgspec.json.Decoder()
_OBJECT_DECODER: Final = msgspec.json.Decoder(dict[str, Any])
_ENCODER: Final = msgspec.json.Encoder()

_NUMERIC = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_INTEGER = re.compile(r"-?\d+")
_HEX = re.compile(r"[0-9A-Fa-f]{32,}")
_NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ '\u2019.\-])*")
_IOS_APP_ID = re.compile(r"(?:id)?\d+")
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
_SEND_HASHED: Final = "send email and phone hashed, in the top-level email_hashed and phone_number_hashed"
_REQUIRED_TEXT: Final = frozenset({"eventName"})
_ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"
_SHA256_OF_EMPTY: Final = sha256_hex("")


class InAppCheck(msgspec.Struct, kw_only=True):
    """The outcome of checking one body: AppsFlyer's answer, the detail, and the event."""

    status: int  # 200 or 400
    text: str  # AppsFlyer's plain-text body: OK, or one of the three 400 texts
    problems: list[Problem]
    warnings: list[Problem]
    event: NewEvent | None = None  # set when status is 200

    @property
    def ok(self) -> bool:
        return self.status == 200


def check_in_app_event(body: bytes, *, app_id: str, received_at_ms: int, dedupe_key: str | None = None) -> InAppCheck:
    """Check one ``POST /inappevent/{app_id}`` body received at ``received_at_ms``.

    ``dedupe_key`` names the eventValue parameter whose value becomes the event's
    ``dedupe_id`` (``"af_order_id"``); AppsFlyer itself does not deduplicate, so None."""
    size = len(body)
    if size > MAX_BODY_BYTES:
        return _parse_failed(
            "payload_too_large",
            f"the body is {size} bytes; AppsFlyer accepts at most {MAX_BODY_BYTES} bytes",
        )
    if size == 0:
        return _parse_failed("empty_body", "the body is empty; send one JSON object")
    try:
        event = _DECODER.decode(body)
    except msgspec.ValidationError:
        return _check_field_by_field(body, app_id, received_at_ms, dedupe_key)
    except msgspec.DecodeError as exc:
        return _malformed(body, exc)
    except RecursionError:
        return _parse_failed("too_deep", "the body nests arrays or objects too deep to be read")
    values: dict[str, Any] = msgspec.to_builtins(event)  # omits the fields not sent
    return _finish(values, values, {}, Report(), app_id, received_at_ms, dedupe_key)


# --- the slow path: a body msgspec refused ------------------------------------------------


def _check_field_by_field(body: bytes, app_id: str, received_at_ms: int, dedupe_key: str | None) -> InAppCheck:
    try:
        raw = _ANY_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        return _malformed(body, exc)
    except RecursionError:
        return _parse_failed("too_deep", "the body nests arrays or objects too deep to be read")
    if not isinstance(raw, dict):
        what = _JSON_KINDS.get(type(raw), "not an object")
        hint = ": send one event per request" if isinstance(raw, list) else ""
        return _parse_failed("not_an_object", f"the body must be one JSON object, got {what}{hint}")
    report = Report()
    known, unknown = _split(raw, _SHAPE, "", report)
    if known.get("appsflyer_id") in (None, ""):
        known.pop("appsflyer_id", None)  # reported as missing, as AppsFlyer does
    check_struct(known, InAppEvent, "", report)
    failed = {top_key(p.path) for p in report.problems}
    values = {k: raw[k] for k in known if k not in failed and raw[k] is not None}
    kept = _unknown_top_level(unknown, report)
    return _finish(values, known, kept, report, app_id, received_at_ms, dedupe_key)


class _Shape:
    """The field names of a Struct and the shapes of its Struct-typed fields."""

    __slots__ = ("fields", "nested")

    def __init__(self, info: mi.StructType) -> None:
        self.fields = frozenset(f.encode_name for f in info.fields)
        self.nested = {f.encode_name: _Shape(inner) for f in info.fields if (inner := _struct_info(f.type)) is not None}


def _struct_info(kind: mi.Type) -> mi.StructType | None:
    if isinstance(kind, mi.StructType):
        return kind
    if isinstance(kind, mi.UnionType):
        return next((t for t in kind.types if isinstance(t, mi.StructType)), None)
    return None


def _shape_of(kind: type[msgspec.Struct]) -> _Shape:
    info = mi.type_info(kind)
    assert isinstance(info, mi.StructType)
    return _Shape(info)


_SHAPE: Final = _shape_of(InAppEvent)


def _split(raw: dict[str, Any], shape: _Shape, path: str, report: Report) -> tuple[dict[str, Any], dict[str, Any]]:
    """(known, unknown) keys of ``raw``; unknown keys of nested objects are warned about here
    and left out of ``known``, which is only used to check the known ones."""
    known: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in shape.fields:
            unknown[key] = value
            continue
        inner = shape.nested.get(key)
        if inner is not None and isinstance(value, dict):
            here = join(path, key)
            value, extra = _split(value, inner, here, report)
            for name in extra:
                report.warn(join(here, name), "unknown_field", _unknown_message(name, inner.fields))
        known[key] = value
    return known, unknown


def _unknown_top_level(unknown: dict[str, Any], report: Report) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in unknown.items():
        if looks_personal(key, value):
            shown = shown_key(key)
            report.warn(
                shown,
                "plain_pii_dropped",
                f"`{shown}` is not an AppsFlyer field and looks like personal data: it was dropped "
                "(send email and phone hashed, in email_hashed and phone_number_hashed)",
            )
            continue
        report.warn(key, "unknown_field", _unknown_message(key, _SHAPE.fields))
        try:
            kept[key] = without_personal(value, key, report, _SEND_HASHED, 1)
        except TooDeep:
            report.error(key, "too_deep", f"{key} nests objects or arrays more than {MAX_DEPTH} levels deep")
    return kept


def _unknown_message(key: str, known: frozenset[str]) -> str:
    return f"`{key}` is not an AppsFlyer field; it was kept as sent{_suggest(key, known)}"


@lru_cache(maxsize=1024)  # difflib costs ~100 µs; a client repeats the same stray keys
def _suggest(key: str, known: frozenset[str]) -> str:
    lowered = key.lower()
    for name in known:
        if name.lower() == lowered:
            return f" (did you mean {name!r}?)"
    return did_you_mean(key, known)


# --- the rules past the schema, shared by both paths --------------------------------------


class _Drop:
    """Returned by a rule to leave the field out of the payload."""


_DROP: Final = _Drop()


class _Context:
    __slots__ = ("event_time_ms", "event_value", "extra", "received_at_ms", "region", "report")

    def __init__(self, report: Report, received_at_ms: int) -> None:
        self.report = report
        self.received_at_ms = received_at_ms
        self.event_time_ms: int | None = None
        self.event_value: dict[str, Any] | None = None
        self.extra: dict[str, Any] = {}
        self.region: str | None = None  # the country the body carries (eventValue.af_country)


_Rule = Callable[[str, Any, _Context], Any]


def _finish(
    values: dict[str, Any],
    sent: Container[str],
    unknown: dict[str, Any],
    report: Report,
    app_id: str,
    received_at_ms: int,
    dedupe_key: str | None,
) -> InAppCheck:
    """Apply the rules to ``values`` (fields sent that passed the schema) and answer."""
    ctx = _Context(report, received_at_ms)
    # eventValue first: the phone rules read the country it carries.
    event_value = _event_value("eventValue", values["eventValue"], ctx) if "eventValue" in values else None
    ctx.region = _region(ctx.event_value)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "eventValue":
            value = event_value
        else:
            rule = _RULES.get(key)
            if rule is not None:
                value = rule(key, value, ctx)
                if value is _DROP:
                    continue
        out[key] = value
    out.update(unknown)
    out.update(ctx.extra)
    _platform_hints(app_id, values, report)
    if "os" not in sent:
        report.warn(
            "os",
            "recommended_field_missing",
            "send `os` (the OS version): AppsFlyer needs it to process the event correctly, "
            "and takes an iOS event without it as coming from iOS 14.5",
        )
    if (
        ctx.event_value is not None
        and "af_revenue" in ctx.event_value
        and "af_currency" not in ctx.event_value
        and "eventCurrency" not in sent
    ):
        report.warn(
            "eventCurrency",
            "revenue_without_currency",
            "af_revenue is sent without eventCurrency or af_currency: AppsFlyer assumes USD",
        )
    payload = _ENCODER.encode(out)
    if b"@" in payload:  # rare: only then is the body walked for an email address in a defined field
        payload = _ENCODER.encode(without_emails(out, "", report, _SEND_HASHED, required=_REQUIRED_TEXT))
    if report.problems:
        missing_id = any(p.path == "appsflyer_id" and p.code == "missing_field" for p in report.problems)
        return InAppCheck(
            status=400,
            text=APPSFLYER_ID_MISSING if missing_id else BAD_REQUEST,
            problems=report.problems,
            warnings=report.warnings,
        )
    event = NewEvent(
        api="appsflyer",
        source=app_id,
        name=values["eventName"],
        event_time_ms=received_at_ms if ctx.event_time_ms is None else ctx.event_time_ms,
        dedupe_id=_dedupe_id(ctx.event_value, dedupe_key),
        payload=payload,
    )
    return InAppCheck(status=200, text=OK, problems=[], warnings=report.warnings, event=event)


def _event_name(key: str, value: str, ctx: _Context) -> str:
    if not value.strip():
        ctx.report.error(key, "blank_event_name", "eventName must not be blank")
    elif value[:3].lower() == "af_" and value not in RESERVED_EVENT_NAMES:
        ctx.report.warn(
            key,
            "unknown_event_name",
            f"{shown_value(value)} is not a predefined AppsFlyer event; custom event names should not "
            f"start with af_{_suggest(value, RESERVED_EVENT_NAMES)}",
        )
    return value


def _stringified(key: str, value: str | dict[str, Any], ctx: _Context) -> dict[str, Any] | None:
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


def _event_value(key: str, value: str | dict[str, Any], ctx: _Context) -> Any:
    parsed = _stringified(key, value, ctx)
    if parsed is None:
        return value
    fixed: dict[str, Any] = {}
    for name, item in parsed.items():
        if name[:3].lower() != "af_":
            continue
        rule = _EVENT_VALUE_RULES.get(name)
        if rule is not None:
            new = rule(f"{key}.{name}", item, ctx)
            if new is not item:
                fixed[name] = new
        elif name not in RESERVED_EVENT_VALUE_KEYS:
            ctx.report.warn(
                f"{key}.{name}",
                "unknown_event_value_key",
                f"`{name}` is not a predefined AppsFlyer parameter; custom parameters should "
                f"not start with af_{_suggest(name, RESERVED_EVENT_VALUE_KEYS)}",
            )
    parsed.update(fixed)
    # The rules above saw every parameter; what is stored, relayed and deduplicated on is
    # what is left once personal data is dropped.
    kept: dict[str, Any] = _without_personal(parsed, key, ctx)
    ctx.event_value = kept
    return kept


def _region(event_value: dict[str, Any] | None) -> str | None:
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


def _revenue(path: str, value: Any, ctx: _Context) -> Any:
    if not _is_number(value):
        ctx.report.error(
            path,
            "not_numeric",
            "af_revenue must be a number, or a string of digits with an optional decimal point "
            "and leading '-' (no currency sign, spaces or thousands separators)",
        )
    return value


def _price(path: str, value: Any, ctx: _Context) -> Any:
    if not (_is_number(value) or _all(_is_number, value)):
        ctx.report.warn(
            path,
            "price_not_numeric",
            "af_price should be a number or a string of digits (a list of them for several items)",
        )
    return value


def _quantity(path: str, value: Any, ctx: _Context) -> Any:
    if not (_is_integer(value) or _all(_is_integer, value)):
        ctx.report.error(
            path,
            "not_integer",
            "af_quantity must be an integer or a string of digits (a list of them for several items)",
        )
    return value


def _currency(path: str, value: Any, ctx: _Context) -> Any:
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


def _event_time(key: str, value: str, ctx: _Context) -> str:
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


def _ip(key: str, value: str, ctx: _Context) -> str:
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


def _apple_id(key: str, value: str, ctx: _Context) -> str:
    _zeroed(key, value, ctx)
    upper = value.upper()
    if upper != value:
        ctx.report.warn(key, "not_upper_case", f"{key} is an upper-case UUID; it was upper-cased")
    return upper


def _zeroed(key: str, value: str, ctx: _Context) -> str:
    if value == _ZERO_UUID:
        ctx.report.warn(
            key,
            "zeroed_device_id",
            f"{key} is all zeros (ad tracking not allowed on the device): no partner can match it",
        )
    return value


def _consent_data(key: str, value: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    if (value.get("tcf") is None) == (value.get("manual") is None):
        ctx.report.error(key, "invalid_consent_data", "consent_data must hold exactly one of `tcf` and `manual`")
    return value


def _custom_data(key: str, value: str | dict[str, Any], ctx: _Context) -> Any:
    parsed = _stringified(key, value, ctx)
    return value if parsed is None else _without_personal(parsed, key, ctx)


def _without_personal(value: dict[str, Any], key: str, ctx: _Context) -> dict[str, Any]:
    try:
        kept: dict[str, Any] = without_personal(value, key, ctx.report, _SEND_HASHED)
    except TooDeep:
        ctx.report.error(key, "too_deep", f"{key} nests objects or arrays more than {MAX_DEPTH} levels deep")
        return {}
    return kept


def _customer_user_id(key: str, value: str, ctx: _Context) -> Any:
    if contains_email(value):
        ctx.report.warn(
            key,
            "pii_in_customer_user_id",
            "customer_user_id holds an email address: it was dropped, never stored or relayed; use an "
            "internal user id, and send the email hashed in email_hashed",
        )
        return _DROP
    return value


def _plain_name(raw: str) -> str:
    if not _NAME.fullmatch(raw.strip()):
        raise InvalidIdentifier("not a name (letters, spaces, apostrophes, hyphens, dots)")
    return hash_name(raw)


_HASHERS: Final[dict[str, tuple[Callable[[str], str], str]]] = {
    "email_hashed": (hash_email, "an email address"),
    "first_name_hashed": (_plain_name, "a first name"),
    "last_name_hashed": (_plain_name, "a last name"),
}
_PHONES: Final = {"phone_number_hashed": "a phone number", "phone_number_e164_hashed": "an E.164 phone number"}


def _hashed(key: str, value: str, ctx: _Context) -> Any:
    """64-hex passes (lower-cased); a plain value is normalised and hashed, with a warning."""
    text = value.strip()
    if not text:
        ctx.report.warn(key, "empty_value", f"{key} is empty; it was left out")
        return _DROP
    if is_sha256_hex(text):
        digest = text.lower()
        if digest == _SHA256_OF_EMPTY:
            ctx.report.warn(key, "hash_of_empty_string", f"{key} is the SHA-256 of an empty string")
        return digest
    if _HEX.fullmatch(text):
        ctx.report.error(key, "invalid_hash", f"{key} looks like a hex digest but not SHA-256 (64 hex digits)")
        return _DROP
    what = _PHONES.get(key) or _HASHERS[key][1]
    try:
        digest = _hashed_phone(key, value, ctx) if key in _PHONES else _HASHERS[key][0](value)
    except InvalidIdentifier as exc:
        ctx.report.error(key, "invalid_hash", f"{key} is neither a SHA-256 hex digest nor {what}: {exc}")
        return _DROP
    ctx.report.warn(
        key,
        "plain_pii_hashed",
        f"{key} held {what} instead of its SHA-256: it was normalised and hashed, and the plain value was not kept",
    )
    return digest


def _hashed_phone(key: str, value: str, ctx: _Context) -> str:
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


_RULES: Final[dict[str, _Rule]] = {
    "eventName": _event_name,
    "eventValue": _event_value,
    "eventCurrency": _currency,
    "eventTime": _event_time,
    "ip": _ip,
    "idfa": _apple_id,
    "idfv": _apple_id,
    "advertising_id": _zeroed,
    "consent_data": _consent_data,
    "custom_data": _custom_data,
    "customer_user_id": _customer_user_id,
    **{name: _hashed for name in (*_HASHERS, *_PHONES)},
}
_EVENT_VALUE_RULES: Final[dict[str, Callable[[str, Any, _Context], Any]]] = {
    "af_revenue": _revenue,
    "af_price": _price,
    "af_quantity": _quantity,
    "af_currency": _currency,
}


def _platform_hints(app_id: str, values: Container[str], report: Report) -> None:
    platform = _platform_of(app_id)
    if platform is None:
        return  # Windows store ids and the like: no hint
    wrong, field_os, app_os = (
        (ANDROID_ONLY_FIELDS, "an Android", "an iOS")
        if platform == "ios"
        else (IOS_ONLY_FIELDS, "an iOS", "an Android")
    )
    for name in wrong:
        if name in values:
            report.warn(
                name,
                "platform_mismatch",
                f"`{name}` is {field_os} field but {app_id!r} is {app_os} app id: check the app",
            )


@lru_cache(maxsize=1024)
def _platform_of(app_id: str) -> str | None:
    """ "ios" for ``id`` + digits (or bare digits), "android" for a package name, else None."""
    if _IOS_APP_ID.fullmatch(app_id):
        return "ios"
    return "android" if "." in app_id else None


def _dedupe_id(event_value: dict[str, Any] | None, dedupe_key: str | None) -> str | None:
    """From the eventValue as stored: never from a parameter dropped as personal data."""
    if dedupe_key is None or event_value is None:
        return None
    value = event_value.get(dedupe_key)
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


# --- the body itself -----------------------------------------------------------------------

_JSON_KINDS: Final[dict[type, str]] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _parse_failed(code: str, message: str) -> InAppCheck:
    return InAppCheck(status=400, text=PARSE_FAILED, problems=[Problem("", code, message)], warnings=[])


def _malformed(body: bytes, exc: msgspec.DecodeError) -> InAppCheck:
    if not body.strip():
        return _parse_failed("empty_body", "the body is empty; send one JSON object")
    return _parse_failed("malformed_json", f"the body is not valid JSON ({exc})")
