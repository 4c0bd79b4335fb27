"""The identifier rules of capigate.identity, checked against SHA-256 vectors computed here by
hashlib on the literal normalised string, never by the code under test."""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
import time
import unicodedata
from pathlib import Path

import phonenumbers
import pytest

from capigate import identity
from capigate.identity import (
    HashedPhone,
    InvalidIdentifier,
    NormalisedPhone,
    contains_email,
    hash_email,
    hash_phone,
    hash_phone_checked,
    hash_phone_e164,
    normalise_phone,
    payload_may_hold_email,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- phone: international form (+ or 00), the fast path --------------------------------------


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("+1 (650) 555-1212", "16505551212"),
        ("+16505551212", "16505551212"),
        ("001 650 555 1212", "16505551212"),
        ("+44 20 7946 0958", "442079460958"),
        ("0044 20 7946 0958", "442079460958"),
        ("+44 (0) 20 7946 0958", "442079460958"),
        ("+49 151 23456789", "4915123456789"),
        ("+39 06 1234 5678", "390612345678"),  # Italy keeps the leading zero in E.164
        ("+65 6123 4567", "6561234567"),
        (" +33.6.12.34.56.78 ", "33612345678"),
    ],
)
def test_phone_rule_international_form_hashes_its_e164_digits(raw: str, digits: str) -> None:
    assert normalise_phone(raw).digits == digits
    assert hash_phone(raw) == sha(digits)
    assert hash_phone_e164(raw) == sha("+" + digits)


def test_phone_rule_international_form_does_not_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parse(*args: object) -> None:
        raise AssertionError("phonenumbers.parse called on the fast path")

    monkeypatch.setattr(phonenumbers, "parse", no_parse)
    assert hash_phone("+1 650 555 1212", "FR") == sha("16505551212")


def test_phone_rule_international_length_is_checked_against_the_country() -> None:
    assert hash_phone_checked("+1 650 555 1212") == HashedPhone(sha("16505551212"), True, True)
    # The AppLovin documentation's own example: +1 and nine digits, a length no NANP number has.
    assert hash_phone_checked("+1123456789") == HashedPhone(sha("1123456789"), False, True)
    assert normalise_phone("+49 30 1234567").possible  # Germany: many lengths are possible


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("+44 07700 900123", "447700900123"),  # the UK's common way of writing a mobile
        ("+4407700900123", "447700900123"),  # E.164 as sent: the fast path
        ("0044 07700 900123", "447700900123"),
        ("+44 020 7946 0958", "442079460958"),
        ("+44 0800 123456", "44800123456"),  # with the 0, a possible length: no UK number so written
        ("+33 06 12 34 56 78", "33612345678"),
        ("+49 030 12345678", "493012345678"),  # Germany: a possible length either way, no such number
        ("+49 0151 23456789", "4915123456789"),
        ("+36 06 20 123 4567", "36201234567"),  # Hungary's trunk prefix is 06
        ("+61 04 1234 5678", "61412345678"),
        ("tel:+44-07700-900123", "447700900123"),
        ("+44 (0)20 7946 0958", "442079460958"),  # the UK's written form: (0) beside the country code
        ("+44 (0) 7700 900123", "447700900123"),
        ("+44(0)2079460958", "442079460958"),
        ("0044 (0)20 7946 0958", "442079460958"),
        ("+49 (0)30 12345678", "493012345678"),
    ],
)
def test_phone_rule_a_trunk_prefix_after_the_country_code_is_left_out_and_said(raw: str, digits: str) -> None:
    """Rule (identity._without_trunk_prefix): a number in international form whose national
    part starts with its country's trunk prefix (the 0 dialled within the country, from
    phonenumbers' national_prefix), which that form leaves out, is hashed without it when
    with it it is no number of the country (its length, or its pattern) and without it one;
    trunk_prefix_removed says so (the warning phone_trunk_prefix_removed). `+44 07700 900123`
    was hashed as 4407700900123, which never matches, with only phone_not_possible. One
    written `(0)` beside the country code (`+44 (0)20 7946 0958`) was hashed the same, with no
    warning, while `+44 020 …` had one: it is said too."""
    phone = normalise_phone(raw)
    assert phone == NormalisedPhone(digits, True, True, True)
    assert hash_phone(raw) == sha(digits)
    assert hash_phone_e164(raw) == sha("+" + digits)
    assert hash_phone_checked(raw) == HashedPhone(sha(digits), True, True, True)


