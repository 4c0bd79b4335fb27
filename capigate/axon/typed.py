"""The typed ingest path of Axon batches: the body decoded once, from bytes, into strict Structs.

A strict variant of each wire Struct of ``schema.py`` is derived for each profile: the same
fields and constraints, no unknown field (``forbid_unknown_fields``), no ``null`` in an
optional field (absent and null then differ, as they do for the rules), and numbers kept as
sent (int or float). Each event name of the profile has its own event Struct, tagged by the
name, whose ``data`` has that name's schema (or is null, as the name requires). A clean batch
is thereby checked in C by one ``decode``, the name → data rule included; the rules msgspec
cannot express (identifiers, codes, time, hashing) then read Struct attributes in one loop
per event, with the functions of ``rules.py``.

Anything else — malformed shapes, unknown keys, explicit nulls, any problem — goes to the
slow path, ``rules.check_batch`` on the decoded JSON, which walks the body and reports every
problem at its path. Both paths give the same answers (tests/test_axon_typed.py).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import types
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Final, Union, get_args, get_origin

import msgspec
from msgspec import Meta, Struct

from capigate.axon import rules
from capigate.axon.body import MAX_BATCH, events_received
from capigate.axon.profiles import Profile
from capigate.axon.schema import DATA_SCHEMAS, AxonBatch, Item, ServerEvent
from capigate.axon.user_data import USER_FIELDS, check_user_data
from capigate.checking import Report, has_edge_spaces, is_blank_dedupe_id
from capigate.duplicates import colons_differ, may_repeat, repeated_keys
from capigate.epoch import looks_like_seconds
from capigate.errors import Problem
from capigate.events import NewEvent
from capigate.identity import holds_international_phone, payload_hides_at, payload_holds_at_entity
from capigate.iso import CURRENCY_CODES
from capigate.matchkeys import axon_match_keys

__all__ = ["BodyCheck", "check_body", "path_differences"]

_decode_any: Final = msgspec.json.Decoder().decode
_encode: Final = msgspec.json.Encoder().encode
_encode_into: Final = msgspec.json.Encoder().encode_into


class BodyCheck(rules.BatchCheck):
    __slots__ = ("received", "typed")

    def __init__(
        self,
        events: list[NewEvent] | None = None,
        report: Report | None = None,
        *,
        received: int = 0,
        typed: bool = False,
    ) -> None:
        super().__init__(events, report)
        self.received = received  # events in the body's ``events`` array, 0 if it has none
        self.typed = typed  # checked by the typed path (else by the slow path)


def check_body(body: bytes, profile: Profile, *, source: str, now_ms: int, test_tag: str | None = None) -> BodyCheck:
    """The events of ``body`` ready to store, or every problem; raises what the untyped JSON
    decoder raises when ``body`` cannot be read at all (msgspec.DecodeError, RecursionError)."""
    spec = _spec(profile)
    try:
        batch = spec.decoder.decode(body)
    except msgspec.DecodeError:  # ValidationError included; the slow path's decode says which
        return _slow(body, profile, source, now_ms, test_tag)
    checked = _typed(body, batch.events, profile, spec, source, now_ms, test_tag)
    if checked is None:
        return _slow(body, profile, source, now_ms, test_tag)
    if _CROSSCHECK:
        _crosscheck(body, profile, now_ms, checked)
    return checked


def path_differences(body: bytes, profile: Profile, *, now_ms: int, typed: BodyCheck | None = None) -> list[str]:
    """What the typed path answers for ``body`` and the slow path does not (empty when the
    typed path hands the body to the slow path). No value is quoted: paths, codes, the rules'
    messages (which never show a personal value), event names, and whether payloads are equal."""
    if typed is None:
        try:
            batch = _spec(profile).decoder.decode(body)
        except msgspec.DecodeError:
            return []
        typed = _typed(body, batch.events, profile, _spec(profile), "src", now_ms, None)
        if typed is None:
            return []
    slow = _slow(body, profile, "src", now_ms, None)
    out = []
    if typed.received != slow.received:
        out.append(f"received: {typed.received} != {slow.received}")
    for kind in ("problems", "warnings"):
        mine = [(p.path, p.code, p.message) for p in getattr(typed.report, kind)]
        theirs = [(p.path, p.code, p.message) for p in getattr(slow.report, kind)]
        if mine != theirs:
            out.append(f"{kind}: {mine} != {theirs}")
    if len(typed.events) != len(slow.events):
        out.append(f"events: {len(typed.events)} != {len(slow.events)}")
    for i, (a, b) in enumerate(zip(typed.events, slow.events, strict=False)):
        if (a.name, a.event_time_ms, a.dedupe_id, a.match_keys, a.transaction_id) != (
            b.name, b.event_time_ms, b.dedupe_id, b.match_keys, b.transaction_id
        ):  # fmt: skip
            out.append(
                f"events[{i}]: {a.name} != {b.name} or their time, dedupe_id, match keys or transaction_id differ"
            )
        if _decode_any(a.payload) != _decode_any(b.payload):
            out.append(f"events[{i}].payload differs")
    return out


# A directory: every body the typed path accepts is also checked by the slow path, and a
# line per body written there ("same", or the differences): tests/test_axon_typed.py runs
# the Axon test modules with it set. Unset (always, in production): nothing is done.
_CROSSCHECK = os.environ.get("CAPIGATE_AXON_CROSSCHECK")


def _crosscheck(body: bytes, profile: Profile, now_ms: int, typed: BodyCheck) -> None:
    differences = path_differences(body, profile, now_ms=now_ms, typed=typed)
    line = "same" if not differences else "; ".join(differences)
    with open(os.path.join(str(_CROSSCHECK), f"{os.getpid()}.log"), "a", encoding="utf-8") as out:
        out.write(f"{profile.name}: {line}\n")


def _slow(body: bytes, profile: Profile, source: str, now_ms: int, test_tag: str | None) -> BodyCheck:
    decoded = _decode_any(body)
    check = rules.check_batch(decoded, profile, source=source, now_ms=now_ms, test_tag=test_tag)
    if may_repeat(body, _encode(decoded)):  # a key given twice, maybe: said after the rules, as _typed says it
        repeated_keys(body, "", check.report, top="events")
    return BodyCheck(events=check.events, report=check.report, received=events_received(decoded))


def _typed(
    body: bytes, events: list[Any], profile: Profile, spec: _Spec, source: str, now_ms: int, test_tag: str | None
) -> BodyCheck | None:
    """The batch checked from its Structs, or None when any rule finds a problem (the slow
    path then reports them all, in its order)."""
    result = BodyCheck(received=len(events), typed=True)
    report = result.report
    buffer = bytearray(_PAYLOAD_BYTES)  # each payload is encoded into it: no growing from a small buffer
    # The least ``body`` may take without a repeated key (_said_repeated): '{"events":[', the
    # commas and ']}' and each event's payload, as its user_data was sent.
    least = len(events) + 12
    for i, event in enumerate(events):
        path = _EVENT_PATHS[i]  # the decoder took at most MAX_BATCH events
        name = _NAMES[type(event)]  # the event's name: its tag picked its Struct type
        # Its fields in one call: from compiled code, each attribute read alone costs as much as a rule.
        fields_ = _astuple(event)
        user, data, dedupe_id, mpd = fields_[_USER], fields_[_DATA], fields_[_DEDUPE_ID], fields_[_MPD]
        shorter = _data_clean(fields_, name, path, profile, spec, report, now_ms)
        if shorter < 0:
            return None
        if spec.restricted and not _allowed(event, spec):
            return None
        match_keys = axon_match_keys(user, dedupe_id is not None)  # as sent: before hashing
        normalised = check_user_data(user, path, profile, report, name)
        if not report.ok:
            return None
        if mpd is not None and _MPD_TIMES(mpd) != _NO_TIMES:  # one C call: most send no timestamp
            _mpd_timestamps(mpd, path, report)
        if is_blank_dedupe_id(dedupe_id) or rules.holds_nul(dedupe_id) or has_edge_spaces(dedupe_id):
            return None  # the slow path drops a blank one, refuses one holding NUL, warns of spaces
        if dedupe_id is None and profile.dedupe_id_expected:
            report.warn(
                f"{path}.dedupe_id", "missing_dedupe_id", "without a dedupe_id this event cannot be deduplicated"
            )
        for key, value in normalised.items():
            # A hash (hex) or a part of the value sent (trimmed, upper-cased letters): the value
            # sent took at least its length and the quotes, the one stored its length exactly
            # and the quotes, or no more than the sent one's bytes beyond its length.
            least += len(getattr(user, key)) - len(value)
            setattr(user, key, value)
        _encode_into(event, buffer)  # truncates the buffer to the payload, keeping its memory
        payload = bytes(buffer)
        least += len(payload) - shorter
        # An email address in a defined field, maybe: rules.py decides. The scans of
        # identity.payload_may_hold_email written out, not a call into an interpreted module
        # on every event.
        if _AT in payload:
            return None
        hidden = _PERCENT in payload or _UTF8_EF in payload  # the usual payload: False, two memchr
        # An "&" is in many a payload (a URL's query, "Apparel & Accessories"): what follows
        # each is looked at then, the search for every hidden form costing 10 µs on 1 KB.
        entity = _AMP in payload and payload_holds_at_entity(payload)
        if (hidden or entity) and payload_hides_at(payload):
            return None
        # A phone number in international form in a string of the event, maybe: rules.py
        # decides (without_phones in an identifier of rules.PHONE_FIELDS, the last guard
        # anywhere else). Read in the payload, where phone is hashed by now: the usual one holds
        # no "+" before a digit, nor the bytes of the forms identity.international_phone reveals
        # (a "%2" of a percent-encoded "+" or space, a full-width form: its UTF-8 starts with
        # 0xEF), told by the scans above; then its strings are read (_phone_in_strings). A
        # "00" form is told by each string's first two characters as sent (_check_data reads an
        # item's): a search of the payload for '"00' cost 5.7 % of the rules.
        fields = _FIELDS.get(type(data), _NO_FIELDS)
        if (
            (_PLUS in payload and _plus_then_digit(payload))
            or (hidden and (_UTF8_EF in payload or payload.find(_PERCENT_2) != -1))
        ) and _phone_in_strings(event):
            return None
        if (
            _phone_00(dedupe_id)
            or _user_phone_00(user)
            or (data is not None and _data_phone_00(data))
            or (mpd is not None and (_phone_00(mpd.campaign_id) or _phone_00(mpd.creative_set_id)))
        ):
            return None
        result.events.append(
            NewEvent(
                api="axon",
                source=source,
                name=name,
                event_time_ms=fields_[_EVENT_TIME],
                dedupe_id=dedupe_id,
                payload=payload,
                test_tag=test_tag,
                match_keys=match_keys,
                transaction_id=_field(data, fields, "transaction_id"),
            )
        )
    if len(body) - least >= _LEAST_REPEAT:
        _said_repeated(body, result)
    return result


def _said_repeated(body: bytes, result: BodyCheck) -> None:
    """Says each key ``body`` gives twice in one object (duplicates.repeated_keys), when a
    count of colons says one may be (duplicates.may_repeat). Called when ``body`` is longer
    than the least it may take without one by a repeated pair at least (``_LEAST_REPEAT``:
    its whitespace too, escapes, numbers written longer than msgspec writes them, a float
    written shorter: ``_shorter``): a clean compact body costs only its lengths."""
    colons = 1  # events'
    for event in result.events:
        colons += event.payload.count(58)
    if colons_differ(body, colons):
        repeated_keys(body, "", result.report, top="events")


def _shorter(struct: Any) -> int:
    """How many bytes fewer than msgspec encodes them a body may write the floats of ``struct``
    (a strict Struct) in: an integral float's trailing zeros (``1e2`` is encoded ``100.0``, a
    byte per zero), _LEAST_REPEAT for any below 0.01 (``1e-3``, ``0.001``) or past 1e16 (rare:
    the body is counted). Any other float is encoded in the fewest bytes it can be written in:
    its shortest digits, the point where they need it. Its fields that may hold a float, and
    the Structs that may, are _FLOATS's and _HOLDING_FLOATS's, derived from the schema."""
    kind = type(struct)
    shorter = 0
    for key in _FLOATS[kind]:
        value = getattr(struct, key)
        if type(value) is float and (value.is_integer() or -0.01 < value < 0.01):
            shorter += _float_shorter(value)
    for key in _HOLDING_FLOATS[kind]:
        value = getattr(struct, key)
        if type(value) is list:
            for item in value:
                shorter += _shorter(item)
        elif value is not None:
            shorter += _shorter(value)
    return shorter


def _float_shorter(value: float) -> int:
    """_shorter of an integral float, or of one below 0.01."""
    if not value.is_integer() or not -1e16 < value < 1e16:
        return 0 if value == 0 else _LEAST_REPEAT
    number = int(value)
    zeros = 0
    while number and number % 10 == 0:
        number //= 10
        zeros += 1
    return zeros


def _field(data: Any, fields: frozenset[str], key: str) -> Any:
    """``data``'s ``key`` (None when absent), given ``fields``, those of its type: getattr's
    default costs the AttributeError raised and cleared, a thousand instructions, where most
    events' data lack most of the fields asked for."""
    return getattr(data, key) if key in fields else None


