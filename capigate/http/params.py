"""Strict parsing of the admin API's parameters: a bad value is a problem naming the parameter.

Each primitive reads one parameter, records at most one problem in the report, and returns a
value the store can bind: ASCII digits only (``"¹".isdigit()`` is true in Python), and every
integer inside SQLite's and PostgreSQL's signed 64-bit range.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import overload

from capigate.checking import Report
from capigate.epoch import MAX_EPOCH_MILLIS, looks_like_seconds

__all__ = [
    "MAX_ID",
    "Query",
    "TimeRefused",
    "decode_cursor",
    "encode_cursor",
    "parse_id",
    "query_choice",
    "query_cursor",
    "query_int",
    "query_integer",
    "query_limit",
    "query_time",
    "read_time",
    "time_value",
]

MAX_ID = 2**63 - 1  # the largest row id either store can hold
_DIGITS = re.compile(r"[0-9]{1,19}")
_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: int() reads others too
_CURSOR = re.compile(r"[0-9a-z]{3,15}")  # base 36 digits, then two check characters
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_LISTINGS = {"e": "events", "r": "requests"}  # a cursor's first letter: the listing that gave it


class Query(dict[str, str]):
    """A request's query parameters that remember which ones the endpoint read: whatever it
    did not read is not one of its parameters (``refuse_unread``), so a misspelt filter is a
    400, never a silently unfiltered answer."""

    def __init__(self, params: Mapping[str, str], repeated: frozenset[str] = frozenset()) -> None:
        super().__init__(params)
        self._repeated = repeated
        self._read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self._read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._read.add(key)
        return super().__contains__(key)

    @overload  # type: ignore[override]
    def get(self, key: str, default: None = None, /) -> str | None: ...
    @overload
    def get(self, key: str, default: str, /) -> str: ...
    def get(self, key: str, default: str | None = None, /) -> str | None:
        self._read.add(key)
        return super().get(key, default)

    def refuse_unread(self, report: Report, elsewhere: Mapping[str, str] | None = None) -> None:
        """A problem for each parameter the endpoint did not read, or that was given twice;
        ``elsewhere`` says where a parameter it lacks is taken instead."""
        known = f"use {', '.join(sorted(self._read))}" if self._read else "this endpoint takes none"
        for key in self:
            if key not in self._read:
                where = f"; {elsewhere[key]}" if elsewhere and key in elsewhere else ""
                message = f"{key} is not a parameter here{where}; {known}"
                report.error(f"query.{key}", "unknown_parameter", message)
            elif key in self._repeated:
                report.error(f"query.{key}", "repeated_parameter", f"give the query parameter {key} once")


def parse_id(raw: str) -> int | None:
    """A row id of ASCII digits within the stores' range, or None (below MAX_ID: a page
    cursor is the id plus one)."""
    if _DIGITS.fullmatch(raw) is None:
        return None
    value = int(raw)
    return value if 0 < value < MAX_ID else None


def query_int(q: Mapping[str, str], key: str, report: Report, *, low: int, high: int, what: str) -> int | None:
    """An integer parameter from ``low`` to ``high``; None if absent or wrong (then a problem:
    ``invalid_format`` when it is not an integer, ``out_of_range`` when it is one outside)."""
    said = f"{key} is {what}, an integer from {low} to {high}"
    value = query_integer(q, key, report, said)
    if value is None:
        return None
    if value < low:
        report.error(f"query.{key}", "out_of_range", f"{said}; {value} is below {low}")
        return None
    if value > high:
        report.error(f"query.{key}", "out_of_range", f"{said}; {value} is above {high}")
        return None
    return value


def query_integer(q: Mapping[str, str], key: str, report: Report, said: str) -> int | None:
    """A parameter's integer, whatever its value; None if absent or not an integer (then an
    ``invalid_format`` problem: ``said``, and what came). Past 19 digits, more than either store
    holds, it is ``out_of_range``."""
    raw = q.get(key)
    if raw is None or raw == "":
        return None
    if _INTEGER.fullmatch(raw) is None:
        report.error(f"query.{key}", "invalid_format", f"{said}; {raw[:40]!r} is not an integer")
        return None
    if len(raw.lstrip("-")) > 19:
        report.error(f"query.{key}", "out_of_range", f"{said}; {raw[:24]}... has more digits than any of them")
        return None
    return int(raw)


def query_limit(q: Mapping[str, str], report: Report, *, default: int = 50, maximum: int = 1000) -> int:
    value = query_int(q, "limit", report, low=1, high=maximum, what="the page size")
    return default if value is None else value


def query_text(q: Mapping[str, str], key: str, report: Report) -> str | None:
    """A filter's value, None when not given. Given empty (``?source=``, a script's unset
    variable) it is a 400: read as no filter, it answered every source's events (a trial)."""
    raw = q.get(key)
    if raw is not None and not raw.strip():
        report.error(f"query.{key}", "empty_parameter", f"{key} is empty: give it a value, or leave it out")
        return None
    return raw


def query_choice(q: Mapping[str, str], key: str, report: Report, choices: tuple[str, ...]) -> str | None:
    raw = query_text(q, key, report)
    if raw is None:
        return None
    if raw not in choices:
        report.error(f"query.{key}", "invalid_value", f"{key} is one of {', '.join(choices)}, not {raw[:40]!r}")
        return None
    return raw