@pytest.mark.parametrize("raw", ["+39 (0)6 1234 5678", "0039 (0)6 1234 5678", "+39(0)612345678"])
def test_phone_rule_a_written_0_where_the_country_has_no_trunk_prefix_is_part_of_the_number(raw: str) -> None:
    """Rule (identity._written_trunk_prefix): Italy's 0 is part of the number in international
    form too, so `+39 (0)6 …` is `+39 06 …`, nothing left out and nothing said; the (0) was
    dropped as the UK's is, which hashed a number that does not exist, and said it a trunk prefix."""
    assert normalise_phone(raw) == NormalisedPhone("390612345678", True, True, False)
    assert hash_phone(raw) == hash_phone("+39 06 1234 5678")


@pytest.mark.parametrize(
    ("raw", "digits", "possible"),
    [
        ("+39 06 1234 5678", "390612345678", True),  # Italy: the 0 is part of the number
        ("+225 07 07 12 34 56", "2250707123456", True),  # Côte d'Ivoire likewise, since 2021
        ("+44 7700 900123", "447700900123", True),
        ("+7 8 916 123 4567", "789161234567", False),  # Russia's trunk prefix 8: no 0, not read
        ("+1 0 650 555 1212", "106505551212", False),  # the NANP's is 1
        ("+44 00", "4400", False),  # without it, no number either
        ("+44 0 7700 900", "4407700900", False),  # 7700900: a possible length, no UK number
    ],
)
def test_phone_rule_a_zero_that_is_no_trunk_prefix_is_kept(raw: str, digits: str, possible: bool) -> None:
    """Rule (identity._trunk_prefix): a country without a trunk prefix starting with 0 in
    phonenumbers' metadata (Italy's 0 is part of the number in international form too) keeps
    it; so does a number that without it is no number of its country either."""
    assert normalise_phone(raw) == NormalisedPhone(digits, possible, True)
    assert hash_phone_checked(raw) == HashedPhone(sha(digits), possible, True)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("+999 1234 5678", "unknown country code"),
        ("+1 2", "too short"),
        ("+1234567890123456", "too long"),
        ("+8", "unknown country code"),  # fewer digits than a country code may have
        ("+12", "too short"),
        ("+882", "too short"),
    ],
)
def test_phone_rule_international_form_that_cannot_be_a_number_is_refused(raw: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason) as caught:
        normalise_phone(raw)
    assert raw.strip() not in str(caught.value)


# --- phone: national form, read in the event's country ---------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "digits"),
    [
        ("(650) 555-1212", "US", "16505551212"),  # not Singapore's +65 with a digit dropped
        ("650-555-1212", "US", "16505551212"),
        ("1 650 555 1212", "US", "16505551212"),  # the national prefix 1
        ("020 7946 0958", "GB", "442079460958"),  # the trunk prefix 0
        ("06 12 34 56 78", "FR", "33612345678"),
        ("0151 23456789", "DE", "4915123456789"),
        ("06 1234 5678", "IT", "390612345678"),
    ],
)
def test_phone_rule_national_form_is_read_in_the_events_country(raw: str, region: str, digits: str) -> None:
    phone = normalise_phone(raw, region)
    assert phone == NormalisedPhone(digits, True, True)
    assert hash_phone(raw, region) == sha(digits)


# --- phone: national form, no country known ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("(650) 555-1212", "6505551212"),
        ("16505551212", "16505551212"),
        ("0612345678", "0612345678"),  # no digit dropped, none re-read
        ("6561234567", "6561234567"),
    ],
)
def test_phone_rule_without_country_hashes_the_digits_as_sent(raw: str, digits: str) -> None:
    assert normalise_phone(raw) == NormalisedPhone(digits, True, False)
    assert hash_phone_checked(raw) == HashedPhone(sha(digits), True, False)


@pytest.mark.parametrize("raw", ["call me maybe", "+1 650 CALL NOW", "", "+", "١٢٣٤٥٦٧", "650 555 1212 ext three"])
def test_phone_rule_a_value_that_cannot_be_a_number_is_refused_without_echo(raw: str) -> None:
    for region in (None, "US"):
        with pytest.raises(InvalidIdentifier) as caught:
            normalise_phone(raw, region)
        assert len(raw.strip()) < 2 or raw.strip() not in str(caught.value)


def test_phone_rule_sha256_hex_passes_through_lowercased() -> None:
    digest = sha("16505551212")
    assert hash_phone(f" {digest.upper()} ") == digest
    assert hash_phone_checked(digest) == HashedPhone(digest, True, True)


def test_phone_rule_keeps_no_cache_of_plain_numbers() -> None:
    source = (Path(__file__).parent.parent / "capigate" / "identity.py").read_text()  # compiled: no source
    assert "lru_cache" not in source
    for name, value in vars(identity).items():
        assert not hasattr(value, "cache_info") or name in ("_possible_lengths", "_trunk_prefix"), name
    identity._possible_lengths.cache_clear()
    identity._trunk_prefix.cache_clear()
    identity._COUNTRY_BY_HEAD.clear()
    normalise_phone("+1 650 555 1212")
    assert identity._possible_lengths.cache_info().currsize >= 1  # keyed by country code only
    assert identity._trunk_prefix.cache_info().currsize == 0  # looked up for a national 0 alone
    normalise_phone("+44 07700 900123")
    normalise_phone("+44 020 7946 0958")
    assert identity._trunk_prefix.cache_info().currsize == 1  # keyed by country code only
    assert identity._COUNTRY_BY_HEAD and all(len(head) <= 3 for head in identity._COUNTRY_BY_HEAD)