def _phone_00(value: str | None) -> bool:
    """Whether ``value`` starts with "00", as a phone number's "00" form does (and many ids),
    and is one (identity.holds_international_phone: a valid number so read). Told by its
    length (two zeros and seven digits at least) and its first two characters as ords, which
    mypyc reads in place: ``startswith`` cost three times as much, 2 % of the rules."""
    if value is None or len(value) <= 8:
        return False
    first = ord(value[0])
    if first == _ZERO:
        return ord(value[1]) == _ZERO and holds_international_phone(value)
    # "tel:00…", "sms:00…", " 00…": read as the slow path reads them (a re-trial found them
    # stored plain); holds_international_phone tells the usual such id at once (no "00").
    # Told by ords, as above: a set's lookup, or a call for each id starting "s" (an "sku-1"),
    # cost 1.1 % of the rules.
    low = first | _LOWER
    return (
        first <= _SPACE
        or (ord(value[3]) == _COLON and (low == _T or low == _S))  # noqa: SIM109 (two int compares)
        or (first > _ASCII and chr(first).isspace())
    ) and holds_international_phone(value)


_ZERO: Final = 48  # ord("0")
_SPACE: Final = 32  # ord(" "), and the control characters below it (a tab)
_COLON: Final = 58  # ord(":"): "tel:", "sms:"
_LOWER: Final = 32  # the bit that makes an ASCII letter lower-case
_T: Final = 116  # ord("t")
_S: Final = 115  # ord("s")
_ASCII: Final = 127