def query_cursor(q: Mapping[str, str], report: Report, listing: str) -> int | None:
    """The row id in ``cursor``, a ``next`` that ``listing`` (``events`` or ``requests``) gave;
    None if absent or refused (then a problem: another listing's cursor is named as such)."""
    raw = q.get("cursor")
    if raw is None or raw == "":
        return None
    kind, value = decode_cursor(raw)
    if value is not None and kind == listing:
        return value
    said = f"cursor is the `next` value of a previous page of /api/{listing}"
    if value is not None and kind is not None:
        report.error(
            "query.cursor", "wrong_listing", f"{said}; {raw[:40]!r} is a cursor of /api/{kind}, page that with it"
        )
    elif value is not None:
        report.error(
            "query.cursor",
            "expired_cursor",
            f"{said}; {raw[:40]!r} is from an older gateway: start again from the first page",
        )
    else:
        report.error("query.cursor", "invalid_format", said)
    return None


def decode_cursor(raw: str) -> tuple[str | None, int | None]:
    """The listing and the row id of a cursor ``encode_cursor`` made; (None, id) for a cursor
    made before cursors named their listing (refused: cursors are short-lived), and (None, None)
    for any other text (its check characters do not match), so a made-up cursor is refused,
    not read as a page."""
    listing = _LISTINGS.get(raw[:1])
    if listing is not None and _CURSOR.fullmatch(raw[1:]) and _check(raw[:-2]) == raw[-2:]:
        value = int(raw[1:-2], 36)
        return (listing, value) if value <= MAX_ID else (None, None)
    if _CURSOR.fullmatch(raw) is None or _check(raw[:-2]) != raw[-2:]:
        return None, None
    value = int(raw[:-2], 36)
    return None, (value if value <= MAX_ID else None)


def encode_cursor(listing: str, cursor: int | None) -> str | None:
    """A page's ``next``: a letter naming the listing (``e`` events, ``r`` requests), the row
    id in base 36, then two check characters over both, so one listing's cursor is not read
    as a position in the other (a trial's was, and answered a page from an unrelated place)."""
    if cursor is None:
        return None
    out = ""
    while True:
        cursor, rem = divmod(cursor, 36)
        out = _ALPHABET[rem] + out
        if cursor == 0:
            out = listing[0] + out
            return out + _check(out)


def _check(digits: str) -> str:
    high, low = divmod(zlib.crc32(digits.encode()) % 1296, 36)
    return _ALPHABET[high] + _ALPHABET[low]


class TimeRefused(ValueError):
    """A time parameter that is refused: ``code`` and the message (``str``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def read_time(raw: str, key: str) -> int:
    """Epoch milliseconds from epoch ms or an ISO 8601 time (UTC if no offset); raises
    TimeRefused. Digits below 10^11 (March 1973 in ms, the year 5138 in s) are refused as
    seconds, never read either way: 1733000000 taken as ms (January 1970) silently answered
    nothing. 0 is the same instant in both units, and is taken."""
    value = time_value(raw)
    if value is None:
        raise TimeRefused("invalid_format", f"{key} is epoch milliseconds or an ISO 8601 time, up to the year 9999")
    if looks_like_seconds(value) and _DIGITS.fullmatch(raw):
        raise TimeRefused(
            "time_in_seconds",
            f"{key} {raw} looks like seconds; times are epoch milliseconds ({raw}000) or ISO 8601",
        )
    return value


def query_time(q: Mapping[str, str], key: str, report: Report, *, path: str | None = None) -> int | None:
    """``read_time`` of a parameter; None if absent or refused (then a problem)."""
    raw = q.get(key)
    if raw is None or raw == "":
        return None
    try:
        return read_time(raw, key)
    except TimeRefused as exc:
        said = str(exc) if path is not None else _unencoded_plus(raw, key) or str(exc)
        report.error(path or f"query.{key}", exc.code, said)
        return None


def _unencoded_plus(raw: str, key: str) -> str | None:
    """What to say of an ISO time whose offset's ``+`` came unencoded in a query string, which
    reads it as a space (``until=2026-12-06T07:15:00+02:00``: a trial was told only "ISO 8601");
    None for any other value. Refused, not read as a ``+``: the client's other parameters went
    through the same wrong encoding, and a value taken here would hide it."""
    head, space, offset = raw.rpartition(" ")
    if not space or not offset[:1].isdigit() or time_value(f"{head}+{offset}") is None:
        return None
    return (
        f"{key} has a space where its UTC offset's + goes: a + in a query string reads as a space; "
        f"write it %2B ({key}={head}%2B{offset})"
    )


def time_value(raw: str) -> int | None:
    """Epoch milliseconds, or None if ``raw`` is neither epoch ms nor an ISO 8601 time in range."""
    if _DIGITS.fullmatch(raw):
        value = int(raw)
        return value if value <= MAX_EPOCH_MILLIS else None
    if not raw.isascii():
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        millis = int(parsed.timestamp() * 1000)
    except (OverflowError, ValueError):
        return None
    return millis if 0 <= millis <= MAX_EPOCH_MILLIS else None
