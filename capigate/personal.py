"""Personal data where a schema cannot see it: values under keys the API does not define
(AppsFlyer: unknown top-level keys, anything inside ``eventValue`` and ``custom_data``; Axon:
unknown keys at any depth, see ``capigate/axon/personal.py``).

A key named like personal data (an email, a phone, a name, a birth date, a street or home
address, a national id: ``_PII_KEY``), a string holding an email address (percent-encoded too:
``%40``) or a phone number in international form (``identity.holds_international_phone``:
``+44 20 7946 0958``, hidden, a ``tel:`` URI, ``00`` and a valid number), or a key that is
itself one, is dropped with ``plain_pii_dropped`` at its path. A SHA-256 hex value is never
taken for personal data. Digits without ``+`` or ``00`` are a phone number only by their key:
``phone`` whatever its value, and the other names of one (``mobile``, ``msisdn``,
``whatsapp`` anywhere in the key, ``tel`` and ``cell`` as its last word) when the value holds
seven digits or more, in a list or an object too (``is_mobile`` is a flag, ``cell_count`` a
count); under a harmless key, a string of digits is far more often an order or content id,
and dropping those would lose real data.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from capigate.checking import Report, join, top_key
from capigate.errors import Problem
from capigate.identity import (
    InvalidIdentifier,
    contains_email,
    hash_email,
    hash_phone,
    holds_international_phone,
    international_phone,
    is_international_phone,
    is_sha256_hex,
    revealed_email,
    sha256_hex,
)

__all__ = [
    "EMAIL_SHOWN",
    "MAX_DEPTH",
    "PHONE_HASHED",
    "PHONE_SHOWN",
    "TooDeep",
    "held",
    "holds_phone_anywhere",
    "looks_personal",
    "phone_dropped",
    "shown_id",
    "shown_key",
    "shown_path",
    "shown_value",
    "treated_phone_id",
    "without_emails",
    "without_personal",
]

MAX_DEPTH = 32  # levels of objects and arrays inside one free-form value


class TooDeep(ValueError):
    """A free-form value nests deeper than MAX_DEPTH: refused, never walked to a RecursionError."""


# Keys named like a person's data, case and separators aside: email and phone, names (first,
# last, full, given, family, middle, maiden; surname), birth dates (birthday, date_of_birth),
# street and home addresses (not ip_address nor email_address's kin, nor city, country or zip,
# which are fields), national ids (ssn, national_id, social security, passport number). The
# short ones are whole words only (_PII_WORDS): "dob" is in "adobe", "ssn" in "classname".
_PII_KEY = re.compile(
    r"e-?mail|phone|(?:first|last|full|given|family|middle|maiden)[\W_]?name|surname|birth"
    r"|(?:street|home|postal|mailing|residential)[\W_]?address|address[\W_]?line"
    r"|national[\W_]?(?:id|insurance)|social[\W_]?security|passport[\W_]?(?:number|num|no|nr|id)",
    re.IGNORECASE,
)
_PII_WORDS: Final = frozenset({"dob", "ssn", "street"})
# _PII_KEY for a key in ASCII, lower-cased: the case-blind search costs three times as much.
# Another key keeps the case-blind one, which also takes the long s for an "s", and the Kelvin
# sign for a "k", as lower() does not.
_PII_KEY_LOWER = re.compile(_PII_KEY.pattern)
_LEFT_OUT: Final = object()


def looks_personal(key: str, value: Any) -> bool:
    """A key named like personal data (unless its value is a SHA-256 hex digest), a string
    holding an email address or a phone number in international form whatever its key, a key
    that is itself an email address, or a phone number under another name of a phone's."""
    text = isinstance(value, str)
    if text and (contains_email(value) or holds_international_phone(value)):
        return True
    if _personal_key(key):
        return not (text and is_sha256_hex(value.strip())) or _key_is_an_identifier(key)
    if isinstance(value, list | dict):  # walked for digits only under a phone's name
        return _named_like_a_phone(key) and _phone_digits(value)
    return _phone_digits(value) and _named_like_a_phone(key)  # a scalar's digits cost less than the key's words