def _user_phone_00(user: Any) -> bool:
    """``_phone_00`` of each id of ``user`` (its IP address and codes are refused as they are
    not; email and phone are hashed by now; a "00" form is not read in the user agent nor the
    os: rules.DESCRIPTIVE_TEXT), read in one call (each attribute read alone costs as much as
    the test). Its positions are user_data.USER_FIELDS', whose order that module asserts."""
    u = _astuple(user)
    return (
        _phone_00(u[3])  # aleid
        or _phone_00(u[4])  # axwrt
        or _phone_00(u[5])  # alart
        or _phone_00(u[6])  # client_id
        or _phone_00(u[7])  # user_id
        or _phone_00(u[11])  # zip
        or _phone_00(u[12])  # sid
        or _phone_00(u[13])  # ifa
        or _phone_00(u[14])  # idfv
    )


def _data_phone_00(data: Any) -> bool:
    """``_phone_00`` of each id of ``data`` and its search_term (its items' are
    ``_check_data``'s; not sign_up's method, rules.DESCRIPTIVE_TEXT)."""
    for key in _DATA_IDS[type(data)]:  # noqa: SIM110
        if _phone_00(getattr(data, key)):
            return True
    return False


def _phone_in_strings(event: Any) -> bool:
    """Whether a string of ``event`` holds a phone number in international form
    (identity.holds_international_phone), each read as rules.py's last guard reads it: the
    typed event's strings, as normalised, are the strings of its payload."""
    if _holds_phone(event.dedupe_id) or _holds_phone(event.event_source_url):
        return True
    if _phone_in_struct(event.user_data):
        return True
    mpd = event.measurement_partner_data
    if mpd is not None and _phone_in_struct(mpd):
        return True
    data = event.data
    if data is None:
        return False
    for value in _astuple(data):
        if type(value) is list:
            for item in value:
                if _phone_in_struct(item):
                    return True
        elif _holds_phone(value):
            return True
    return False


