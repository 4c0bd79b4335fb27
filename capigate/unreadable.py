"""Why a JSON body could not be read, in the project's words and at its JSON path.

msgspec says ``Number out of range - at `$[...][0][...][...]``` (it names no key of a
free-form object) and ``Expected `int | null`, got `str```; a user reads
``events[0].data.value: the number is too large to read`` and ``status is an integer or
null, not a string``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, Final

import msgspec

from capigate.checking import TOO_LARGE_NUMBER, join
from capigate.errors import Problem

__all__ = [
    "TOO_DEEP",
    "expected",
    "field_problem",
    "lone_surrogate",
    "media_type",
    "parse_error_first",
    "sent_as_form",
    "unreadable",
]

TOO_DEEP: Final = Problem(
    "", "too_deep", 'the body nests arrays or objects too deep to be read (the path "" is the whole body)'
)
_KINDS: Final = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "an array",
    "object": "an object",
    "null": "null",
}
_EXPECTED: Final = re.compile(r"Expected `([^`]+)`(.*?)(?:, got `([^`]+)`)?(?: - at `\$[^`]*`)?$")


class _OutOfRange:
    """Where the standard library's decoder met a number msgspec could not read."""


def unreadable(body: bytes, error: msgspec.DecodeError) -> Problem:
    """The problem of a body msgspec could not decode at all."""
    text = str(error)
    if text.startswith(("Number out of range", "Integer value out of range")):  # the latter: 4,300+ digits
        return Problem(_out_of_range_path(body), "out_of_range", TOO_LARGE_NUMBER)
    if not body.strip():  # msgspec says "Input data was truncated", which reads as a cut-off upload
        return Problem("", "malformed_json", "the body is empty; send a JSON document")
    for start, why in _NOT_JSON_STARTS:  # msgspec says "invalid character" of the first byte
        if body.startswith(start):
            return Problem("", "malformed_json", f"the body is not valid JSON: {why}")
    if text == "Input data was truncated":
        text = lone_surrogate(body) or text
    elif text == "Invalid UTF-8 encoded string":  # says not where: the first invalid byte's offset
        text = _invalid_utf8(body) or text
    return Problem("", "malformed_json", f"the body is not valid JSON: {text}")


def parse_error_first(body: bytes, error: msgspec.DecodeError) -> msgspec.DecodeError:
    """The error to say of a body a typed decoder refused. msgspec checks the type as it
    reads, so a cut-off ``[[[[[[`` is "Expected `object`, got `array`": when the body is no
    JSON at all, its parse error instead (a trial: /api/replay said "not an array" of it)."""
    if not isinstance(error, msgspec.ValidationError):
        return error
    try:
        msgspec.json.decode(body)
    except msgspec.DecodeError as parse:
        return parse
    except RecursionError:  # too deep to read untyped: the type the decoder saw first is said
        return error
    return error


_FORMS: Final = ("multipart/form-data", "application/x-www-form-urlencoded")


def sent_as_form(problem: Problem, content_type: str | None, body: bytes) -> Problem:
    """``problem``, or for a body not read as JSON that came as an HTML form (``curl -F
    events=@file``, ``--data-urlencode``), the reason: "JSON is malformed: invalid character
    (byte 0)" named no form (a trial). A JSON body sent with a form's type (``curl -d @file``)
    is read as JSON, and never comes here; one that is broken (cut short, say) or empty is
    told its own problem first, the type only after it: that the body "came as a form" read as
    the cause of a truncated ``curl -d '{"events":[{'`` (a trial)."""
    if problem.code != "malformed_json":
        return problem
    media = media_type(content_type)
    if media not in _FORMS:
        return problem
    start = body.lstrip()[:1]
    if start in (b"", b"{", b"[") or body.startswith(_NOT_JSON_PREFIXES):  # meant as JSON: no form
        return Problem(
            problem.path,
            problem.code,
            f"{problem.message} (it came with Content-Type: {media}, as curl -d sends it: not the cause, a JSON "
            "body is read as JSON whatever its type, but label it Content-Type: application/json)",
        )
    return Problem(
        problem.path,
        problem.code,
        f"the body must be JSON, and it came as a form (Content-Type: {media}): send the JSON document itself "
        "as the body, with Content-Type: application/json (curl: --data-binary @events.json, not -F or "
        "--data-urlencode)",
    )