# --- email ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("  Jane.Doe+Ads@Example.COM ", "jane.doe+ads@example.com"), ("a@b.example", "a@b.example")],
)
def test_email_rule_is_trimmed_lowercased_and_hashed(raw: str, normalised: str) -> None:
    assert hash_email(raw) == sha(normalised)


@pytest.mark.parametrize(
    "raw",
    ["jane.doe+ads@example.com", "j_doe1987@mail.co.uk", "a@b.c", "x%y@a-b.example", "a@b--c.d", "a.b.c@d.e.f"],
)
def test_email_rule_an_address_already_normalised_is_taken_as_sent(raw: str) -> None:
    """The usual address skips trimming and lower-casing (a cheaper pattern tells it)."""
    assert identity._NORMALISED_EMAIL.fullmatch(raw)
    assert identity.normalise_email(raw) == raw
    assert hash_email(raw) == sha(raw)


_EMAIL_PIECES = (
    *("a", "b1", ".", "@", "@x.y", "x.y", "B", " ", "\t", "\x1c", "\u00e9", "_", "+", "%", "-", ".."),
    *("/", "<", ">", ",", ";", "'", '"', "\u00ab", "\u3002"),
)


def _an_address(text: str) -> bool:
    """The rule, written out: a local part and a domain around one at sign, no space; the local
    part's atoms (between dots, none empty) of RFC 5322's characters but "/", no quote first
    or last; two labels or more (none empty) of letters, digits and hyphens; past ASCII, no
    punctuation."""
    local, at, domain = text.partition("@")
    if not at or "@" in domain or any(c.isspace() for c in text):
        return False
    if any(not c.isascii() and unicodedata.category(c)[0] == "P" for c in text):
        return False
    atoms, labels = local.split("."), domain.split(".")
    atom_chars = set("abcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+=?^_`{|}~-")
    label_chars = set("abcdefghijklmnopqrstuvwxyz0123456789-")
    return (
        all(atom and all(c in atom_chars or not c.isascii() for c in atom) for atom in atoms)
        and local[0] != "'" != local[-1]
        and len(labels) >= 2
        and all(label and all(c in label_chars or not c.isascii() for c in label) for label in labels)
        and not any(label[:1] == "-" or label[-1:] == "-" for label in labels)
    )


def test_email_rule_the_already_normalised_shortcut_answers_as_the_rule() -> None:
    """Every string the shortcut takes as sent is one the rule (trim, lower-case, spaces or
    tabs beside an at sign between a local part and a domain of a dot and a letters' top-level
    label left out, a list's separators after it and a pair of quotes around it left out, one
    trailing dot left out, then an address: _an_address) leaves unchanged; every other answers
    as before."""
    spaced_at = re.compile(r"(?<=[a-z0-9._%+-])[ \t]{0,3}@[ \t]{0,3}(?=(?:[a-z0-9-]+\.)+[a-z]{2,}(?![a-z0-9-]))")
    rng = random.Random(16)
    taken = 0
    for _ in range(50_000):
        raw = "".join(rng.choice(_EMAIL_PIECES) for _ in range(rng.randint(0, 6)))
        expected = spaced_at.sub("@", raw.strip().lower())
        while expected[-1:] in (",", ";") or (expected[:1] in ("'", '"') and expected[-1:] == expected[0] != expected):
            expected = expected.rstrip(",; \t") if expected[-1] in ",;" else expected[1:-1].strip()
        expected = expected.removesuffix(".")
        valid = _an_address(expected) and "<" not in raw and ">" not in raw  # brackets: a test of their own
        if identity._NORMALISED_EMAIL.fullmatch(raw):
            taken += 1
            assert valid and expected == raw, repr(raw)
        if valid:
            assert identity.normalise_email(raw) == expected, repr(raw)
            assert hash_email(raw) == sha(expected), repr(raw)  # hash_email's own shortcut too
        elif "<" not in raw and ">" not in raw:
            with pytest.raises(InvalidIdentifier):
                identity.normalise_email(raw)
            with pytest.raises(InvalidIdentifier):
                hash_email(raw)
    assert taken > 100