def _phone_in_struct(struct: Any) -> bool:
    """Whether a string field of ``struct`` (user_data, an item, measurement_partner_data)
    holds a phone number in international form."""
    for value in _astuple(struct):  # noqa: SIM110
        if _holds_phone(value):
            return True
    return False


def _holds_phone(value: Any) -> bool:
    return type(value) is str and holds_international_phone(value)


_astuple: Final = msgspec.structs.astuple
assert tuple(f.name for f in msgspec.structs.fields(Item)) == (
    "item_id", "item_name", "item_variant_id", "price", "image_url", "item_category_id", "quantity", "affiliation",
    "discount", "item_brand", "item_category", "item_category2", "item_category3", "item_category4", "item_category5",
)  # fmt: skip


_PAYLOAD_BYTES: Final = 2048  # more than a typical event's payload
_AT: Final = ord("@")  # an int: bytes' ``in`` tries a needle as an int first, and a bytes one raises there
_PLUS: Final = ord("+")  # likewise: what a phone number in international form starts with
# A digit (of another script too) or a quote: what _plus_then_digit looks for after a "+".
_DIGIT_OR_QUOTE: Final = re.compile(rb'[0-9\x80-\xff"]')


def _plus_then_digit(payload: bytes) -> bool:
    """Whether a "+" has, later in the same JSON string, a digit: what each + form holds (a "+"
    of a URL's query between words, "?q=red+shoes", holds none). Each stretch after a "+" is
    read once: a search for '\\+[^"]*?[0-9]' started again at every "+" of a long run, and a
    string of 20,000 of them held the event loop 2.3 s (quadratic)."""
    start = payload.find(b"+")
    while start != -1:
        found = _DIGIT_OR_QUOTE.search(payload, start + 1)
        if found is None:
            return False
        if payload[found.start()] != 0x22:  # not the string's closing quote: a digit
            return True
        start = payload.find(b"+", found.end())
    return False


