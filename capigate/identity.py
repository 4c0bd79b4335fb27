"""Normalising and hashing personal identifiers, so that plain PII never goes further.

One place decides how an email or a phone number is normalised before SHA-256; the server,
the SDK and the CLI all call these functions.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import phonenumbers

__all__ = [
    "InvalidIdentifier",
    "contains_email",
    "hash_email",
    "hash_name",
    "hash_phone",
    "hash_phone_checked",
    "hash_phone_e164",
    "is_sha256_hex",
    "normalise_email",
    "normalise_phone",
    "sha256_hex",
]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE_NOISE = re.compile(r"[\s().\-/]")


class InvalidIdentifier(ValueError):
    """The value cannot be what it claims to be; the message never repeats the value."""


def is_sha256_hex(value: str) -> bool:
    return len(value) == 64 and _HEX64.fullmatch(value) is not None


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def contains_email(text: str) -> bool:
    """Whether ``text`` holds something shaped like an email address (local@domain.tld)
    anywhere in it: the same shape ``normalise_email`` accepts, found inside free text."""
    return "@" in text and _EMAIL.search(text) is not None


def normalise_email(raw: str) -> str:
    email = raw.strip().lower()
    if not _EMAIL.fullmatch(email):
        raise InvalidIdentifier("not an email address (expected local@domain.tld)")
    return email


@lru_cache(maxsize=65536)
def _parse_phone(raw: str, region: str | None) -> tuple[str, bool]:
    """``normalise_phone``'s answer. Not cached: a cache would keep plain phone numbers in memory."""
    text = _PHONE_NOISE.sub("", raw.strip())
    if text.startswith("00"):
        text = "+" + text[2:]
    elif not text.startswith("+") and region is None:
        # Digits without "+" are taken to include the country code (AppLovin's and
        # AppsFlyer's normalised form, e.g. 16505551212).
        text = "+" + text
    if not text.lstrip("+").isdigit():
        raise InvalidIdentifier("not a phone number (only digits, spaces and +()-. allowed)")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier(f"not a phone number ({_PARSE_REASONS.get(exc.error_type)})") from None
    national = "0" * (number.number_of_leading_zeros or 0) if number.italian_leading_zero else ""
    national += str(number.national_number)
    return f"{number.country_code or 0}{national}", phonenumbers.is_possible_number(number)


_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a number",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


def normalise_phone(raw: str, default_region: str | None = None) -> tuple[str, bool]:
    """Digits with country code and no '+' (``16505551212``), and whether the number is
    possible for its country. A number without '+' or '00' is read in ``default_region``
    (ISO 3166 alpha-2) when given, else as already starting with its country code.
    Raises InvalidIdentifier when it cannot be a phone number."""
    return _parse_phone(raw, default_region)


def _given_hash(raw: str) -> str | None:
    """A value sent already hashed (64 hex digits, spaces around it ignored), lower-cased;
    None for anything else. Every hash_* function passes such a value through."""
    text = raw.strip()
    return text.lower() if is_sha256_hex(text) else None


def hash_email(raw: str) -> str:
    """SHA-256 of the trimmed, lower-cased email; a 64-hex value is taken as already hashed."""
    return _given_hash(raw) or sha256_hex(normalise_email(raw))


def hash_phone(raw: str, default_region: str | None = None) -> str:
    """SHA-256 of the digits-with-country-code form (AppLovin, AppsFlyer ``phone_number_hashed``)."""
    return hash_phone_checked(raw, default_region)[0]


def hash_phone_checked(raw: str, default_region: str | None = None) -> tuple[str, bool]:
    """``hash_phone`` and whether the number is possible for its country, from one parse.

    A value sent already hashed cannot be checked: it counts as possible."""
    given = _given_hash(raw)
    if given is not None:
        return given, True
    digits, possible = normalise_phone(raw, default_region)
    return sha256_hex(digits), possible


def hash_phone_e164(raw: str, default_region: str | None = None) -> str:
    """SHA-256 of the E.164 form ``+16505551212`` (AppsFlyer ``phone_number_e164_hashed``)."""
    return _given_hash(raw) or sha256_hex("+" + normalise_phone(raw, default_region)[0])


def hash_name(raw: str) -> str:
    """SHA-256 of the trimmed, lower-cased first or last name."""
    return _given_hash(raw) or sha256_hex(raw.strip().lower())