@pytest.mark.parametrize(
    ("plain", "written"),
    [
        ("+16505551212", "+1 (650) 555-1212"),
        ("+4407911123456", "+44 (0)7911 123456"),  # the trunk prefix said either way
        ("+4407911123456", "+44 07911 123456"),
        ("+33612345678", "0033 6 12 34 56 78"),
        ("+99912345", "+999 12345"),
        ("+1", "+ 1"),
    ],
)
def test_an_e164_number_as_sent_is_read_as_its_written_forms_are(plain: str, written: str) -> None:
    """Rule: a number of only + and ASCII digits skips the clean-up; its answer is the same."""

    def read(raw: str) -> object:
        try:
            return normalise_phone(raw)
        except InvalidIdentifier as exc:
            return str(exc)

    assert read(plain) == read(written)


@pytest.mark.parametrize(
    "raw",
    [
        *("+16505551212", "+1123456789", "+447911123456", "+99912345", "+1", "+0123456", "+1234567890123456", "+"),
        *("+4407700900123", "+390612345678"),
    ],
)
def test_an_e164_number_as_sent_is_hashed_and_checked_as_any_other_form(raw: str) -> None:
    """Rule: hash_phone_checked's shortcut for + and ASCII digits (no clean-up, no hash to
    pass through) answers as the normalisation it skips: digest, possible, a trunk prefix left
    out, or the refusal."""

    def checked(raw: str, region: str | None) -> object:
        try:
            return hash_phone_checked(raw, region)
        except InvalidIdentifier as exc:
            return str(exc)

    def normalised(raw: str, region: str | None) -> object:
        try:
            phone = normalise_phone(raw, region)
        except InvalidIdentifier as exc:
            return str(exc)
        return HashedPhone(sha(phone.digits), phone.possible, phone.with_country_code, phone.trunk_prefix_removed)

    for region in (None, "FR"):
        assert checked(raw, region) == normalised(raw, region) == checked(f" {raw} ", region)


@pytest.mark.parametrize(
    "raw",
    [
        sha("x"),
        sha("x").upper(),
        f"  {sha('x')}\t",
        sha("x")[:63],
        f" {sha('x')[:62]} ",
        sha("x") + "0",
        "a@b.co",
        "+16505551212",
        " " * 70,
    ],
)
def test_rule_only_64_hex_digits_are_taken_as_already_hashed_whatever_the_length_sent(raw: str) -> None:
    """A value shorter than a digest is never one (checked first, by its length alone); the
    answer is the rule's: spaces around ignored, 64 hex digits, lower-cased."""
    text = raw.strip()
    given = text.lower() if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text) else None
    assert identity._given_hash(raw) == given
    if given is not None:
        assert hash_email(raw) == hash_phone(raw) == given


@pytest.mark.parametrize(
    ("text", "an_address"),
    [
        ("jane@example.com", True),
        ("jane%40example.com", True),
        ("jane%2540example.com", True),
        ("jane%252540example.com", True),  # encoded three times: as often as revealed_email decodes
        ("jane%25252540example.com", False),  # four times: read by neither
        ("jane\uff20example.com", True),
        ("jane\ufe6bexample.com", True),
        ("jane@ example.com", True),
        ("jane@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d", True),
        ("jane \uff20 example.com", True),
        ("50% off", False),
        ("caf\u00e9 %4", False),
    ],
)
def test_the_payload_guard_passes_every_address_contains_email_reads(text: str, an_address: bool) -> None:
    """Rule: the guard before the walk for addresses (payload_may_hold_email) finds an at sign
    in every form contains_email reads (one it missed is stored plain), and rules out a payload
    holding none (the walk is the slow path)."""
    payload = json.dumps({"search_term": text}, ensure_ascii=False).encode()
    assert contains_email(text) is an_address
    assert payload_may_hold_email(payload) is an_address


# --- email and phone as written: the forms the id-field scanner reads ----------------------


@pytest.mark.parametrize(
    "raw",
    [
        "mailto:jane@example.com",
        "MAILTO:Jane@Example.com",
        " mailto: jane@example.com ",
        "mailto:jane@example.com?subject=Hi",  # RFC 6068: the header fields are no part of the address
        "jane@example.com.",  # the DNS root's dot
        "Jane@Example.COM.",
        "mailto:jane@example.com.",
        "jane%40example.com",
        "jane%2540example.com",
        "jane\uff20example.com",
        "\uff4a\uff41\uff4e\uff45\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
        "jane&#64;example.com",
        "jane&#x40;example.com",
        "jane&commat;example.com",
        "jane @ example.com",
        "jane @example.com",  # one space before the at sign: an address in the email field
        "jane@ example.com",
        "Jane\t@Example.com",
        "jane \uff20 example.com",
        # Full-width letters with an ASCII at sign, as a Japanese IME writes them.
        "\uff4a\uff41\uff4e\uff45@example.com",
        "\uff2a\uff41\uff4e\uff45@example.com",
        "jane@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
        "\uff4a\uff41\uff4e\uff45 @example.com",
        "\uff4a\uff41\uff4e\uff45\u3000\uff20\u3000\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
        # Invisible characters a copy and paste brings along: hashed as sent, never matching.
        "jane@example.com\u200b",
        "\ufeffjane@example.com",
        "ja\u00adne@exam\u2060ple.com",
    ],
)
def test_email_rule_an_address_as_written_is_hashed_as_the_address(raw: str) -> None:
    """Rule (identity.normalise_email): an address as a client writes it, a `mailto:` URI, a
    trailing dot after its domain, or its at sign hidden as contains_email finds one
    (percent-encoded, full-width, an HTML entity, spaces around it), is the address: its
    digest is the plain address's. They were hashed as sent (never matching) or refused."""
    assert identity.normalise_email(raw) == "jane@example.com"
    assert hash_email(raw) == sha("jane@example.com")