_PERCENT: Final = ord("%")  # likewise: the bytes a hidden at sign starts with (identity.payload_hides_at)
_UTF8_EF: Final = 0xEF
_AMP: Final = ord("&")  # likewise: an at sign as an HTML character reference ("&#64;", "&commat;")


# Searched with find, once a "%" is found: ``in`` tries a bytes needle as an int first, and the
# TypeError it raises and clears costs thousands of instructions (the ints above are memchr
# calls). A search for '"00' (a "00" form of a number) cost 5,500 instructions an event on a
# purchase's payload, 5.7 % of decode + rules: "0" and '"' are everywhere in it.
_PERCENT_2: Final = b"%2"
_EVENT_PATHS: Final = tuple(f"events[{i}]" for i in range(MAX_BATCH))  # made once, not per event


def _allowed(event: Any, spec: _Spec) -> bool:
    """No field the profile forbids (the Structs hold every field of the API)."""
    if spec.no_mpd and event.measurement_partner_data is not None:
        return False
    user = event.user_data
    for key in spec.forbidden_user_fields:  # noqa: SIM110
        if getattr(user, key) is not None:
            return False
    return True


def _data_clean(
    event: tuple[Any, ...], name: str, path: str, profile: Profile, spec: _Spec, report: Report, now_ms: int
) -> int:
    """The rules on data, event_time and event_source_url that the Structs cannot express, in
    rules.py's order (whether data may or must be null, its schema: the event's Struct type),
    on an event's fields (_EVENT_FIELDS); -1 when the slow path must decide, else how many bytes
    fewer than msgspec encodes them the body may write the event's floats in (_shorter)."""
    data = event[_DATA]
    shorter = 0
    if data is not None:
        shorter = _check_data(name, data, f"{path}.data", report)
        if shorter < 0:
            return -1
    mpd = event[_MPD]
    if mpd is not None:
        shorter += _shorter(mpd)
    rules._check_event_time(event[_EVENT_TIME], path, now_ms, report)
    url, esi = event[_SOURCE_URL], event[_USER].esi
    clean = spec.clean_urls.get((url, esi))  # most events of a site repeat a few URLs
    if clean is None:
        clean = _url_clean(url, esi, profile, spec.clean_urls)
    return shorter if clean else -1


_MAX_URLS: Final = 4096


def _url_clean(url: str, esi: str, profile: Profile, known: dict[tuple[str, str], bool]) -> bool:
    """Whether rules.py has nothing to say about ``url``: no problem, no warning. Remembered
    for the profile (``known``), which _data_clean reads first."""
    scratch = Report()
    rules.check_source_url(url, esi, "", profile, scratch)
    clean = scratch.ok and not scratch.warnings
    if len(known) >= _MAX_URLS:
        known.clear()
    known[url, esi] = clean
    return clean