def media_type(content_type: str | None) -> str:
    """A Content-Type's media type, lower-cased, without its parameters ("" for none)."""
    return (content_type or "").partition(";")[0].strip().lower()


def _invalid_utf8(body: bytes) -> str | None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"it is not UTF-8, as JSON text must be (RFC 8259, 8.1): byte {exc.start} (0x{body[exc.start]:02X}) "
            "is invalid"
        )
    return None


_NOT_JSON_STARTS: Final = (
    (b"\x1f\x8b", "it is gzip-compressed; send it with the header Content-Encoding: gzip"),
    (
        b"\xef\xbb\xbf",
        "it starts with a UTF-8 byte order mark (EF BB BF), which JSON text must not (RFC 8259, 8.1); send it without",
    ),
)
_NOT_JSON_PREFIXES: Final = tuple(start for start, _ in _NOT_JSON_STARTS)


# Each escape of a JSON string, in order: an escaped backslash is one, so ``\\\\ud800`` is no
# surrogate. The first group is a high surrogate's escape (D800-DBFF).
_ESCAPE: Final = re.compile(rb"\\(?:(u[dD][89abAB][0-9a-fA-F]{2})|.)", re.DOTALL)
_LOW_HALF: Final = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_LOW_HALF_BYTES: Final = (b"\\", b"u", b"dD", b"cdefCDEF", b"0123456789abcdefABCDEF", b"0123456789abcdefABCDEF")


def lone_surrogate(body: bytes) -> str | None:
    """msgspec's message for a high surrogate escape not followed by its low half, which it
    gives only when six bytes or more follow: with fewer it says "Input data was truncated",
    of a body that is whole (``"purchase\\ud800x"}``). None when the body does end inside
    the pair: it is truncated."""
    for escape in _ESCAPE.finditer(body):
        if escape.group(1) is None:
            continue
        end = escape.end()
        rest = body[end : end + 6]
        if _LOW_HALF.match(rest):
            continue
        if len(rest) < 6 and _could_start_low_half(rest):
            return None
        return f"JSON is malformed: unexpected end of escaped utf-16 surrogate pair (byte {end})"
    return None


def _could_start_low_half(rest: bytes) -> bool:
    """Whether ``rest``, cut short by the body's end, may be the start of a low surrogate's escape."""
    return all(rest[i : i + 1] in allowed for i, allowed in enumerate(_LOW_HALF_BYTES[: len(rest)]))


def field_problem(error: msgspec.ValidationError, *, unknown: Callable[[str], str], after: str = "") -> Problem:
    """A small admin body msgspec refused (a replay's filters, a test event) at the field its
    message names: a missing or an unknown field by its name, a wrong type at its path.
    ``unknown(field)`` says what an unknown field is not; ``after`` ends the other messages."""
    text, _, where = str(error).partition(" - at `$")
    if text.startswith("Object contains unknown field"):
        field = text.split("`")[1]
        return Problem(field, "unknown_field", unknown(field))
    if text.startswith("Object missing required field"):
        field = text.split("`")[1]
        return Problem(field, "missing_field", f"`{field}` is required{after}")
    path = where.rstrip("`").lstrip(".")
    return Problem(path, "wrong_type", expected(path or "the body", text) + after)


def _out_of_range_path(body: bytes) -> str:
    def number(raw: str) -> float | _OutOfRange:
        value = float(raw)
        return _OutOfRange() if math.isinf(value) else value

    try:
        value = json.loads(body, parse_float=number, parse_int=number)
    except (ValueError, RecursionError):
        return ""
    return _find(value, "") or ""


def _find(value: Any, path: str) -> str | None:
    if isinstance(value, _OutOfRange):
        return path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _find(item, join(path, key))
        if found is not None:
            return found
    return None


def expected(name: str, text: str) -> str:
    """``status must be an integer or null, not a string`` from msgspec's ``Expected `int |
    null`, got `str```; ``text`` itself when it says something else. "must be", not "is": "body
    is a string, not an object" read as a description of what was sent, the other way round."""
    found = _EXPECTED.match(text)
    if found is None:
        return text
    wanted, bounds, got = found.group(1), found.group(2).strip(), found.group(3)
    message = f"{name} must be {_kind(wanted)}{' ' + bounds if bounds else ''}"
    return message + (f", not {_kind(got)}" if got else "")


def _kind(msgspec_type: str) -> str:
    return " or ".join(_KINDS.get(t.strip(), f"`{t.strip()}`") for t in msgspec_type.split("|"))