@pytest.mark.parametrize(
    "raw",
    [
        "mailto:",
        "mailto:jane",
        "jane@example.com..",
        "jane@example",
        "jane @ example",
        "jane@@example.com",
        "jane @example",
        "jane@ example",
        "jane @3.50",
        "jane@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45",
    ],
)
def test_email_rule_what_stays_no_address_once_read_is_refused(raw: str) -> None:
    """Rule: only one trailing dot is the root's; a domain without a dot is none."""
    with pytest.raises(InvalidIdentifier):
        identity.normalise_email(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "<jane@example.com>",  # RFC 5322's angle-addr
        "Jane Doe <jane@example.com>",  # a name-addr: the display name left out
        '"Doe, Jane" <Jane@Example.com>',
        "jane@example.com <jane@example.com>",  # a client's name-addr without a name
        "<mailto:jane@example.com>",
        "< jane@example.com >",
        "jane@example.com,",  # a pasted list's separators
        "jane@example.com;",
        "jane@example.com , ",
        "<jane@example.com>,",
        "'jane@example.com'",  # a pair of matching quotes
        '"jane@example.com"',
        "\u201cjane@example.com\u201d",  # a word processor's
        "\u2018jane@example.com\u2019",
        "'<jane@example.com>';",
        "jane@example.com (Jane)",  # an RFC 5322 comment after the address
        "Jane@Example.com(Jane Doe, work)",
        "(Jane) jane@example.com",  # and before it
        "(Jane)jane@example.com",
        "(Jane) (work) jane@example.com",
        "Jane Doe <jane@example.com> (work)",
        "(Jane) <jane@example.com>",
        "jane@example.com (Jane);",
        "jane@example.com. (Jane)",
    ],
)
def test_email_rule_an_address_wrapped_as_a_person_writes_it_is_the_address(raw: str) -> None:
    """Rule (identity.normalise_email, _unwrapped): an address in angle brackets, maybe after a
    display name, in a pair of matching quotes, followed by a list's `,` or `;`, or beside an
    RFC 5322 comment (`jane@example.com (Jane)`, `(Jane) jane@example.com`), is the address a
    person reads there. They were hashed as sent, brackets and all (never matching), or
    refused (a display name's space; a comment, as `Jane Doe <…>` was read and
    `jane@example.com (Jane)` was not)."""
    assert identity.normalise_email(raw) == "jane@example.com"
    assert hash_email(raw) == sha("jane@example.com")


@pytest.mark.parametrize("quote", ["'", '"', "\u201c"])
def test_email_rule_an_address_wrapped_deeper_than_a_person_wraps_one_is_refused_at_once(quote: str) -> None:
    """Rule (identity._unwrapped, _MAX_WRAPPINGS): a hostile value of 200,000 pairs of quotes
    around an address was unwrapped a pair at a time, each a copy of the rest: 1.2 s of the
    event loop for a 400 KB email, quadratic. Eight layers are taken off at most (a person's
    take three: `'<jane@example.com>';`); a value wrapped deeper is refused, at once."""
    closing = identity._QUOTE_PAIRS[quote]
    assert identity.normalise_email(quote * 8 + "jane@example.com" + closing * 8) == "jane@example.com"
    started = time.perf_counter()
    for depth in (9, 200_000):
        with pytest.raises(InvalidIdentifier):
            identity.normalise_email(quote * depth + "jane@example.com" + closing * depth)
    assert time.perf_counter() - started < 0.25