def _check_data(name: str, data: Any, path: str, report: Report) -> int:
    """The warnings of rules._check_data on a typed data object, which already matches its
    schema (absent fields read None: a null went to the slow path); -1 on any error, else
    _shorter of data, read here with the fields checked."""
    fields = _FIELDS[type(data)]
    shorter = 0
    for key in _FLOATS[type(data)]:
        number = getattr(data, key)
        if type(number) is float and (number.is_integer() or -0.01 < number < 0.01):
            shorter += _float_shorter(number)
    for key in rules._RECOMMENDED.get(name, ()):
        if _field(data, fields, key) is None:
            report.warn(f"{path}.{key}", "missing_recommended", f"`{key}` is recommended for `{name}`")
    currency = _field(data, fields, "currency")
    if currency is not None and currency not in CURRENCY_CODES:  # a known code is upper-case already
        if currency.upper() == currency or currency.upper() not in CURRENCY_CODES:
            return -1
        rules.warn_currency_case(currency, f"{path}.currency", report)
        data.currency = currency.upper()  # stored upper-cased, as the slow path stores it
    quantity_required = name in rules._QUANTITY_REQUIRED
    value = _field(data, fields, "value")
    amounts = None  # price x quantity of each of data.items, when value and every price are given
    for list_key in _ITEM_LISTS[type(data)]:
        items = getattr(data, list_key)
        if items is None:
            continue
        if not items and list_key == "items":
            rules.warn_empty_items(name, f"{path}.items", report)
        summed: list[float] | None = [] if list_key == "items" and value is not None else None
        for i, item in enumerate(items):
            # Its fields in one call (each attribute read alone costs as much as a test of it).
            fields_ = _astuple(item)
            quantity = fields_[6]
            if quantity_required and quantity is None:
                return -1
            category = fields_[5]
            if type(category) is str and not category.isdigit():
                return -1
            # A phone number's 00 form in its ids, not its descriptive text (rules.DESCRIPTIVE_TEXT):
            # rules.py drops it.
            variant = fields_[2]
            if _phone_00(fields_[0]) or _phone_00(variant):
                return -1
            price, name_, image_url, discount = fields_[3], fields_[1], fields_[4], fields_[8]
            if type(price) is float and (price.is_integer() or -0.01 < price < 0.01):
                shorter += _float_shorter(price)
            if type(discount) is float and (discount.is_integer() or -0.01 < discount < 0.01):
                shorter += _float_shorter(discount)
            message = _MISSING_ITEM_FIELDS[
                (
                    name_ is None,
                    variant is None,
                    price is None,
                    image_url is None,
                    category is None,
                )
            ]
            if message is not None:
                place = (path, list_key, i, message)
                report.warnings.append(_ITEM_WARNINGS.get(place) or _item_warning(place))
            if (price is not None and price < 0) or quantity == 0:
                rules.warn_item_amounts(price, quantity, f"{path}.{list_key}[{i}]", report)
            if summed is not None:  # summed here, not in a second walk of the items
                if price is None:
                    summed = None
                else:
                    summed.append(float(price) * float(quantity if quantity is not None else 1))
        if list_key == "items":
            amounts = summed
    if value is not None and value < 0:
        rules.warn_negative_value(value, path, report)
    if amounts:  # none for an empty list: empty_items says it
        _check_items_value(amounts, value, path, report)
    return shorter


# rules._ITEM_RECOMMENDED, in its order: which are missing -> rules.py's message (None: none).
_ITEM_FIELDS: tuple[str, ...] = rules._ITEM_RECOMMENDED
assert _ITEM_FIELDS == ("item_name", "item_variant_id", "price", "image_url", "item_category_id")
_MISSING_ITEM_FIELDS: Final[dict[tuple[bool, ...], str | None]] = {
    flags: rules._missing_item_message(frozenset(k for k, f in zip(_ITEM_FIELDS, flags, strict=True) if f))
    if any(flags)
    else None
    for flags in itertools.product((False, True), repeat=5)
}


def _item_warning(key: tuple[str, str, int, str]) -> Problem:
    """The missing_recommended warning of item ``i`` of ``list_key`` at ``path`` (``key``, with
    its message), made once per place and message, not per item (nearly every item of a shop
    lacks a field): a Problem is immutable, and building its path cost more than the rest of
    the item's checks. _check_data reads _ITEM_WARNINGS first."""
    path, list_key, i, message = key
    if len(_ITEM_WARNINGS) >= _MAX_ITEM_WARNINGS:
        _ITEM_WARNINGS.clear()
    warning = _ITEM_WARNINGS[key] = Problem(f"{path}.{list_key}[{i}]", "missing_recommended", message)
    return warning


_ITEM_WARNINGS: Final[dict[tuple[str, str, int, str], Problem]] = {}
_MAX_ITEM_WARNINGS: Final = 4096


def _check_items_value(amounts: list[float], value: Any, path: str, report: Report) -> None:
    """rules._check_items_value on the items' amounts (price x quantity, quantity 1 when absent)."""
    total = sum(amounts)  # as rules.py sums them: the same float, the same message
    if not math.isclose(total, float(value), rel_tol=1e-6, abs_tol=0.005):
        report.warn(
            f"{path}.value",
            "value_mismatch",
            f"value {value} differs from the sum of price x quantity ({round(total, 2)}); shipping and tax are excluded",
        )


_MPD_TIMES: Final = attrgetter(*rules._MPD_TIMESTAMPS)
_NO_TIMES: Final = (None,) * len(rules._MPD_TIMESTAMPS)


