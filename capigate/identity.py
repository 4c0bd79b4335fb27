"""Normalising and hashing personal identifiers, so that plain PII never goes further.

One place decides how an email or a phone number is normalised before SHA-256; the server,
the SDK and the CLI all call these functions.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from typing import Final
from urllib.parse import unquote

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

from capigate.phones import HashedPhone, NormalisedPhone

__all__ = [
    "HashedPhone",
    "InvalidIdentifier",
    "NormalisedPhone",
    "contains_email",
    "contains_international_phone",
    "hash_email",
    "hash_name",
    "hash_phone",
    "hash_phone_checked",
    "hash_phone_e164",
    "holds_international_phone",
    "international_phone",
    "is_international_phone",
    "is_sha256_hex",
    "normalise_email",
    "normalise_phone",
    "not_possible_phone",
    "payload_hides_at",
    "payload_holds_at_entity",
    "payload_may_hold_email",
    "payload_may_hold_phone",
    "revealed_email",
    "sha256_hex",
    "trunk_prefix_removed",
]

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# Something shaped like an address, for the free-text scanner (contains_email): wide on purpose,
# a look-alike is dropped as personal data. What normalise_email takes is _ADDRESS. One character
# of the local part is enough to tell one: "[^@\s]+@" searched each start of a long run before an
# at sign to its end, quadratic (a 160 KB field held the event loop 73 s).
_EMAIL = re.compile(r"[^@\s]@[^@\s]+\.[^@\s]+")
# An address normalise_email takes, lower-cased: a local part of dot-separated atoms of RFC 5322's
# characters but "/" (which a URL or a path leaves, and no mailbox provider gives out), starting
# and ending in no quote (one left over from a pair), an "@", and a domain of two labels or more
# of letters, digits and hyphens, no label starting or ending with a hyphen (RFC 1123's
# hostnames: "jane@-example.com" is none); each atom and label not empty (no "..", no dot first
# or last). Past ASCII, any character but punctuation, spaces and controls (_stray_unicode). A
# label is possessive: the hyphen looked behind gives back no character to try again.
_ATOM: Final = r"[a-z0-9!#$%&'*+=?^_`{|}~\u0080-\U0010ffff-]+"
_LABEL: Final = r"(?!-)[a-z0-9\u0080-\U0010ffff-]++(?<!-)"
_ADDRESS = re.compile(rf"(?!')(?:{_ATOM}(?:\.{_ATOM})*)(?<!')@{_LABEL}(?:\.{_LABEL})+")
# Lower-case ASCII that _ADDRESS matches: what normalise_email returns unchanged, told by a
# cheaper pattern (no character past ASCII to look at, none of the forms it reads). Possessive:
# no atom or label holds the "." or "@" after it, so none gives back a character, and the
# pattern costs what the old one (no "..", dots first or last, looked for) did. A hyphen first
# or last in a label is looked around for (30 ns; runs of letters between hyphens cost 40 more).
_NORMALISED_EMAIL: Final = re.compile(
    r"[a-z0-9_%+-]++(?:\.[a-z0-9_%+-]++)*+@(?!-)[a-z0-9-]++(?<!-)(?:\.(?!-)[a-z0-9-]++(?<!-))++"
)
# An at sign after a character of a local part and before a domain with a dot and a top-level
# label of letters, with one to three spaces or tabs after it and maybe before it ("jane @
# example.com", "jane@ example.com"): an address so written, in free text too. Spaces before
# it alone are a handle after a word in free text ("thanks @john.doe", "Gift card
# @shop.example"), an address in an email field alone (_AT_AFTER_SPACES, normalise_email's); a
# price or a word after it ("2 @ 3.50", "Coffee @ Home") none. The match is the spaces and the
# at sign alone.
_LOCAL_PART_BEHIND: Final = r"(?<=[A-Za-z0-9._%+-])"
_DOMAIN_AHEAD: Final = r"(?=(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![A-Za-z0-9-]))"
_SPACED_AT = re.compile(_LOCAL_PART_BEHIND + r"[ \t]{0,3}@[ \t]{1,3}" + _DOMAIN_AHEAD)
_AT_AFTER_SPACES = re.compile(_LOCAL_PART_BEHIND + r"[ \t]{1,3}@" + _DOMAIN_AHEAD)
# An at sign as an HTML character reference: "&#64;", "&#x40;", "&commat;" (the ";" required).
_AT_ENTITY = re.compile(r"&(?:#0*64|#[xX]0*40|commat);")
_PHONE_NOISE = re.compile(r"[\s().\-/]")


class InvalidIdentifier(ValueError):
    """The value cannot be what it claims to be; the message never repeats the value."""


_SHA256_HEX_DIGITS: Final = 64


def is_sha256_hex(value: str) -> bool:
    return len(value) == _SHA256_HEX_DIGITS and _HEX64.fullmatch(value) is not None


def sha256_hex(value: str) -> str:
    return _sha256(value.encode()).hexdigest()


_sha256: Final = hashlib.sha256


def contains_email(text: str) -> bool:
    """Whether ``text`` holds something shaped like an email address (local@domain.tld)
    anywhere in it: the same shape ``normalise_email`` accepts, found inside free text, and
    hidden too: percent-encoded once or twice (``jane%40example.com``, ``jane%2540…``, as a
    URL or a form carries one), with a full-width at sign (U+FF20), as an HTML character
    reference (``jane&#64;example.com``, ``&#x40;``, ``&commat;``), in full-width letters
    and dots (U+FF4A for ``j``, U+FF0E for ``.``, as an IME writes them: _width_folded) or
    with spaces after the at sign, and before it too, before a domain of a dot and a top-level
    label of letters (``jane @ example.com``, ``jane@ example.com``, _SPACED_AT). Spaces before it
    alone are a handle after a word (``thanks @john.doe``): none here, an address in the email
    field. An "@" before a host without a dot (``user@localhost``, ``name@example``) is none:
    ids are written so, and a real address without a dot in its domain is next to unknown."""
    if "@" in text:
        if not text.isascii():
            text = _width_folded(text)
        return _EMAIL.search(text) is not None or _spaced_at(text)
    return _hides_at(text) and _EMAIL.search(revealed_email(text)) is not None


def _hides_at(text: str) -> bool:
    return "%" in text or _FULL_WIDTH_AT in text or _SMALL_AT in text or "&#" in text or "&commat;" in text


def _spaced_at(text: str) -> bool:
    """Whether ``text`` (holding an "@") holds one with spaces after it, and maybe before it,
    as _SPACED_AT reads an address so written. Told at once for the usual text: no space
    beside an "@"."""
    return ("@ " in text or "@\t" in text or " @" in text or "\t@" in text) and _SPACED_AT.search(text) is not None


def _width_folded(text: str) -> str:
    """``text`` (not ASCII) with each run of full-width, half-width and small forms (U+FE50 to
    U+FFEF: an IME's full-width letters, at sign and dot, half-width katakana) and ideographic
    spaces (U+3000, its full-width space) made what NFKC makes it, and nothing else changed:
    an internationalised address's other letters are kept as sent (NFKC of the whole would
    change compatibility characters that spell names, which RFC 6532 advises against)."""
    return _IME_FORMS.sub(_nfkc, text)


def _nfkc(match: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", match.group())


_FULL_WIDTH_AT: Final = "\uff20"
_SMALL_AT: Final = "\ufe6b"
_MAX_DECODINGS: Final = 3
# An at sign as a payload's bytes hide it, in each form revealed_email reads: percent-encoded
# as often as it decodes, full-width (UTF-8), or an HTML character reference. Each starts with
# "%", the byte 0xEF or "&".
_HIDDEN_AT_BYTES: Final = re.compile(
    b"|".join(
        (
            b"%%(?:25){0,%d}40" % (_MAX_DECODINGS - 1),
            _FULL_WIDTH_AT.encode(),
            _SMALL_AT.encode(),
            _AT_ENTITY.pattern.encode(),
        )
    )
)


def payload_may_hold_email(payload: bytes) -> bool:
    """Whether an encoded payload may hold an email address, hidden or not: only then is it
    walked (``contains_email`` on each string). Three scans and a look after each "&" rule
    out the usual payload's hidden forms (the typed path writes them out, then calls
    ``payload_hides_at``). An at sign with spaces around it is an "@" in the payload."""
    if payload.find(b"@") != -1:
        return True
    hidden = payload.find(b"%") != -1 or payload.find(b"\xef") != -1
    return (hidden or payload_holds_at_entity(payload)) and payload_hides_at(payload)


def payload_holds_at_entity(payload: bytes) -> bool:
    """Whether an "&" of ``payload`` starts a character reference that may be an at sign
    ("&#…" or "&commat;"). Each "&" is found with memchr and the byte after it read: two
    searches of the whole payload for "&#" and "&commat;" cost a W1 purchase event 1,600
    instructions more on the typed path (a URL's query holds an "&"; bench.instructions,
    "decode + rules")."""
    at = payload.find(_AMP)
    while at != -1:
        if (at + 1 < len(payload) and payload[at + 1] == _HASH) or payload.startswith(_COMMAT, at):
            return True
        at = payload.find(_AMP, at + 1)
    return False


_AMP: Final = ord("&")
_HASH: Final = ord("#")
_COMMAT: Final = b"&commat;"


def payload_hides_at(payload: bytes) -> bool:
    """Whether a payload holds an at sign in one of the hidden forms ``revealed_email`` reads."""
    return _HIDDEN_AT_BYTES.search(payload) is not None


def revealed_email(text: str) -> str:
    """``text`` as an address hidden in it reads: its full-width forms made ASCII (NFKC,
    _width_folded: full-width letters, dots and at signs, as an IME writes them),
    percent-decoded (up to three times), its at signs written as HTML character references
    made "@", and the spaces after an at sign, and before it, before a domain (``jane @
    example.com``, ``jane@ example.com``, _SPACED_AT) left out; as it is when it hides none.
    What ``normalise_email`` reads (which also reads spaces before an at sign alone)."""
    if "@" in text:
        if not text.isascii():
            text = _width_folded(text)
    elif not _hides_at(text):
        return text
    else:
        if not text.isascii():
            text = _width_folded(text)
        for _ in range(_MAX_DECODINGS):
            if "%" not in text:
                break
            decoded = unquote(text)
            if decoded == text:
                break
            text = decoded
        if "&" in text:
            text = _AT_ENTITY.sub("@", text)
    return _SPACED_AT.sub("@", text) if _spaced_at(text) else text


def is_international_phone(text: str) -> bool:
    """Whether ``text`` is a phone number in international form (``international_phone``):
    one an id field should not hold."""
    return international_phone(text) is not None


def international_phone(text: str, *, zeros: bool = True) -> str | None:
    """The phone number in international form that ``text`` is, as ``hash_phone`` reads it
    (the digest of its ``+`` form); None for anything else: ``+`` and 7 to 15 digits,
    separators between them (``+1 (415) 555-0100``), written as a client may hide it too:
    full-width (NFKC: U+FF0B or U+FE62 for ``+``, full-width digits), percent-encoded
    (``%2B44%2020…``, up to three times), as a ``tel:``, ``tel://`` or ``sms:`` URI, with
    ``/`` or Unicode dashes (U+2010-2014, U+2212) between digits, ``(`` right after ``+``, or
    an extension after it (``;ext=5``, `` x5``, `` ext. 5``: returned without it, the number
    alone is hashed). ``00`` for ``+`` (``0044 20 7946
    0123``, full-width or percent-encoded too, after spaces or ``tel:`` too) only when
    phonenumbers finds the number so read valid (its ``+`` form is returned): ids start with
    ``00`` often (``0012345``, an order's), and digits without ``+`` or ``00`` are ids far more
    often still (an app's, an order's), kept as they are. A signed decimal number (``+51.507351``,
    a latitude; ``+12499.00``, a price: a sign, digits, one ``.``, digits) is a number, not one. The usual id is told by its first
    characters, with no regex: this runs on an Axon event's identifiers. typed.py finds every
    form recognised here by its payload's bytes (``+``, ``%2``, 0xEF) or an identifier's first
    characters (``00``; a space, ``tel:`` or ``sms:`` before it, told by ords: 0.2 % of the
    rules): each step is taken only when the value holds those. Without ``zeros``, the ``00`` form is not read: only a ``+`` marks a number."""
    first = text[:1]
    if first not in _PHONE_FIRST and not first.isspace() and first.isascii() and (first != "0" or text[1:2] != "0"):
        return None
    text = _unhidden(text, "%2").strip()  # "%2B" for "+", "%20" for a space
    scheme = text[:4].lower()
    if scheme in _PHONE_SCHEMES:  # "tel:+1…", "tel://+1…", "sms:+1…"
        text = text[6:] if text[4:6] == "//" else text[4:]
        text = text.lstrip()
    if text[:2] == "00":  # " 0044 20 …", "tel:0044…" too (typed.py's _phone_00 reads them)
        return _valid_00_phone(text) if zeros else None
    if not text.isascii():  # "+1\u2010415\u2010555\u20100100": Unicode dashes between digits
        text = text.translate(_DASHES)
    if _INTERNATIONAL_PHONE.fullmatch(text) is not None:
        return None if _SIGNED_DECIMAL.fullmatch(text) is not None else text
    number = _without_extension(text)  # "+1 415 555 0100 x5", "…;ext=5": the number, without it
    if len(number) == len(text):
        return None
    return number if _INTERNATIONAL_PHONE.fullmatch(number) is not None else None


def _without_extension(text: str) -> str:
    """``text`` without an extension after its number (``;ext=5``, `` x5``, `` ext. 5``), as it
    is when it ends in none: the number alone is hashed."""
    extension = _EXTENSION.search(text)
    if extension is None:
        return text
    cut = extension.start()  # a name: mypyc evaluates a slice's bound twice (test_native)
    return text[:cut]


def _phone_as_written(text: str) -> str:
    """``text`` (trimmed) as international_phone reads a number in it, for normalise_phone:
    full-width forms made ASCII (NFKC) and percent-encoding undone (``%2B1…``, up to three
    times: _unhidden), Unicode dashes made "-", and an extension after it left out. Told at
    once for the usual number: ASCII, no "%2", no "x", no ";"."""
    if not text.isascii() or "%2" in text:
        text = _unhidden(text, "%2").strip()
        if not text.isascii():
            text = text.translate(_DASHES)
    if ";" in text or "x" in text or "X" in text:
        text = _without_extension(text).rstrip()
    return text


def _valid_00_phone(text: str) -> str | None:
    """``text`` (``00`` and the rest) in its ``+`` form when it is a valid phone number so read."""
    if _INTERNATIONAL_00_PHONE.fullmatch(text) is None:
        return None
    plus = "+" + text[2:]
    try:
        valid = phonenumbers.is_valid_number(phonenumbers.parse(plus))
    except phonenumbers.NumberParseException:
        return None
    return plus if valid else None


def contains_international_phone(text: str) -> bool:
    """Whether ``text`` (a URL, say) holds a phone number in international form anywhere in
    it, as ``international_phone`` reads one whole, hidden the same ways (percent-encoded up to
    three times, full-width): ``?phone=%2B14155550100``, ``/tel:+1 415 555 0100``. A ``+`` after
    a letter or a digit is a query's space between words (``?q=size+10+1234567``), not one;
    nor is a run of more than 15 digits. Told at once for the usual text: no ``+``, no ``%2``,
    ASCII."""
    if "+" not in text and "%2" not in text and text.isascii():
        return False
    return any(_SIGNED_DECIMAL.fullmatch(m.group()) is None for m in _PHONE_IN_TEXT.finditer(_unhidden(text, "%")))


def holds_international_phone(text: str, *, zeros: bool = True) -> bool:
    """Whether ``text``, a string of a field that no rule of its own reads for a phone number
    (an id such as ``sid`` or ``item_id``, ``search_term``, an AppsFlyer ``eventValue``
    parameter), is or holds a phone number in international form, as an email address is
    looked for in any string: the whole value as ``international_phone`` reads one (``+`` and 7
    to 15 digits, hidden, a ``tel:`` URI, ``00`` and a valid number), or one inside free text as
    ``contains_international_phone`` finds it (``call +44 20 7946 0958``). Not one: a ``+``
    after a letter or digit (``size+10+1234567``, a date's ``+01:00``), ``00`` inside a value
    (``SKU-0012345678``) or before a number that is no valid one (``0012345678``, an order's
    id), digits without ``+`` (``4155550123``), a signed decimal (``+51.507351``, ``+12499.00``).
    Without ``zeros``, the ``00`` form is not read (descriptive text: an item's name, a user
    agent), only a ``+`` marks a number. Told at once for the usual string: ASCII, no ``+``, no
    ``%2``, no ``00``."""
    if "+" not in text and "%2" not in text and "00" not in text and text.isascii():
        return False
    return international_phone(text, zeros=zeros) is not None or contains_international_phone(text)


def payload_may_hold_phone(payload: bytes) -> bool:
    """Whether an encoded payload may hold a string that ``holds_international_phone``: only
    then is it walked. Its bytes hold a ``+``, a ``%2``, a byte past ASCII (a full-width form,
    a Unicode space or dash), or a string starting with ``00`` (after spaces or ``tel:``)."""
    if payload.find(b"+") != -1 or payload.find(b"%2") != -1 or not payload.isascii():
        return True
    return _QUOTED_00.search(payload) is not None


def _unhidden(text: str, encoded: str) -> str:
    """``text`` as a phone number hidden in it reads: its full-width forms made ASCII (NFKC),
    then percent-decoded, up to three times, while it holds ``encoded``."""
    if not text.isascii() and _FULL_WIDTH.search(text) is not None:  # a full-width "+" or digit, maybe
        text = unicodedata.normalize("NFKC", text)
    for _ in range(_MAX_DECODINGS):
        if encoded not in text:
            break
        text = unquote(text)
    return text


_PHONE_FIRST: Final = frozenset("+%tTsS")
_PHONE_SCHEMES: Final = frozenset(("tel:", "sms:"))
# Dashes a client may write between digits: hyphen, non-breaking hyphen, en and em dash, minus.
_DASHES: Final = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2212", "-"))
# An extension after a number: ";ext=5" (RFC 3966), " x5", " ext. 5", " extension 5".
_EXTENSION: Final = re.compile(r"\s*(?:;\s*ext=|(?<=[\d\s])(?:x|ext\.?|extension)\s*)\d{1,7}$", re.IGNORECASE)
# The full-width and small forms (a "+", digits): their UTF-8 starts with the byte 0xEF.
_FULL_WIDTH: Final = re.compile("[\ufe50-\uffef]")
# What a copy and paste brings along unseen, no part of an address: a zero-width space, a word
# joiner, a byte order mark, a soft hyphen (the joiners ZWJ and ZWNJ spell some scripts: kept).
_INVISIBLE: Final = dict.fromkeys(map(ord, "\u200b\u2060\ufeff\u00ad"))
# What an IME writes in its full-width mode: those forms and the ideographic space (U+3000).
_IME_FORMS: Final = re.compile("[\u3000\ufe50-\uffef]+")
_INTERNATIONAL_PHONE: Final = re.compile(r"\+[\s(]*(?:\d[\s()./-]{0,2}){7,15}")
_INTERNATIONAL_00_PHONE: Final = re.compile(r"00[\s(]*(?:\d[\s()./-]{0,2}){7,15}")
_PHONE_IN_TEXT: Final = re.compile(r"(?<![\w+])\+\s*(?:\d[\s().-]{0,2}){6,14}\d(?!\d)")
_SIGNED_DECIMAL: Final = re.compile(r"[+-]?\d+\.\d+")
# A JSON string starting with "00", after ASCII spaces (raw or escaped) or a tel: or sms: scheme:
# where international_phone reads a 00 form in an encoded payload's ASCII (the rest is told by
# "%2" or a byte past ASCII).
_QUOTED_00: Final = re.compile(rb'"(?:[ ]|\\[tnrf]|\\u00(?:0[bB]|1[c-fC-F])|(?i:tel|sms):(?://)?)*00')


def normalise_email(raw: str) -> str:
    """The address to hash: trimmed and lower-cased, as the id-field scanner reads one
    (``revealed_email``: percent-encoded, full-width at sign or letters, an HTML character
    reference, spaces after the at sign and maybe before it), spaces before the at sign alone
    left out too (``jane @example.com``: a handle in free text, an address in an email field),
    read out of what wraps it as a person reads it (``_unwrapped``: a list's ``,`` or ``;``
    after it, a pair of quotes around it, ``Jane Doe <jane@example.com>``, a comment after or
    before it, ``jane@example.com (Jane)``), a ``mailto:`` URI's
    address (RFC 6068: its ``?`` header fields left out) and one trailing dot after the domain
    (the DNS root's: ``jane@example.com.``) left out. Raises InvalidIdentifier (which never
    repeats the value) for anything else: what is then no address (``_ADDRESS``: a ``/``, a
    ``<`` or a quote left over, ``..``, a dot first or last in the local part, an empty label,
    a label starting or ending with a hyphen: ``jane@-example.com``) is refused, never hashed as
    sent."""
    if _NORMALISED_EMAIL.fullmatch(raw):  # the usual address: a cheaper pattern, nothing to trim or lower
        return raw
    text = raw if raw.isascii() else raw.translate(_INVISIBLE)
    email = revealed_email(text.strip()).strip().lower()
    if " @" in email or "\t@" in email:
        email = _AT_AFTER_SPACES.sub("@", email)
    if email[-1:] in _WRAPPING_ENDS or email[:1] == "(":
        email = _unwrapped(email)
    if email[:7] == "mailto:":
        email = email[7:].lstrip()
        query = email.find("?")
        if query != -1:
            email = email[:query]
    if email[-1:] == ".":
        email = email[:-1]
    if not _ADDRESS.fullmatch(email) or (not email.isascii() and _stray_unicode(email)):
        raise InvalidIdentifier(f"not an email address ({_why_no_address(text, email)})")
    return email


def _why_no_address(text: str, email: str) -> str:
    """Why ``email``, ``text`` (an email field's value, invisible characters left out) as
    normalise_email reads it, is no address (``_ADDRESS`` has refused it): its commonest cause
    first, each told in words, never the value (a character no address holds is named, alone).
    The rule is _ADDRESS's: this only tells a refusal's cause, and says "expected
    local@domain.tld" when it finds none. Each look is one pass over the value (a long hostile
    one is told at once)."""
    if not email:
        return (
            "it is empty: send the address, or leave the field out"
            if not text.strip()
            else "no address in it: expected local@domain.tld"
        )
    ats = email.count("@")
    spaced = len(email.split(None, 1)) > 1
    if ats > 1 and (spaced or "," in email or ";" in email):
        return f"{'two' if ats == 2 else 'several'} email addresses in one field: send one"
    if "(" in email or ")" in email:
        return _CHARACTER_MESSAGES["("]
    if spaced:
        return "a space inside it: an address holds none"
    if not ats:
        return "no @ in it: expected local@domain.tld"
    if ats > 1:
        return "more than one @: an address has one, between the local part and the domain"
    local, _, domain = email.partition("@")
    if not local:
        return "nothing before the @: expected local@domain.tld"
    if not domain:
        return "nothing after the @: expected local@domain.tld"
    if "." not in domain:
        return "no dot in the domain after the @: expected local@domain.tld"
    if ".." in email:
        return "two dots in a row: an address holds none"
    if local[0] == "." or local[-1] == ".":
        return "a dot at the start or end of the part before the @"
    if domain[0] == "." or domain[-1] == ".":
        return "a dot at the start or end of the domain"
    if domain[0] == "-" or domain[-1] == "-" or ".-" in domain or "-." in domain:
        return "a part of the domain starts or ends with a hyphen, as no hostname's does"
    if local[0] in _QUOTES or local[-1] in _QUOTES:
        return _CHARACTER_MESSAGES["'"]
    for char in local:
        if char.isascii() and char not in _LOCAL_CHARACTERS:
            return _CHARACTER_MESSAGES.get(char) or f"{_a_character(char)} in it: no address holds one"
    for char in domain:
        if char.isascii() and char not in _DOMAIN_CHARACTERS:
            return _CHARACTER_MESSAGES.get(char) or (
                f"{_a_character(char)} in the domain: a domain holds letters, digits, hyphens and dots alone"
            )
    for char in email:
        if char >= "\x80" and unicodedata.category(char) in _STRAY_CATEGORIES:
            return (
                _CHARACTER_MESSAGES.get(char)
                or f"{_a_character(char)} in it, punctuation or a space: no address holds one"
            )
    return "expected local@domain.tld"


def _a_character(char: str) -> str:
    """``char`` named in a message: as it is when printable ASCII, else by its code point."""
    return f"the character {char}" if char.isascii() and char.isprintable() else f"the character U+{ord(char):04X}"


def _unwrapped(email: str) -> str:
    """``email`` (trimmed, lower-cased) without what wraps an address as a person writes it, from
    the outside in, as long as something does: a list's separators after it (``,`` or ``;``,
    as a pasted list leaves them), a pair of matching quotes around it (``'…'``, ``"…"``, and
    a word processor's curly ones, U+2018 and U+2019, U+201C and U+201D), and an RFC 5322
    angle-addr, maybe after a display name (``<jane@example.com>``, ``Jane Doe
    <jane@example.com>``: the address between the brackets), and an RFC 5322 comment after it
    or before it (``jane@example.com (Jane)``, ``(Jane) jane@example.com``: the address beside
    it). A display name holding a bracket or another address (``<a@x.com>, <b@x.com>``: two
    addresses), or a comment holding an at sign or a parenthesis (nested, or none closed),
    leaves the whole as it is, refused. At most _MAX_WRAPPINGS layers are taken off, each a copy of what is left: a value
    wrapped in 200,000 pairs of quotes took 1.2 s, quadratic; one wrapped deeper than a
    person wraps an address is left as it is, refused."""
    for _ in range(_MAX_WRAPPINGS):
        if not email:
            return email
        last = email[-1]
        if last in _SEPARATORS:
            email = email.rstrip(_SEPARATORS_AND_SPACES)
        elif last == _QUOTE_PAIRS.get(email[:1]) and len(email) > 1:
            email = email[1:-1].strip()
        elif last == ">" and "<" in email:
            opening = email.rfind("<")
            address = email[opening + 1 : -1].strip()
            if not _a_display_name(email[:opening], address):
                return email
            email = address
        elif last == ")":  # "jane@example.com (Jane)": a comment after the address
            opening = email.rfind("(")
            if opening < 1 or not _a_comment(email[opening + 1 : -1]):
                return email
            email = email[:opening].rstrip()
        elif email[:1] == "(":  # "(Jane) jane@example.com": one before it
            closing = email.find(")")
            if closing == -1 or not _a_comment(email[1:closing]):
                return email
            email = email[closing + 1 :].lstrip()
        else:
            return email
    return email


def _a_comment(text: str) -> bool:
    """Whether ``text``, between a pair of parentheses beside an address, is a comment a person
    writes there (a name, "work"): no parenthesis (RFC 5322's nested comments: none here), no
    at sign (``(jane@example.com)``, an address, not a comment on one)."""
    return "(" not in text and ")" not in text and "@" not in text


def _a_display_name(name: str, address: str) -> bool:
    """Whether ``name``, before ``<address>``, is a display name: no bracket, and no at sign
    unless it is the address itself (``jane@x.com <jane@x.com>``, as some clients write an
    address without a name)."""
    if "<" in name or ">" in name:
        return False
    if "@" not in name:
        return True
    name = name.strip()
    closing = _QUOTE_PAIRS.get(name[:1])
    if closing is not None and name[-1:] == closing and len(name) > 1:
        name = name[1:-1].strip()
    return name == address


def _stray_unicode(email: str) -> bool:
    """Whether ``email`` holds a character past ASCII that no address holds: punctuation (a
    guillemet, an ideographic full stop), a space, a control character. Letters, marks, digits,
    symbols and the joiners (ZWJ, ZWNJ: they spell some scripts) are an address's."""
    return any(char >= "\x80" and unicodedata.category(char) in _STRAY_CATEGORIES for char in email)


# Layers of wrapping _unwrapped takes off (a list's separators, quotes, brackets): a person's
# take a few ("'<jane@example.com>';" three), a hostile value's as many as its length.
_MAX_WRAPPINGS: Final = 8
_SEPARATORS: Final = frozenset(",;")
_SEPARATORS_AND_SPACES: Final = ",; \t"
_QUOTE_PAIRS: Final = {"'": "'", '"': '"', "\u2018": "\u2019", "\u201c": "\u201d"}
# The last characters of a wrapped address (_unwrapped): a separator, a closing quote, a
# bracket, a comment's closing parenthesis (one before the address is told by its first "(").
_WRAPPING_ENDS: Final = frozenset((*_SEPARATORS, *_QUOTE_PAIRS.values(), ">", ")"))
_STRAY_CATEGORIES: Final = frozenset(("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Zs", "Zl", "Zp", "Cc", "Cs"))
# The ASCII characters of a local part's atoms and a domain's labels (_ATOM, _LABEL), with the
# dot between them: what _why_no_address names any other by.
_LOCAL_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+=?^_`{|}~-.")
_DOMAIN_CHARACTERS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_QUOTES: Final = frozenset("'\"\u2018\u2019\u201c\u201d")
_UNPAIRED_QUOTE: Final = "a quote without its pair, or around the part before the @"
_ANGLE_BRACKET: Final = "an angle bracket without its pair"
_PARENTHESIS: Final = "a parenthesis without its pair, around the address, or in a comment beside it"
# What _why_no_address says of a character no address holds, told apart from the others.
_CHARACTER_MESSAGES: Final = {
    "/": "a / in it, as a URL or a path has: no address holds one",
    "<": _ANGLE_BRACKET,
    ">": _ANGLE_BRACKET,
    "(": _PARENTHESIS,
    ")": _PARENTHESIS,
    **dict.fromkeys(_QUOTES, _UNPAIRED_QUOTE),
    ",": "a comma in it: no address holds one",
    ";": "a semicolon in it: no address holds one",
    ":": "a colon in it: no address holds one",
    "[": "a square bracket in it: no address holds one",
    "]": "a square bracket in it: no address holds one",
    "\\": "a backslash in it: no address holds one",
    "_": "an underscore in the domain: a domain holds letters, digits, hyphens and dots alone",
}


def normalise_phone(raw: str, region: str | None = None) -> NormalisedPhone:
    """The digits to hash. A number starting with ``+`` or ``00`` is in international form:
    its digits are taken as they are (no parse), and their length is checked against the
    country's possible lengths; its country's trunk prefix after the country code, which that
    form leaves out (``+44 07700 900123``), is left out (``trunk_prefix_removed``: the caller
    warns), and so is a ``(0)`` written beside it (``+44 (0)20 7946 0958``: said the same way). Any other number is read in ``region`` (ISO 3166-1 alpha-2,
    the event's country) when given, national trunk prefix handled; without a region its
    digits are kept exactly as sent, ``with_country_code`` False: hashed as if they held a
    country code, so fewer than three are too short, as ``+12`` is. A ``tel:`` URI (RFC 3966)
    is its number; one with parameters other than an extension (``;phone-context=``) is
    refused. The number is read as ``international_phone`` reads one (``_phone_as_written``):
    full-width (U+FF0B for ``+``, U+FF11 for ``1``…), percent-encoded (``%2B1…``), Unicode
    dashes between digits, and an extension after it (``;ext=5``, `` x5``, `` ext. 5``) no
    part of it.

    Raises InvalidIdentifier (which never repeats the value) when it cannot be a phone number."""
    text = raw.strip()
    digits = text[1:]
    if text[:1] == "+" and text.isascii() and digits.isdigit():  # E.164 as sent: nothing to clean
        return _with_country_code(digits)
    if not text:  # "" or spaces: told so, not "only digits, spaces and +()-./ allowed" (a trial)
        raise InvalidIdentifier("not a phone number (it is empty: send the number, or leave the field out)")
    text = _phone_as_written(text)  # full-width, percent-encoded, an extension: as the id fields' scanner reads
    if text[:4].lower() == "tel:":  # RFC 3966: the number, as user_id's "tel:+1…" is read (international_phone)
        text = text[4:].strip()
        if ";" in text:
            raise InvalidIdentifier("not a phone number (a tel: URI with parameters (;…): send the number alone)")
    international = text.startswith(("+", "00"))
    written_trunk = international and "(0)" in text
    if written_trunk:  # "+44 (0)20 ...": the trunk prefix written beside the country code, left out
        text = text.replace("(0)", "")
    text = _PHONE_NOISE.sub("", text)
    if international:
        digits = text[1:] if text.startswith("+") else text[2:]
        if not digits.isdigit() or not digits.isascii():
            raise _not_digits(text)
        phone = _with_country_code(digits)
        if written_trunk and not phone.trunk_prefix_removed:
            return _written_trunk_prefix(digits, phone)
        return phone
    if not text.isdigit() or not text.isascii():
        raise _not_digits(text)
    if region is None:  # hashed as if it held its country code: at least one and two digits
        if len(text) < 1 + _MIN_NATIONAL_DIGITS:
            raise InvalidIdentifier("not a phone number (too short)")
        return NormalisedPhone(text, True, False)
    return _national(text, region)


def _not_digits(text: str) -> InvalidIdentifier:
    """Why ``text`` (a number with its separators removed) is none: a character other than
    digits and +, or a + where none belongs. "(+1) 415 5551403" and "+1 415 555 1407 / +1 415
    555 1408" were told "only digits, spaces and +()-./ allowed", which they are (a trial), and so
    were "+" and "()", which hold no digits."""
    if not text.replace("+", ""):
        return InvalidIdentifier("not a phone number (it has no digits)")
    if not text.isascii() or not text.replace("+", "").isdigit():
        return InvalidIdentifier("not a phone number (only digits, spaces and +()-./ allowed)")
    pluses = text.count("+")
    if pluses > 1:
        many = "two" if pluses == 2 else "several"
        return InvalidIdentifier(f"not a phone number ({many} phone numbers in one field: send one)")
    if not pluses:  # "00" alone (the only such text here): it was told "a + only at the start"
        return InvalidIdentifier("not a phone number (no digits after the international prefix 00)")
    return InvalidIdentifier("not a phone number (a + only at the start, before the country code)")


def _with_country_code(digits: str) -> NormalisedPhone:
    """``digits`` (ASCII digits only) read as a country code and a national number; one that
    starts with its country's trunk prefix, which the international form leaves out
    (``4407700900123``: ``+44 07700 900123``), without it (``_without_trunk_prefix``)."""
    if len(digits) > _E164_MAX_DIGITS:
        raise InvalidIdentifier(f"not a phone number (too long: E.164 numbers have at most {_E164_MAX_DIGITS} digits)")
    head = digits[:3]  # holds the country code, if any: one look-up, not one per possible size
    country = _COUNTRY_BY_HEAD.get(head)
    if country is None:
        country = _COUNTRY_BY_HEAD[head] = _country_code(head)
    size, lengths = country
    if not size:
        raise InvalidIdentifier("not a phone number (unknown country code)")
    national = len(digits) - size
    if national < _MIN_NATIONAL_DIGITS:
        raise InvalidIdentifier("not a phone number (too short)")
    if digits[size] == "0":  # rare: a national number starting with 0, maybe a trunk prefix kept
        without = _without_trunk_prefix(digits, size)
        if without is not None:
            return NormalisedPhone(without, True, True, True)
    return NormalisedPhone(digits, national in lengths, True)


def _written_trunk_prefix(digits: str, phone: NormalisedPhone) -> NormalisedPhone:
    """``phone``, the number ``digits`` left once a ``(0)`` written after the country code was
    taken out, said as ``+44 020 ...`` is (a trial); but where the country has no trunk prefix
    its 0 is part of the number (Italy's ``+39 (0)6 ...`` is ``+39 06 ...``): put back."""
    size = _COUNTRY_BY_HEAD[digits[:3]][0]  # _with_country_code looked it up
    if _trunk_prefix(digits[:size]) is None:
        return _with_country_code(f"{digits[:size]}0{digits[size:]}")
    return NormalisedPhone(phone.digits, phone.possible, True, True)


def _without_trunk_prefix(digits: str, size: int) -> str | None:
    """``digits`` (a country code of ``size`` digits and a national number starting with 0)
    without the national (trunk) prefix of that country code (``_trunk_prefix``: the 0 of
    ``+44 07700 900123``, the 06 of ``+36 06 20 123 4567``) after it, when the national number
    with it is no number of the country (a length none has, or none of its number patterns:
    Germany's possible lengths are 4 to 15, so ``+49 030 …`` is told by the pattern) and
    without it is one. None when it is to be kept: a country whose numbers keep their 0 in
    international form (Italy's ``+39 06 …``) has no trunk prefix, and a number that matches
    its country's pattern with the 0, or none without it, is read as sent."""
    trunk = _trunk_prefix(digits[:size])
    if trunk is None:
        return None
    prefix, lengths, pattern = trunk
    national = digits[size:]
    if not national.startswith(prefix):
        return None
    rest = national[len(prefix) :]
    if len(rest) not in lengths or pattern.fullmatch(rest) is None:
        return None
    if len(national) in lengths and pattern.fullmatch(national) is not None:
        return None
    return digits[:size] + rest


@functools.cache
def _trunk_prefix(country_code: str) -> tuple[str, frozenset[int], re.Pattern[str]] | None:
    """The national (trunk) prefix that a country calling code's numbers start with when
    dialled within the country and leave out in international form, from phonenumbers'
    metadata (``national_prefix``, which ``national_prefix_for_parsing`` strips), with the
    possible lengths and the pattern of its national numbers (every region that shares the
    code: one of them); loaded once per code. None unless every region of the code has the
    same one, starting with 0 (UK 44, DE 49, FR 33: ``0``; HU 36: ``06``): Italy 39 has none
    (its 0 is part of the number), Russia 7 an 8, the US 1 a 1."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(country_code), ())
    prefixes: set[str | None] = set()
    patterns: list[str] = []
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.general_desc is None:
            return None
        prefix = metadata.national_prefix
        parsing = metadata.national_prefix_for_parsing or prefix
        if prefix is None or parsing is None or re.match(parsing, prefix) is None:
            return None
        prefixes.add(prefix)
        patterns.append(f"(?:{metadata.general_desc.national_number_pattern})")
    lengths = _possible_lengths(country_code)
    if len(prefixes) != 1 or lengths is None:
        return None
    (prefix,) = prefixes
    if prefix is None or not prefix.startswith("0"):
        return None
    return prefix, lengths, re.compile("|".join(patterns))


def _country_code(head: str) -> tuple[int, frozenset[int]]:
    """The size of the country code that ``head`` (a number's first digits) starts with and
    its national numbers' possible lengths; (0, empty) when it starts with none."""
    for size in (1, 2, 3):  # country codes are prefix-free: the first that exists is the one
        lengths = _possible_lengths(head[:size])
        if lengths is not None:
            return size, lengths
    return 0, frozenset()


_COUNTRY_BY_HEAD: Final[dict[str, tuple[int, frozenset[int]]]] = {}  # at most 1,110 heads of 0-3 digits


@functools.cache
def _possible_lengths(country_code: str) -> frozenset[int] | None:
    """The possible lengths of the national numbers of a country calling code (every region
    that shares it), from phonenumbers' metadata, loaded once per code; None for no such code."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(int(country_code)) if country_code[0] != "0" else None
    if not regions:
        return None
    lengths: set[int] = set()
    for region in regions:
        if region == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
            metadata = PhoneMetadata.metadata_for_nongeo_region(int(country_code))
        else:
            metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is not None and metadata.general_desc is not None:
            lengths.update(metadata.general_desc.possible_length or ())
    return frozenset(lengths)


def _national(digits: str, region: str) -> NormalisedPhone:
    try:
        number = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier(f"not a phone number ({_PARSE_REASONS.get(exc.error_type, 'unreadable')})") from None
    national = "0" * (number.number_of_leading_zeros or 1) if number.italian_leading_zero else ""
    national += str(number.national_number)
    return NormalisedPhone(f"{number.country_code}{national}", phonenumbers.is_possible_number(number), True)


_E164_MAX_DIGITS: Final = 15
_MIN_NATIONAL_DIGITS: Final = 2
_PARSE_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a number",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}


def _given_hash(raw: str) -> str | None:
    """A value sent already hashed (64 hex digits, spaces around it ignored), lower-cased;
    None for anything else. Every hash_* function passes such a value through."""
    if len(raw) < _SHA256_HEX_DIGITS:  # too short for a digest, spaces or not: the usual plain value
        return None
    text = raw.strip()
    return text.lower() if is_sha256_hex(text) else None


def hash_email(raw: str) -> str:
    """SHA-256 of the email address as ``normalise_email`` reads it: trimmed and lower-cased,
    read as a person writes it, from the outside in: a ``mailto:`` URI (``?subject=…`` left
    out), an angle-addr after a display name or none (``Jane Doe <jane@example.com>``), a pair
    of quotes around it (``'…'``, ``"…"``, curly ones), a pasted list's ``,`` or ``;`` after
    it, an RFC 5322 comment beside it (``jane@example.com (Jane)``, ``(Jane)
    jane@example.com``), the DNS root's trailing dot (``jane@example.com.``), an at sign
    percent-encoded, full-width, as ``&#64;`` or with spaces beside it: each is hashed as
    ``jane@example.com`` is. A 64-hex value is taken as already hashed (lower-cased).

    Raises InvalidIdentifier, its message saying why and never repeating the value, for what
    is then no address (docs/sdk.md, "Hashing an identifier yourself")."""
    if len(raw) < _SHA256_HEX_DIGITS and _NORMALISED_EMAIL.fullmatch(raw):  # the usual address, on every event
        return _sha256(raw.encode()).hexdigest()
    return _given_hash(raw) or sha256_hex(normalise_email(raw))


def hash_phone(raw: str, region: str | None = None) -> str:
    """SHA-256 of the digits-with-country-code form (AppLovin, AppsFlyer ``phone_number_hashed``)."""
    return hash_phone_checked(raw, region).digest


def not_possible_phone(field: str) -> str:
    """The message of ``phone_not_possible``, one for Axon's phone and AppsFlyer's phone fields:
    a number whose length fits no number of its country code (``HashedPhone.possible``)."""
    return (
        f"{field} is not a possible number for its country code (no number there has as many digits): "
        "check the country code; it was hashed anyway"
    )


def trunk_prefix_removed(field: str) -> str:
    """The message of ``phone_trunk_prefix_removed``, one for Axon's phone and AppsFlyer's phone
    fields: a number in international form with its country's trunk prefix after the country
    code (``HashedPhone.trunk_prefix_removed``), hashed without it. Never the value."""
    return (
        f"{field} has the national trunk prefix (a 0 dialled within the country) after its country code, "
        "where a number in international form has none: it was left out before hashing; send the number without it"
    )


def hash_phone_checked(raw: str, region: str | None = None) -> HashedPhone:
    """``hash_phone``, whether the number is possible for its country, whether a country code
    was known and whether a trunk prefix after it was left out, from one normalisation. A value sent already hashed cannot be checked:
    it counts as possible, with its country code."""
    digits = raw[1:]
    if raw[:1] == "+" and raw.isascii() and digits.isdigit():  # E.164 as sent, the usual form: no hash, no noise
        phone = _with_country_code(digits)
        return HashedPhone(_sha256(phone.digits.encode()).hexdigest(), phone.possible, True, phone.trunk_prefix_removed)
    given = _given_hash(raw)
    if given is not None:
        return HashedPhone(given, True, True)
    phone = normalise_phone(raw, region)
    return HashedPhone(sha256_hex(phone.digits), phone.possible, phone.with_country_code, phone.trunk_prefix_removed)


def hash_phone_e164(raw: str, region: str | None = None) -> str:
    """SHA-256 of the E.164 form ``+16505551212`` (AppsFlyer ``phone_number_e164_hashed``)."""
    return _given_hash(raw) or sha256_hex("+" + normalise_phone(raw, region).digits)


def hash_name(raw: str) -> str:
    """SHA-256 of the trimmed, lower-cased first or last name."""
    return _given_hash(raw) or sha256_hex(raw.strip().lower())