@pytest.mark.parametrize(
    "raw",
    [
        "jane@example.com/",  # a URL's or a path's
        "jane/doe@example.com",
        "jane@example.com>",  # a bracket left over
        "<jane@example.com",
        "jane@example.com<",
        "<a@example.com>, <jane@example.com>",  # two addresses
        "a@example.com <jane@example.com>",
        "'jane@example.com",  # a quote left over
        "jane@example.com'",
        '"jane@example.com',
        "'jane@example.com\"",
        '"jane"@example.com',
        "jane@example..com",  # ".." anywhere
        "ja..ne@example.com",
        "a@b..c",
        ".jane@example.com",  # a dot first or last in the local part
        "jane.@example.com",
        "jane@.example.com",  # an empty label
        "@example.com",
        "jane@example.com..",
        "jane@exa_mple.com",  # no hostname's character
        "jane@example.com\u3002",  # punctuation past ASCII
        "\u00abjane@example.com\u00bb",
        "jane,doe@example.com",
        "(jane@example.com)",  # a comment holding an address, not one beside it
        "jane@example.com (a@example.com)",
        "jane@example.com (Jane (work))",  # nested: none read
        "jane@example.com)",  # a parenthesis without its pair
        "(jane@example.com",
        "jane(work)@example.com",  # a comment inside the address: none read
    ],
)
def test_email_rule_stray_punctuation_is_refused_never_hashed_as_sent(raw: str) -> None:
    """Rule (identity.normalise_email, _ADDRESS): what wraps no address as a person reads it
    and leaves no address is refused (invalid_email, invalid_hash), never hashed as sent: each
    of these was hashed with its punctuation (`jane@example..com`, while `jane@example.com..`
    was refused), a digest nothing matches, with no warning. The usual address's shortcut
    (_NORMALISED_EMAIL) takes none of them."""
    assert identity._NORMALISED_EMAIL.fullmatch(raw) is None
    with pytest.raises(InvalidIdentifier, match=r"^not an email address \(.+\)$"):
        identity.normalise_email(raw)
    with pytest.raises(InvalidIdentifier):
        hash_email(raw)


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        ("", "it is empty: send the address, or leave the field out"),
        ("  \t", "it is empty: send the address, or leave the field out"),
        ("mailto:", "no address in it: expected local@domain.tld"),
        ("janedoe.example.com", "no @ in it: expected local@domain.tld"),
        ("jane@@example.com", "more than one @: an address has one, between the local part and the domain"),
        ("jane@example.com@", "more than one @: an address has one, between the local part and the domain"),
        ("jane@example.com, john@example.com", "two email addresses in one field: send one"),
        ("jane@example.com;john@example.com", "two email addresses in one field: send one"),
        ("a@example.com b@example.com c@example.com", "several email addresses in one field: send one"),
        ("<a@example.com>, <jane@example.com>", "two email addresses in one field: send one"),
        ("@example.com", "nothing before the @: expected local@domain.tld"),
        ("jane@", "nothing after the @: expected local@domain.tld"),
        ("jane@example", "no dot in the domain after the @: expected local@domain.tld"),
        ("jane doe@example.com", "a space inside it: an address holds none"),
        ("jane@example .com", "a space inside it: an address holds none"),
        ("jane@example..com", "two dots in a row: an address holds none"),
        ("ja..ne@example.com", "two dots in a row: an address holds none"),
        (".jane@example.com", "a dot at the start or end of the part before the @"),
        ("jane.@example.com", "a dot at the start or end of the part before the @"),
        ("jane@.example.com", "a dot at the start or end of the domain"),
        ("jane@example.com..", "a dot at the start or end of the domain"),
        ("jane@-example.com", "a part of the domain starts or ends with a hyphen, as no hostname's does"),
        ("jane@example.com/", "a / in it, as a URL or a path has: no address holds one"),
        ("<jane@example.com", "an angle bracket without its pair"),
        ("'jane@example.com", "a quote without its pair, or around the part before the @"),
        ('"jane"@example.com', "a quote without its pair, or around the part before the @"),
        ("(jane@example.com)", "a parenthesis without its pair, around the address, or in a comment beside it"),
        ("jane,doe@example.com", "a comma in it: no address holds one"),
        ("jane@exa_mple.com", "an underscore in the domain: a domain holds letters, digits, hyphens and dots alone"),
        ("jane@exa!mple.com", "the character ! in the domain: a domain holds letters, digits, hyphens and dots alone"),
        ("ja\x00ne@example.com", "the character U+0000 in it: no address holds one"),
        ("jane@example.com\u3002", "the character U+3002 in it, punctuation or a space: no address holds one"),
    ],
)
def test_email_rule_a_refusal_says_its_cause(raw: str, cause: str) -> None:
    """Rule (identity._why_no_address): a refused email says why, in words, the commonest
    causes each their own (empty, no @, two, nothing before or after it, no dot in the domain,
    a space, "..", two addresses), never the value; every refusal said "expected
    local@domain.tld", whatever it was. The code (invalid_email; AppsFlyer's invalid_hash) and
    the path are the same."""
    with pytest.raises(InvalidIdentifier) as refused:
        hash_email(raw)
    assert str(refused.value) == f"not an email address ({cause})"
    assert "jane" not in str(refused.value) and "example" not in str(refused.value)