def _mpd_timestamps(mpd: Any, path: str, report: Report) -> None:
    for key in rules._MPD_TIMESTAMPS:
        ts = getattr(mpd, key)
        if ts is not None and looks_like_seconds(ts):
            report.warn(
                f"{path}.measurement_partner_data.{key}",
                "time_in_seconds",
                f"{key} looks like seconds; timestamps are in milliseconds",
            )


# --- the strict Structs, derived from schema.py once per profile ---------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    decoder: msgspec.json.Decoder[Any]
    forbidden_user_fields: tuple[str, ...]
    no_mpd: bool
    restricted: bool  # forbidden_user_fields or no_mpd: the profile forbids a field of the API
    clean_urls: dict[tuple[str, str], bool]  # see _url_clean


_ITEM_LISTS: Final[dict[type, tuple[str, ...]]] = {}  # a strict data type -> its lists of items
_FIELDS: Final[dict[type, frozenset[str]]] = {}  # a strict data type -> its fields' names
_DATA_IDS: Final[dict[type, tuple[str, ...]]] = {}  # a strict data type -> its ids and search_term (_data_phone_00)
_NO_FIELDS: Final[frozenset[str]] = frozenset()  # data null
_NAMES: Final[dict[type, str]] = {}  # a strict event type -> its tag (__struct_config__ makes an object per read)
_FLOATS: Final[dict[type, tuple[str, ...]]] = {}  # a strict type -> its fields that may hold a float (_shorter)
_HOLDING_FLOATS: Final[dict[type, tuple[str, ...]]] = {}  # a strict type -> its fields whose Structs may hold one


def _struct_kinds(kind: type[Struct], seen: set[type]) -> set[type]:
    """``kind`` and every Struct type its fields may hold, at any depth."""
    if kind not in seen:
        seen.add(kind)
        for f in msgspec.structs.fields(kind):
            for inner in _types_in(f.type):
                if isinstance(inner, type) and issubclass(inner, Struct):
                    _struct_kinds(inner, seen)
    return seen


def _types_in(tp: Any) -> list[Any]:
    """``tp`` and every type its arguments name (Annotated's base, a Union's members, a list's items)."""
    return [tp, *(t for arg in get_args(tp) for t in _types_in(arg))]


# The fields of an item that may hold a float, as _check_data reads them (fields_[3], fields_[8]).
_ITEM_FLOATS: Final = tuple(f.name for f in msgspec.structs.fields(Item) if float in _types_in(f.type))
assert _ITEM_FLOATS == ("price", "discount") == tuple(f.name for f in msgspec.structs.fields(Item))[3:9:5]

# The fewest bytes a key given twice adds to a body: the shortest key of the API, its quotes,
# a colon, a value of one byte and a comma (_said_repeated).
_LEAST_REPEAT: Final = 5 + min(
    len(f.encode_name)
    for kind in _struct_kinds(AxonBatch, set()).union(*(_struct_kinds(s, set()) for s in DATA_SCHEMAS.values() if s))
    for f in msgspec.structs.fields(kind)
)


_SPECS: Final[dict[int, tuple[Profile, _Spec]]] = {}


def _spec(profile: Profile) -> _Spec:
    """The profile's decoders, made once (by identity: hashing a Profile costs a microsecond)."""
    known = _SPECS.get(id(profile))
    if known is None or known[0] is not profile:
        known = _SPECS[id(profile)] = (profile, _new_spec(profile))
    return known[1]


def _new_spec(profile: Profile) -> _Spec:
    events = tuple(_strict_event(name, profile) for name in sorted(profile.events))
    batch = _strict(AxonBatch, {ServerEvent: Union[events]})  # type: ignore[dict-item]  # noqa: UP007
    allowed = profile.user_fields
    forbidden = tuple(k for k in USER_FIELDS if allowed is not None and k not in allowed)
    no_mpd = not profile.measurement_partner_data
    return _Spec(msgspec.json.Decoder(batch), forbidden, no_mpd, bool(forbidden) or no_mpd, {})


