"""The rules on the fields of an AppsFlyer in-app event that identify a device or a person:
the IP address, the device ids, the customer user id and the hashed personal data (a plain
value is normalised and hashed here, never kept)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from capigate.addresses import NOT_AN_ADDRESS, address_kind, not_an_address
from capigate.appsflyer.context import DROP, Context, Rule
from capigate.identity import (
    InvalidIdentifier,
    contains_email,
    hash_email,
    hash_name,
    is_international_phone,
    is_sha256_hex,
    normalise_phone,
    not_possible_phone,
    sha256_hex,
    trunk_prefix_removed,
)

__all__ = ["IDENTIFIER_RULES", "PLAIN_HASHERS", "SEND_HASHED", "personal_in_customer_user_id"]

_HEX = re.compile(r"[0-9A-Fa-f]{32,}")
_NAME = re.compile(r"[^\W\d_](?:[^\W\d_]|[ '\u2019.\-])*")
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(r"\.".join([_OCTET] * 4))
SEND_HASHED: Final = "send email and phone hashed, in the top-level email_hashed and phone_number_hashed"
_ZERO_UUID: Final = "00000000-0000-0000-0000-000000000000"
_SHA256_OF_EMPTY: Final = sha256_hex("")


def _ip(key: str, value: str, ctx: Context) -> str:
    """The address, trimmed: spaces around it are left out, as Axon's client_ip_address's are."""
    text = value.strip()
    kind = address_kind(text) if _IPV4.fullmatch(text) else NOT_AN_ADDRESS
    if kind == NOT_AN_ADDRESS:
        why, held = not_an_address(text) if text else ("it is only spaces", "")
        if why and ":" not in held:  # an IPv4 address with a port, or a list: "8.8.8.8:80" was told IPv6
            message = f"ip is not an IPv4 address: {why}"
        elif ":" in text:
            message = "ip must be an IPv4 address; AppsFlyer does not take IPv6"
        else:
            message = "ip is not an IPv4 address (such as 203.0.113.7)"
        ctx.report.error(key, "invalid_ip", message)
        return value
    elif kind is not None:
        ctx.report.warn(
            key,
            "non_public_ip",
            f"ip is {kind}, not the device's public address: send the device's address, which AppsFlyer uses for geo",
        )
    return text


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


def personal_in_customer_user_id(value: str) -> tuple[str, str] | None:
    """What personal data ``value`` is, as customer_user_id, and where it is sent hashed; None
    for an id. The one rule: ingest drops such a value, and so does a refused or dropped body
    as the journal keeps it (capigate/kept.py)."""
    if contains_email(value):
        return "an email address", "the email hashed in email_hashed"
    if is_international_phone(value):
        return "a phone number", "the phone hashed in phone_number_hashed"
    return None


def _customer_user_id(key: str, value: str, ctx: Context) -> Any:
    found = personal_in_customer_user_id(value)
    if found is None:
        return value
    held, hashed_in = found
    ctx.report.warn(
        key,
        "pii_in_customer_user_id",
        f"customer_user_id holds {held}: it was dropped, never stored or relayed; use an internal user id, "
        f"and send {hashed_in}",
    )
    return DROP


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
        like = "+16505551212" if key == "phone_number_e164_hashed" else "16505551212"
        ctx.report.warn(
            key,
            "phone_without_country_code",
            f"{key} has no country code (+ or 00) and the body no eventValue.af_country: its digits were hashed "
            f"as sent, and will only match if they include the country code (AppsFlyer expects the number in "
            f"international form, like {like})",
        )
    elif not phone.possible:
        ctx.report.warn(key, "phone_not_possible", not_possible_phone(key))
    elif phone.trunk_prefix_removed:
        ctx.report.warn(key, "phone_trunk_prefix_removed", trunk_prefix_removed(key))
    return sha256_hex(phone.digits if key == "phone_number_hashed" else "+" + phone.digits)


IDENTIFIER_RULES: Final[dict[str, Rule]] = {
    "ip": _ip,
    "idfa": _apple_id,
    "idfv": _apple_id,
    "advertising_id": _zeroed,
    "customer_user_id": _customer_user_id,
    **{name: _hashed for name in (*PLAIN_HASHERS, *_PHONES)},
}