@pytest.mark.parametrize(
    "raw",
    [
        "jane@-example.com",
        "jane@example-.com",
        "jane@example.-com",
        "jane@example.com-",
        "jane@mail.-example.com",
        "Jane@-Example.com",  # the slow path's too
        "jane@-ex\u00e4mple.com",
        "jane@example.com-.",
    ],
)
def test_email_rule_a_domain_label_starting_or_ending_with_a_hyphen_is_refused(raw: str) -> None:
    """Rule (identity._ADDRESS, _NORMALISED_EMAIL): a domain's label is a hostname's (RFC 1123),
    none starting or ending with a hyphen: `jane@-example.com` is no address, refused
    (invalid_email, invalid_hash) as other non-addresses are. It was hashed as sent, never
    matching, by the usual address's shortcut. A hyphen inside a label is one of its
    characters (`jane@my-shop.example`, an IDN's `xn--`)."""
    assert identity._NORMALISED_EMAIL.fullmatch(raw) is None
    with pytest.raises(InvalidIdentifier):
        identity.normalise_email(raw)
    with pytest.raises(InvalidIdentifier):
        hash_email(raw)


@pytest.mark.parametrize("address", ["jane@my-shop.example", "jane@xn--exmple-cua.com", "j-@a--b.c-d.example"])
def test_email_rule_a_hyphen_inside_a_domain_label_is_kept(address: str) -> None:
    assert identity.normalise_email(address) == address
    assert hash_email(address) == sha(address)


@pytest.mark.parametrize(
    "form",
    [
        "mailto:",
        "Jane Doe <jane@example.com>",
        "pair of quotes",
        "pasted list's",
        "jane@example.com (Jane)",
        "jane@example.com.",
    ],
)
def test_hash_emails_docstring_and_the_sdk_guide_name_the_forms_it_reads(form: str) -> None:
    """hash_email's docstring said "SHA-256 of the trimmed, lower-cased email" and docs/sdk.md
    named it nowhere: a user hashing an audience list could not know that `Jane Doe
    <jane@example.com>` or `jane@example.com (Jane)` gives the digest of `jane@example.com`.
    Both name each form (the guide's example runs: tests/test_docs.py)."""
    root = Path(__file__).resolve().parent.parent
    source = ast.parse((root / "capigate" / "identity.py").read_text(encoding="utf-8"))  # compiled: no __doc__
    (function,) = [f for f in source.body if isinstance(f, ast.FunctionDef) and f.name == "hash_email"]
    assert form in (ast.get_docstring(function) or "").replace("\n", " ")
    assert form in (root / "docs" / "sdk.md").read_text(encoding="utf-8").replace("\n", " ")


@pytest.mark.parametrize("address", ["o'brien@example.com", "jane.o'brien+ads@example.com", "a!#$&*=?^`{|}~@x.co"])
def test_email_rule_punctuation_of_a_local_part_is_kept(address: str) -> None:
    """Rule (identity._ADDRESS): RFC 5322's characters of a local part but "/" are an address's,
    a quote too when it is neither first nor last (o'brien)."""
    assert identity.normalise_email(address) == address
    assert hash_email(address) == sha(address)


@pytest.mark.parametrize(
    "address",
    [
        "jos\u00e9@ex\u00e4mple.com",
        "jose\u0301@example.com",  # decomposed: kept so, as the ASCII at sign's address always was
        "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
        "\u03b4\u03bf\u03ba\u03b9\u03bc\u03ae@\u03c0\u03b1\u03c1\u03ac\u03b4\u03b5\u03b9\u03b3\u03bc\u03b1.\u03b4\u03bf\u03ba\u03b9\u03bc\u03ae",
        "\u0430\u0434\u0436\u0430\u0439@\u044d\u043a\u0437\u0430\u043c\u043f\u043b.\u0440\u0443\u0441",
        "\u0915\u093c@\u0909\u0926\u093e\u0939\u0930\u0923.\u092d\u093e\u0930\u0924",
        "\u5c71\u7530@\u4f8b\u3048.jp",
        "stra\u00dfe@example.de",
        "\ufb01nn@example.com",  # a ligature, no full-width form: as written
    ],
)
def test_email_rule_an_internationalised_address_is_read_as_written(address: str) -> None:
    """Rule (identity.normalise_email): only the full-width and small forms an IME writes
    (U+FE50-U+FFEF, and U+3000) are folded (NFKC, run by run); an internationalised address without them
    is only trimmed and lower-cased, its letters as sent: NFKC of the whole would change
    compatibility characters that spell names (RFC 6532)."""
    assert identity.normalise_email(f" {address} ") == address.lower()
    assert hash_email(address) == sha(address.lower())