def _strict_event(name: str, profile: Profile) -> type[Struct]:
    """The strict ServerEvent of the events named ``name``: the name is its tag (the decoder
    picks the type by it; a name the profile lacks is no type's tag), and data has the type
    rules.py asks of such an event: null, page_view's object or null, or its schema's object."""
    data: Any = None
    if name not in profile.null_data_events:
        schema = DATA_SCHEMAS[name]
        assert schema is not None, f"{name}: an event without a data schema sends data null"
        data = _strict(schema, {})
        _ITEM_LISTS[data] = tuple(k for k in ("items", "results") if k in data.__struct_fields__)
        _FIELDS[data] = frozenset(data.__struct_fields__)
        _DATA_IDS[data] = tuple(k for k in ("transaction_id", "user_id", "coupon", "search_term") if k in _FIELDS[data])
        # _check_data reads the floats of data, and of its items (_ITEM_FLOATS), for _shorter.
        assert set(_HOLDING_FLOATS[data]) <= set(_ITEM_LISTS[data]), data
        if name == "page_view":
            data = data | None
    event = _strict(ServerEvent, {}, tag=name, data=data)
    # _data_clean reads those of data and measurement_partner_data: no other part holds one.
    assert not _FLOATS[event] and set(_HOLDING_FLOATS[event]) <= {"data", "measurement_partner_data"}, event
    assert event.__struct_fields__ == _EVENT_FIELDS, event.__struct_fields__
    _NAMES[event] = name
    return event


# A strict event's fields (its name is its tag), as _typed reads them in one astuple call.
_EVENT_FIELDS: Final = (
    "event_time", "event_source_url", "user_data", "data", "dedupe_id", "measurement_partner_data",
)  # fmt: skip
_EVENT_TIME: Final = 0
_SOURCE_URL: Final = 1
_USER: Final = 2
_DATA: Final = 3
_DEDUPE_ID: Final = 4
_MPD: Final = 5


def _strict(kind: type[Struct], swap: dict[type, type], *, tag: str | None = None, data: Any = None) -> type[Struct]:
    """``kind`` made strict: optional fields not nullable (default None all the same, so an
    absent field reads None and is not encoded back), no unknown field, numbers as sent. With
    a ``tag``, ``kind`` is ServerEvent: its ``name`` field becomes the tag, ``data`` the type
    of its data."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in msgspec.structs.fields(kind):
        assert f.encode_name == f.name
        if tag is not None and f.name == "name":
            continue  # the tag, encoded first as name was
        kind_of = data if tag is not None and f.name == "data" else _strict_type(f.type, swap)
        if f.required:
            fields.append((f.name, kind_of))
        else:
            assert f.default is None, f"{kind.__name__}.{f.name}: only None defaults are expected"
            fields.append((f.name, kind_of, None))
    strict = msgspec.defstruct(
        f"Strict{kind.__name__}",
        fields,
        kw_only=True,
        omit_defaults=True,
        forbid_unknown_fields=True,
        gc=False,
        tag_field="name" if tag is not None else None,
        tag=tag,
    )
    _FLOATS[strict] = tuple(f[0] for f in fields if float in _types_in(f[1]))
    _HOLDING_FLOATS[strict] = tuple(
        f[0]
        for f in fields
        if any(t in _FLOATS and (_FLOATS[t] or _HOLDING_FLOATS[t]) for t in _types_in(f[1]) if isinstance(t, type))
    )
    return strict


# An integer where the schema has a float is kept as sent, within int64: a larger one goes to the
# slow path, which reads it as the float it is (its float() past ±1.8e308 raised: a 500).
_INT64: Final = (-(2**63), 2**63 - 1)


def _int64_bounds(metas: list[Any]) -> tuple[Meta, ...]:
    """The int64 bounds that ``metas`` do not set already (msgspec takes one of each)."""
    low = all(getattr(m, "ge", None) is None and getattr(m, "gt", None) is None for m in metas)
    high = all(getattr(m, "le", None) is None and getattr(m, "lt", None) is None for m in metas)
    if low and high:
        return (Meta(ge=_INT64[0], le=_INT64[1]),)
    return (Meta(ge=_INT64[0]),) if low else (Meta(le=_INT64[1]),) if high else ()


def _strict_type(tp: Any, swap: dict[type, type]) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *metas = get_args(tp)
        if base is float:
            return Union[Annotated[(int, *metas, *_int64_bounds(metas))], Annotated[(float, *metas)]]  # noqa: UP007
        return Annotated[(_strict_type(base, swap), *metas)]
    if origin in (Union, types.UnionType):
        return Union[tuple(_strict_type(a, swap) for a in get_args(tp) if a is not type(None))]  # noqa: UP007
    if origin is list:
        return list[_strict_type(get_args(tp)[0], swap)]  # type: ignore[misc]
    if tp is float:
        return Annotated[int, Meta(ge=_INT64[0], le=_INT64[1])] | float
    if isinstance(tp, type) and issubclass(tp, Struct):
        return swap.get(tp) or _strict(tp, swap)
    return tp
