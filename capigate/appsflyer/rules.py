"""Checking one AppsFlyer S2S in-app event body, and turning it into a ``NewEvent``.

``check_in_app_event`` answers as AppsFlyer would (status and plain-text body) and adds every
problem and warning with its path. The common valid body costs one typed decode into
``InAppEvent``; only a body msgspec refuses is decoded again untyped and walked field by
field, so that a refused body reports all its problems and unknown keys are kept. The rule of
each field lives in ``fields.py``.

Problems (400; the text is ``Payload is missing or failed to parse`` for the first four,
``appsflyer_id is a mandatory field`` when that field is missing, else ``Bad request``):

    empty_body, payload_too_large, malformed_json, not_an_object     the body itself (path "")
    missing_field, wrong_type, invalid_format, invalid_length,
    out_of_range, invalid_enum, invalid                              schema (from msgspec)
    malformed_json, not_an_object        eventValue / custom_data is not a stringified object
    not_numeric, not_integer             eventValue.af_revenue / eventValue.af_quantity
    invalid_currency, unknown_currency   eventCurrency, eventValue.af_currency
    invalid_event_time                   eventTime is not a real date and time
    invalid_ip                           ip is not IPv4 (spaces around it are left out)
    invalid_consent_data                 consent_data holds neither or both of tcf, manual
    invalid_hash                         *_hashed is neither SHA-256 hex nor a plain value
    blank_event_name                     eventName is only spaces
    control_character                    eventName holds a control character (NUL, a line break, U+202E)
    plain_pii                            eventName holds an email address or a phone number

A body not read as JSON (empty, too large, malformed, too deep, a number out of range) counts
no event received in the journal, as on the Axon endpoint; any other body is the request's one.

Warnings (the event is accepted): event_value_not_stringified, custom_data_not_stringified,
unknown_event_value_key, unknown_event_name, price_not_numeric, revenue_without_currency,
currency_not_upper_case, withdrawn_currency, event_time_without_milliseconds,
event_time_in_future, event_time_restamped, not_upper_case, zeroed_device_id, non_public_ip,
plain_pii_hashed, empty_value, hash_of_empty_string, phone_not_possible, phone_trunk_prefix_removed,
pii_in_customer_user_id, unknown_field, plain_pii_dropped, platform_mismatch,
recommended_field_missing, negative_value (af_revenue, af_price), zero_quantity (af_quantity),
blank_dedupe_id (the app's dedupe_key parameter is empty, spaces or null: no dedupe id, as on Axon),
missing_dedupe_id (the app has a dedupe_key and the event's eventValue has no usable value of it),
duplicate_key (a key given twice in one object, of the body or a stringified eventValue or
custom_data: the last value is kept, as AppsFlyer's parser keeps it; duplicates.py).

No message repeats the value of a personal identifier, and a plain one never reaches the
payload: ``*_hashed`` values are hashed; unknown top-level keys that look like personal data
are dropped; so is, at any depth inside eventValue and custom_data, a key that looks like
personal data or a string holding an email address (``plain_pii_dropped``, at its path, such
as ``eventValue.buyer.email``), and so is a string holding a phone number in international
form (``identity.holds_international_phone``: ``+1 415 555 0123``, hidden, ``tel:``, ``00`` and
a valid number; ``eventValue.af_order_id``), in any field but ``eventName``, which refuses it.
A SHA-256 hex value is never taken for personal data. Digits without ``+`` or ``00`` are a
phone number by their key only (``phone``): under a harmless key, a string of digits is far
more often an order or content id, and dropping those would lose real data.
"""

from __future__ import annotations

import re
from collections.abc import Container
from functools import lru_cache
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from capigate.appsflyer.fields import (
    DROP,
    FUTURE_SKEW_MS,
    RESTAMPED_FIELD,
    RULES,
    SEND_HASHED,
    Context,
    check_event_value,
    region_of,
    suggest,
)
from capigate.appsflyer.schema import (
    ANDROID_ONLY_FIELDS,
    APPSFLYER_ID_MISSING,
    BAD_REQUEST,
    IOS_ONLY_FIELDS,
    MAX_BODY_BYTES,
    OK,
    PARSE_FAILED,
    InAppEvent,
)
from capigate.checking import Report, check_struct, is_blank_dedupe_id, join, top_key
from capigate.duplicates import may_repeat, repeated_keys
from capigate.errors import Problem
from capigate.events import NewEvent
from capigate.identity import payload_may_hold_email, payload_may_hold_phone
from capigate.personal import (
    MAX_DEPTH,
    TooDeep,
    looks_personal,
    said_of_refused,
    shown_key,
    without_emails,
    without_personal,
)
from capigate.unreadable import TOO_DEEP, unreadable