@pytest.mark.parametrize(
    ("raw", "address"),
    [
        (
            "\uff4a\uff4f\uff53\u00e9@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
            "jos\u00e9@example.com",
        ),
        ("\uff94\uff8f\uff80\uff9e@\u4f8b\u3048.jp", "\u30e4\u30de\u30c0@\u4f8b\u3048.jp"),  # half-width katakana
        ("\u5c71\u7530\uff54\uff41\uff52\uff4f@\u4f8b\u3048\uff0e\uff4a\uff50", "\u5c71\u7530taro@\u4f8b\u3048.jp"),
    ],
)
def test_email_rule_the_full_width_forms_of_an_internationalised_address_are_folded_alone(
    raw: str, address: str
) -> None:
    """Rule (identity.normalise_email): an IME's full-width and half-width forms inside an
    internationalised address are what NFKC makes them; its other letters are kept."""
    assert identity.normalise_email(raw) == address
    assert hash_email(raw) == sha(address)


@pytest.mark.parametrize(
    ("raw", "region", "digits"),
    [
        ("+1 (650) 555-1212 ext. 5", None, "16505551212"),
        ("+1-650-555-1212;ext=5", None, "16505551212"),
        ("+1 650 555 1212 x5", None, "16505551212"),
        ("tel:+1-650-555-1212;ext=5", None, "16505551212"),
        ("%2B16505551212", None, "16505551212"),
        ("%2B1%20650%20555%201212", None, "16505551212"),
        ("\uff0b\uff11 \uff16\uff15\uff10 \uff15\uff15\uff15 \uff11\uff12\uff11\uff12", None, "16505551212"),
        ("+1\u2010650\u2010555\u20101212", None, "16505551212"),
        ("(650) 555-1212 ext. 5", "US", "16505551212"),
        ("\uff08\uff16\uff15\uff10\uff09\uff15\uff15\uff15\uff0d\uff11\uff12\uff11\uff12", "US", "16505551212"),
    ],
)
def test_phone_rule_a_number_as_written_is_read_as_the_scanner_reads_it(
    raw: str, region: str | None, digits: str
) -> None:
    """Rule (identity.normalise_phone, identity.international_phone): a number full-width,
    percent-encoded, with Unicode dashes or an extension after it is the number the id-field
    scanner reads in it (the extension no part of it). They were refused invalid_phone."""
    assert normalise_phone(raw, region) == NormalisedPhone(digits, True, True)
    assert hash_phone(raw, region) == sha(digits)
    assert hash_phone_e164(raw, region) == sha("+" + digits)


@pytest.mark.parametrize("raw", ["tel:+1-650-555-1212;phone-context=example.com", "+1 650 555 1212 ext. five"])
def test_phone_rule_a_parameter_other_than_an_extension_is_still_refused(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_phone(raw)


@pytest.mark.parametrize(
    ("text", "an_address"),
    [
        ("write to name @ example.com today", True),
        ("name&#64;example.com", True),
        ("name&#x40;example.com", True),
        ("name&commat;example.com", True),
        ("write to name@ example.com today", True),  # a space after the at sign alone
        ("write to name@\texample.com", True),
        ("write to name \uff20 example.com", True),
        ("\uff4e\uff41\uff4d\uff45@example.com", True),  # full-width letters, an ASCII at sign
        ("name@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d", True),
        ("name@ \uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d", True),
        # No address: a price, a place, a handle, a host without a dot, an entity of another sign.
        ("2 shirts @ 3.50 each", False),
        ("Coffee @ Home", False),
        ("size 10 @ 20% off", False),
        ("Tom &amp; Jerry", False),
        ("R&#38;D dept.com", False),
        ("name@example", False),
        ("user@localhost", False),
        ("thanks @john.doe", False),
        # A space before the at sign alone is how a handle is written after a word: none.
        ("follow name @example.com", False),
        ("Gift card @shop.example", False),
        ("name@ example", False),
        ("build@ci", False),
        ("name@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45", False),
        ("price@ 3.50", False),
    ],
)
def test_a_disguised_email_in_free_text_is_found_and_normal_text_is_not(text: str, an_address: bool) -> None:
    """Rule (identity.contains_email): an at sign written as an HTML entity (`&#64;`,
    `&#x40;`, `&commat;`) or with spaces on both sides before a domain with a dot and a
    letters-only top-level label is an address (they were stored plain, unwarned); an at
    sign before a host without a dot is not (ids such as `user@localhost`), nor a spaced one
    before a price or a word. The payload guard finds each form contains_email reads."""
    assert contains_email(text) is an_address
    payload = json.dumps({"search_term": text}, ensure_ascii=False).encode()
    assert payload_may_hold_email(payload) or not an_address