def _key_is_an_identifier(key: str) -> bool:
    """A key that is itself an email address or a phone number in international form (a
    re-trial's ``{"+14155550152": "x"}``, stored plain where an address as a key was dropped)."""
    return ("@" in key and contains_email(key)) or holds_international_phone(key)


# Keys that name a phone other than "phone" (a trial stored "mobile": "+14155550177" as sent):
# a name of its own anywhere in the key, case and separators aside ("WhatsApp", "mobile_2",
# "msisdn_e164"), or "tel" and "cell" as its last word (before "number"): "hotel" and
# "cellular" are not. A key ending in a count or an id names no phone ("mobile_count").
_PHONE_NAMES: Final = re.compile(r"mobile|msisdn|telephone|cellphone|whatsapp")
_SHORT_PHONE_NAMES: Final = frozenset({"tel", "cell"})
_NUMBER_WORDS: Final = frozenset({"number", "num", "no", "nr"})
_NOT_A_PHONE: Final = frozenset({"count", "counts", "id", "ids", "total", "size", "index", "os", "type", "version"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_PHONE_DIGITS = re.compile(r"(?:\d[^\dA-Za-z]{0,3}){7,}")  # seven digits or more, whatever between them


@lru_cache(maxsize=4096)
def _named_like_a_phone(key: str) -> bool:
    words = [w.lower() for w in _WORDS.findall(key) if not w.isdigit()]
    if not words or words[-1] in _NOT_A_PHONE:
        return False
    if len(words) > 1 and words[-1] in _NUMBER_WORDS:
        words.pop()
    return words[-1] in _SHORT_PHONE_NAMES or _PHONE_NAMES.search("".join(words)) is not None


def _phone_digits(value: Any, depth: int = 0) -> bool:
    """Seven digits or more, as a phone is written (an extension, a second number and all), a
    number of seven digits or more, or a list or object holding one."""
    if isinstance(value, bool):
        return False
    # Compared, not made text: str() of 5,000 digits raises. An int and a float apart: compiled,
    # ``int | float`` is read as a float, and an int past a float's range raised (a 500).
    if isinstance(value, int):
        return abs(value) >= 10**6
    if isinstance(value, float):
        return abs(value) >= 10**6
    if isinstance(value, str):
        return _PHONE_DIGITS.search(value) is not None
    if depth < MAX_DEPTH and isinstance(value, list | dict):
        return any(_phone_digits(v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def _personal_key(key: str) -> bool:
    # A key holding an email address or a phone number is never cached: no plain identifier
    # outlives its request.
    if _key_is_an_identifier(key):
        return True
    return _named_like_personal(key)


@lru_cache(maxsize=4096)  # clients repeat the same keys (a body of 70,000 distinct ones cost 4 µs each)
def _named_like_personal(key: str) -> bool:
    lower = key.lower()
    if (_PII_KEY_LOWER.search(lower) if key.isascii() else _PII_KEY.search(key)) is not None:
        return True
    # Its words are read only when it holds one of _PII_WORDS as text (one of them as a word, it does).
    return any(word in lower for word in _PII_WORDS) and any(w.lower() in _PII_WORDS for w in _WORDS.findall(key))


EMAIL_SHOWN = "<email address>"
PHONE_SHOWN = "<phone number>"


def shown_key(key: str) -> str:
    """``key`` as a path or a message may show it: an email address used as a key is not,
    nor a phone number in international form (``+14155550100``). The same rule holds for a
    request's source id (pixel id, app id) and its test tag (``shown_id``): what the journal,
    the log, the store and the page keep of them; percent-encoded too (``%40``, ``%2B``)."""
    if contains_email(key):
        return EMAIL_SHOWN
    return PHONE_SHOWN if is_international_phone(key) else key


def shown_id(value: str) -> str:
    """A request's source id or test tag as everything after keeps it: one holding an email
    address is ``<email address>`` and 8 hex digits of its SHA-256, so that two such tags stay
    two dedupe scopes (events.dedupe_scope) and two entries of the journal's filters. The value
    is trimmed and lower-cased first, as hash_email normalises an address: ``Jane@Example.com``
    and ``jane@example.com`` are one tag, found by a filter in either case (two, they were), and
    so is ``jane%40example.com``: the address as it reads (identity.revealed_email).

    One that is a phone number in international form (``+14155550100``, ``%2B…``, ``tel:+…``,
    spaced or not) is ``<phone number>`` and 8 hex digits of the SHA-256 of its digits (a trial
    journaled, logged and stored ``+14155550604`` as sent): one number however it is written.
    Digits without ``+`` stay as sent, as ids far more often (identity.international_phone)."""
    if contains_email(value):
        return f"{EMAIL_SHOWN[:-1]} {sha256_hex(revealed_email(value.strip()).lower())[:8]}>"
    phone = international_phone(value)
    if phone is None:
        return value
    return f"{PHONE_SHOWN[:-1]} {sha256_hex(''.join(c for c in phone if c.isdigit()))[:8]}>"


def shown_value(value: str) -> str:
    """``value`` as a message quotes it: as written, in quotes, unless it holds an email address
    or is a phone number in international form: then as ``shown_id`` keeps it, unquoted
    (``<email address 8c87b489>``), so that a message about a configuration file says no more
    personal data than the journal and the log keep of a request."""
    shown = shown_id(value)
    return repr(value) if shown == value else shown


def shown_path(path: str) -> str:
    """A request path as the journal, the log and an answer show it: a segment holding an
    email address (percent-encoded too: ``%40``) is ``<email address>``, as a source id is, and
    one that is a phone number in international form (``+14155550100``, ``%2B`` too) is
    ``<phone number>``. Digits alone stay: they are ids far more often (an app's, an order's)."""
    if "@" not in path and "%40" not in path and "+" not in path and "%2B" not in path and "%2b" not in path:
        return path
    return "/".join(_shown_segment(part) for part in path.split("/"))


def _shown_segment(part: str) -> str:
    text = unquote(part)
    if contains_email(text):
        return EMAIL_SHOWN
    return PHONE_SHOWN if is_international_phone(text) else part


def without_personal(value: Any, path: str, report: Report, send_hashed: str, depth: int = 0) -> Any:
    """``value`` (parsed JSON under ``path``) without what looks like personal data, each drop
    warned about at its own path; ``value`` itself, untouched, when nothing is dropped.

    In an object, a key that ``looks_personal`` is left out, whatever its value holds. In an
    array, an item that is a string holding an email address or a phone number in
    international form is replaced by null, so that arrays sent side by side
    (``af_content_id``, ``af_price``, ``af_quantity``) stay aligned. Digits without ``+`` or
    ``00`` are a phone number by their key only. ``send_hashed`` says where the API takes
    email and phone. Raises TooDeep past MAX_DEPTH levels."""
    if depth > MAX_DEPTH and isinstance(value, (dict, list)):
        raise TooDeep(path)
    if isinstance(value, dict):
        kept: dict[str, Any] | None = None
        for i, (key, item) in enumerate(value.items()):
            if looks_personal(key, item):
                shown = shown_key(key)
                what = held(item)
                report.warn(
                    join(path, shown),
                    "plain_pii_dropped",
                    f"`{shown}` {what}: it was dropped, and {_stored_without(path)} ({send_hashed})",
                )
                new: Any = _LEFT_OUT
            elif isinstance(item, (dict, list)):
                new = without_personal(item, join(path, key), report, send_hashed, depth + 1)
            else:
                new = item
            if new is not item and kept is None:
                kept = dict(itertools.islice(value.items(), i))
            if kept is not None and new is not _LEFT_OUT:
                kept[key] = new
        return value if kept is None else kept
    if isinstance(value, list):
        items: list[Any] | None = None
        for i, item in enumerate(value):
            if isinstance(item, str) and (contains_email(item) or holds_international_phone(item)):
                report.warn(
                    join(path, i),
                    "plain_pii_dropped",
                    f"this item {held(item)}: it was replaced by null, so that arrays sent side by "
                    f"side stay aligned, and {_stored_without(path)} ({send_hashed})",
                )
                new = None
            elif isinstance(item, (dict, list)):
                new = without_personal(item, join(path, i), report, send_hashed, depth + 1)
            else:
                new = item
            if new is not item and items is None:
                items = value[:i]
            if items is not None:
                items.append(new)
        return value if items is None else items
    return value


def held(value: Any) -> str:
    """What a value dropped as personal data is said to be, never quoted: "holds an email
    address", "holds a phone number" or, dropped by its key, "looks like personal data"."""
    if isinstance(value, str):
        if contains_email(value):
            return "holds an email address"
        if holds_international_phone(value):
            return "holds a phone number"
    return "looks like personal data"


def _stored_without(path: str) -> str:
    return f"{_holder(path)} is stored and relayed without it"


REFUSED_WITHOUT: Final = "the event, refused, is neither stored nor relayed"


def said_of_refused(warnings: list[Problem]) -> list[Problem]:
    """``warnings`` as a refused event's answer says them: a value dropped from it was not
    "stored and relayed without it", as an accepted event's is; nothing of it is (a re-trial
    found the clause in a refused AppsFlyer event's warning)."""
    out = warnings
    for i, warning in enumerate(warnings):
        clause = _stored_without(warning.path)
        if warning.code == "plain_pii_dropped" and clause in warning.message:
            if out is warnings:
                out = list(warnings)
            out[i] = Problem(warning.path, warning.code, warning.message.replace(clause, REFUSED_WITHOUT))
    return out


def _holder(path: str) -> str:
    """What is stored without a dropped value: AppsFlyer's top-level field, or an Axon event."""
    top = top_key(path)
    return "the event" if top == "events" else top


def without_emails(
    value: Any,
    path: str,
    report: Report,
    send_hashed: str,
    *,
    required: frozenset[str] = frozenset(),
    hashed: frozenset[str] = frozenset(),
    at: str = "",
    phones: bool = False,
    plus_only: frozenset[str] = frozenset(),
) -> Any:
    """``value`` with no string holding an email address, at any depth: the last guard before
    the store, for the fields a schema defines (free-form values are treated before, by
    ``without_personal``). ``at`` is the path of ``value`` without array indices, which
    ``required`` (such a field is a problem: the event is refused) and ``hashed`` (an
    identifier: an exact email address is hashed as ``email`` is) name; any other such
    string is dropped from its object, or replaced by null in its array.

    With ``phones``, a string holding a phone number in international form
    (``identity.holds_international_phone``) is treated the same way, as the email address
    there would be: in an identifier of ``hashed`` hashed as ``phone`` is when it is one whole
    (the digest of its ``+`` form), else dropped; a problem in a ``required`` field (once: a
    rule of the field may have said so already); dropped anywhere else. In a field of
    ``plus_only`` (descriptive text), only a ``+`` marks a number: the ``00`` form is not read.

    What a rule said before of a value dropped here (an os that is not one of its values, "kept
    as sent") no longer holds: only the drop is said at its path. Those warnings are taken back
    in one pass once the walk is done; taken back at each drop, every drop read every warning
    said before it (16,000 items with an address in their names held the event loop 26 s)."""
    guard = _Guard(report, send_hashed, required, hashed, phones, plus_only)
    kept = guard.walk(value, path, at)
    if guard.dropped:
        last = guard.dropped
        report.warnings = [w for i, w in enumerate(report.warnings) if i >= last.get(w.path, -1)]
    return kept


class _Guard:
    """One walk of ``without_emails``: its settings, and the paths of the values it dropped,
    each with the index in ``report.warnings`` of the last warning saying so (the warnings
    before it at that path are taken back: a warning only is appended during the walk)."""

    __slots__ = ("dropped", "hashed", "phones", "plus_only", "report", "required", "send_hashed")

    def __init__(
        self,
        report: Report,
        send_hashed: str,
        required: frozenset[str],
        hashed: frozenset[str],
        phones: bool,
        plus_only: frozenset[str],
    ) -> None:
        self.report = report
        self.send_hashed = send_hashed
        self.required = required
        self.hashed = hashed
        self.phones = phones
        self.plus_only = plus_only
        self.dropped: dict[str, int] = {}

    def walk(self, value: Any, path: str, at: str) -> Any:
        if isinstance(value, str):
            return self._field(value, path, at)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                new = self.walk(item, join(path, key), join(at, key))
                if new is not _LEFT_OUT:
                    out[key] = new
            return out
        if isinstance(value, list):
            items = [self.walk(item, join(path, i), at + "[]") for i, item in enumerate(value)]
            return [None if item is _LEFT_OUT else item for item in items]
        return value

    def _drop(self, path: str, code: str, message: str) -> Any:
        """Says ``value`` at ``path`` dropped, and that alone (see ``without_emails``)."""
        self.dropped[path] = len(self.report.warnings)
        self.report.warn(path, code, message)
        return _LEFT_OUT

    def _field(self, value: str, path: str, at: str) -> Any:
        report, send_hashed = self.report, self.send_hashed
        if "@" in value and at not in self.required and url_holds_credentials(value):
            # Not an email address, though ``user:pw@host`` may look like one (a re-trial).
            return self._drop(path, "url_credentials", URL_CREDENTIALS_DROPPED)
        if not contains_email(value):
            if self.phones and holds_international_phone(value, zeros=at not in self.plus_only):
                return self._phone(value, path, at)
            return value
        if at in self.hashed:
            try:
                digest = hash_email(revealed_email(value))
            except InvalidIdentifier:
                pass
            else:
                report.warn(
                    path,
                    "plain_pii_hashed",
                    "this identifier is an email address: it was normalised and hashed as email is",
                )
                return digest
        if at in self.required:
            report.error(path, "plain_pii", f"this field holds an email address, which is never stored ({send_hashed})")
            return value
        return self._drop(
            path,
            "plain_pii_dropped",
            f"this field holds an email address: it was dropped, never stored ({send_hashed})",
        )

    def _phone(self, value: str, path: str, at: str) -> Any:
        """``_field``'s treatment of a string holding a phone number in international form."""
        report = self.report
        if at in self.hashed:
            digest = treated_phone_id(value, True)  # one whole: hashed; one inside an id: dropped
            if digest is not None and digest is not value:
                report.warn(path, "plain_pii_hashed", PHONE_HASHED)
                return digest
        if at in self.required:
            if all(p.path != path for p in report.problems):  # a name's own rule says it first
                report.error(
                    path,
                    "plain_pii",
                    f"this field holds a phone number, which is never stored ({self.send_hashed})",
                )
            return value
        return self._drop(path, "plain_pii_dropped", phone_dropped(self.send_hashed))


def holds_phone_anywhere(value: Any, depth: int = 0) -> bool:
    """Whether a string of ``value`` (decoded JSON), at any depth, holds a phone number in
    international form: ``without_emails(..., phones=True)`` would then treat it. The typed
    Axon path asks it of a payload that its gates cannot clear."""
    if isinstance(value, str):
        return holds_international_phone(value)
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, dict):
        return any(holds_phone_anywhere(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(holds_phone_anywhere(v, depth + 1) for v in value)
    return False


URL_CREDENTIALS_DROPPED: Final = (
    "this URL holds credentials (a user name or password before the host: scheme://user:password@host), "
    "which are never stored: it was dropped; send the URL without them"
)


def url_holds_credentials(url: str) -> bool:
    """Whether ``url`` is a URL with credentials before its host (``scheme://user:pw@host``):
    Axon's event_source_url is refused for them, any other field dropped (``url_credentials``)."""
    if "@" not in url or "//" not in url:
        return False
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:
        return False


PHONE_HASHED: Final = "this identifier is a phone number: it was normalised and hashed as phone is"


def phone_dropped(send_hashed: str) -> str:
    """The message of a phone number dropped from a defined field (Axon's zip, an id, a name)."""
    return f"this field holds a phone number: it was dropped, never stored ({send_hashed})"


def treated_phone_id(value: str, hashed: bool) -> str | None:
    """The phone rule of an identifier (Axon's ``rules.PHONE_FIELDS``, an identifier the last
    guard hashes in), for ingest and a refused body's kept form alike: ``value`` itself (the
    same object) when it is no phone number in international form; else, in a field that is
    ``hashed``, the digest of its ``+`` form, as phone's; None when it is to be dropped (from
    zip, or when it cannot be hashed: "+999 1234567")."""
    revealed = international_phone(value)
    if revealed is None:
        return value
    if not hashed:
        return None
    try:
        return hash_phone(revealed)  # revealed once: its + form
    except InvalidIdentifier:
        return None