__all__ = [
    "FUTURE_SKEW_MS",
    "RESTAMPED_FIELD",
    "InAppCheck",
    "check_in_app_event",
]

_DECODER: Final = msgspec.json.Decoder(InAppEvent)
_ANY_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()

_EMPTY_BODY: Final = Problem("", "empty_body", "the body is empty; send one JSON object")
_IOS_APP_ID = re.compile(r"(?:id)?\d+")
_REQUIRED_TEXT: Final = frozenset({"eventName"})


class InAppCheck(msgspec.Struct, kw_only=True):
    """The outcome of checking one body: AppsFlyer's answer, the detail, and the event."""

    status: int  # 200 or 400
    text: str  # AppsFlyer's plain-text body: OK, or one of the three 400 texts
    problems: list[Problem]
    warnings: list[Problem]
    event: NewEvent | None = None  # set when status is 200
    received: int = 1  # the request's one event; 0 for a body not read as JSON, which holds none to count

    @property
    def ok(self) -> bool:
        return self.status == 200


def check_in_app_event(body: bytes, *, app_id: str, received_at_ms: int, dedupe_key: str | None = None) -> InAppCheck:
    """Check one ``POST /inappevent/{app_id}`` body received at ``received_at_ms``.

    ``dedupe_key`` names the eventValue parameter whose value becomes the event's
    ``dedupe_id`` (``"af_order_id"``); AppsFlyer itself does not deduplicate, so None."""
    size = len(body)
    if size > MAX_BODY_BYTES:
        message = f"the body is {size} bytes; AppsFlyer accepts at most {MAX_BODY_BYTES} bytes"
        return _not_read(Problem("", "payload_too_large", message))
    if size == 0:
        return _not_read(_EMPTY_BODY)
    try:
        event = _DECODER.decode(body)
    except msgspec.ValidationError:
        return _check_field_by_field(body, app_id, received_at_ms, dedupe_key)
    except msgspec.DecodeError as exc:
        return _malformed(body, exc)
    except RecursionError:
        return _not_read(TOO_DEEP)
    values: dict[str, Any] = msgspec.to_builtins(event)  # omits the fields not sent
    report = Report()
    encoded = _ENCODER.encode(event)
    # A body as long as the event encoded again gives no key twice (a repeated pair would make
    # it longer): msgspec writes each string, integer and absent field in the fewest bytes, and
    # a float only inside an eventValue or custom_data sent as an object. Any other is counted.
    if (len(body) != len(encoded) or type(event.eventValue) is dict or type(event.custom_data) is dict) and may_repeat(
        body, encoded
    ):
        repeated_keys(body, "", report)
    return _finish(values, values, {}, report, app_id, received_at_ms, dedupe_key)


# --- the slow path: a body msgspec refused ------------------------------------------------


def _check_field_by_field(body: bytes, app_id: str, received_at_ms: int, dedupe_key: str | None) -> InAppCheck:
    try:
        raw = _ANY_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        return _malformed(body, exc)
    except RecursionError:
        return _not_read(TOO_DEEP)
    if not isinstance(raw, dict):
        what = _JSON_KINDS.get(type(raw), "not an object")
        hint = ": send one event per request" if isinstance(raw, list) else ""
        return _parse_failed("not_an_object", f"the body must be one JSON object, got {what}{hint}")
    report = Report()
    if may_repeat(body, _ENCODER.encode(raw)):  # said first, as on the typed path
        repeated_keys(body, "", report)
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
        inside = Report()  # what is treated inside it, said after it
        try:
            kept[key] = without_personal(value, key, inside, SEND_HASHED, 1)
        except TooDeep:
            inside.error(key, "too_deep", f"{key} nests objects or arrays more than {MAX_DEPTH} levels deep")
        treated = bool(inside.warnings or inside.problems)
        report.warn(key, "unknown_field", _unknown_message(key, _SHAPE.fields, as_sent=not treated))
        report.warnings += inside.warnings
        report.problems += inside.problems
    return kept


def _unknown_message(key: str, known: frozenset[str], *, as_sent: bool = True) -> str:
    kept = "it was kept as sent" if as_sent else "it was kept, with the personal data in it treated as said below"
    return f"`{key}` is not an AppsFlyer field; {kept}{suggest(key, known)}"


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
    ctx = Context(report, received_at_ms)
    # eventValue first: the phone rules read the country it carries.
    event_value = check_event_value("eventValue", values["eventValue"], ctx) if "eventValue" in values else None
    ctx.region = region_of(ctx.event_value)
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "eventValue":
            value = event_value
        else:
            rule = RULES.get(key)
            if rule is not None:
                value = rule(key, value, ctx)
                if value is DROP:
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
    # Rare: only then is the body walked for an email address or a phone number in international
    # form (one inside eventValue and custom_data is dropped by now, as any personal data there).
    if payload_may_hold_email(payload) or payload_may_hold_phone(payload):
        kept = without_emails(out, "", report, SEND_HASHED, required=_REQUIRED_TEXT, phones=True)
        payload = _ENCODER.encode(kept)
    if report.problems:
        missing_id = any(p.path == "appsflyer_id" and p.code == "missing_field" for p in report.problems)
        return InAppCheck(
            status=400,
            text=APPSFLYER_ID_MISSING if missing_id else BAD_REQUEST,
            problems=report.problems,
            warnings=said_of_refused(report.warnings),
        )
    dedupe_id = _dedupe_id(ctx.event_value, dedupe_key, report)
    event = NewEvent(
        api="appsflyer",
        source=app_id,
        name=values["eventName"],
        event_time_ms=received_at_ms if ctx.event_time_ms is None else ctx.event_time_ms,
        dedupe_id=dedupe_id,
        payload=payload,
    )
    return InAppCheck(status=200, text=OK, problems=[], warnings=report.warnings, event=event)


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


def _dedupe_id(event_value: dict[str, Any] | None, dedupe_key: str | None, report: Report) -> str | None:
    """From the eventValue as stored: never from a parameter dropped as personal data. A blank
    one (``""``, spaces, null: a client's ``order.id || ""``) is no id, said with the Axon
    endpoint's warning, ``blank_dedupe_id``: each such event was stored, silently undeduplicated
    (a trial). The parameter itself goes upstream as sent."""
    if dedupe_key is None:
        return None
    value = None if event_value is None else event_value.get(dedupe_key)
    if event_value is not None and dedupe_key in event_value and (value is None or is_blank_dedupe_id(value)):
        shown = "null" if value is None else "empty" if not value else "all spaces"
        report.warn(
            f"eventValue.{dedupe_key}",
            "blank_dedupe_id",
            f"{dedupe_key} is {shown}, so the app's dedupe_key gives this event no dedupe id: it is stored "
            "and relayed without one, never taken for a duplicate (had it been kept, every later event with "
            "the same blank id would have been dropped as one); send the order's own id",
        )
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    _warn_missing_dedupe_id(event_value, dedupe_key, report)
    return None


def _warn_missing_dedupe_id(event_value: dict[str, Any] | None, dedupe_key: str, report: Report) -> None:
    """Axon's ``missing_dedupe_id``, at the app's dedupe_key parameter: the event is stored
    and relayed, but nothing can tell a resend of it (a trial found it said nothing)."""
    path = f"eventValue.{dedupe_key}"
    if event_value is not None and dedupe_key in event_value:
        why = f"{dedupe_key} is {_kind(event_value[dedupe_key])}, not a string or a whole number"
    elif any(w.path == path and w.code == "plain_pii_dropped" for w in report.warnings):
        why = f"{dedupe_key} was dropped as personal data"
    else:
        why = f"eventValue has no {dedupe_key}"
    report.warn(
        path,
        "missing_dedupe_id",
        f"{why}, so the app's dedupe_key gives this event no dedupe id: it cannot be deduplicated "
        "(a resend is stored again)",
    )


def _kind(value: object) -> str:
    """What a JSON value that is no dedupe id is: "an array", "a number with a decimal point"..."""
    if isinstance(value, float):
        return "a number with a decimal point"
    return "a boolean" if isinstance(value, bool) else _JSON_KINDS.get(type(value), "an object")


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
    return _not_read(_EMPTY_BODY if not body.strip() else unreadable(body, exc))


def _not_read(problem: Problem) -> InAppCheck:
    """AppsFlyer's answer to a body not read as JSON, which counts no event received."""
    return InAppCheck(status=400, text=PARSE_FAILED, problems=[problem], warnings=[], received=0)
